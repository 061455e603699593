#!/bin/sh
# Runs the same collective benchmark with infonce (gRPC and plain TCP data
# planes) and with torch.distributed gloo, on 127.0.0.1.
#   bench/baselines/gloo/run.sh [--workers 2,4,8] [--sizes ...] [--op allreduce] [--iters N]
# Results go to stdout and, as JSON, to $OUT (default /tmp/infonce-bench).
set -eu
cd "$(dirname "$0")/../../.."
OUT=${OUT:-/tmp/infonce-bench}
mkdir -p "$OUT"
go build -o "$OUT/infonce" ./cmd/infonce
echo "## $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -srm) $(nproc) cores, $(go version | cut -d' ' -f3)"
echo "## loopback TCP single stream (baseline)"
"$OUT/infonce" bench allreduce --op tcp --sizes 1MiB,16MiB,64MiB --json "$OUT/tcp.json"
for t in grpc tcp; do
	echo "## infonce, transport $t"
	"$OUT/infonce" bench allreduce --transport "$t" --json "$OUT/infonce-$t.json" "$@"
done
echo "## torch.distributed gloo"
PY=${PYTHON:-/usr/bin/python3}
"$PY" bench/baselines/gloo/allreduce_gloo.py --json "$OUT/gloo.json" "$@"
