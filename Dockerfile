# The infonce image: one static binary and nothing else.
#
# The binary is built on the host (CGO_ENABLED=0, pure Go, MNIST embedded)
# and the build context holds just that binary and two empty directories,
# so the build needs no registry and pulls nothing:
#
#   make image     # builds bin/image/infonce, then
#                  # docker build -t infonce:latest bin/image
#
# The same image runs every role: `infonce coordinator`, `infonce worker`,
# `infonce train`. Configuration comes from flags or from INFONCE_<FLAG>
# environment variables (INFONCE_BATCH, INFONCE_COORDINATOR, ...).
FROM scratch
COPY infonce /infonce
# A scratch image has no directories at all: /tmp (mode 1777) for
# os.TempDir, and /run/infonce, the run directory (metrics.jsonl,
# summary.json, checkpoints/), owned by the unprivileged user so that a
# fresh named volume mounted there is writable.
COPY tmp/ /tmp/
COPY --chown=65532:65532 run/ /run/infonce/
USER 65532:65532
ENV INFONCE_OUT=/run/infonce
WORKDIR /run/infonce
# coordinator gRPC, worker data plane, gossip (memberlist: TCP and UDP),
# and the /healthz and /metrics port the deployments give --http
EXPOSE 7950/tcp 7960/tcp 7946/tcp 7946/udp 8080/tcp
ENTRYPOINT ["/infonce"]
CMD ["train"]
