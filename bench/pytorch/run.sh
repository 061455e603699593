#!/bin/sh
# Side-by-side training speed of `infonce train` and the PyTorch reference
# (clip_mnist.py) on the same model, batch and thread count.
#
# For every thread count T in $THREADS (default "1 2") it runs $REPS pairs
# (default 5), alternating the two sides so that a change in the machine's
# load hits both: infonce with GOMAXPROCS=T (`train --no-eval`, one epoch,
# samples_per_second of summary.json), then PyTorch with T threads in torch,
# OpenMP and OpenBLAS (median of its timed windows). It prints every pair,
# then a table of medians and of the per-pair ratio infonce/PyTorch.
#
# Usage, from the repository root:  sh bench/pytorch/run.sh
# Environment: THREADS, REPS, PYTHON (default /usr/bin/python3, which has
# Debian's python3-torch), INFONCE (a built binary; default: go build).
set -eu

THREADS=${THREADS:-"1 2"}
REPS=${REPS:-5}
PYTHON=${PYTHON:-/usr/bin/python3}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ -z "${INFONCE:-}" ]; then
	(cd "$root" && go build -o "$tmp/infonce" ./cmd/infonce)
	INFONCE=$tmp/infonce
fi

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# infonce: commit $(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo unknown) (plus working tree), GOMAXPROCS = threads"
echo "# pytorch: $("$PYTHON" -c 'import torch; print(torch.__version__)'), BLAS: $(OPENBLAS_VERBOSE=2 "$PYTHON" -c 'import torch; torch.ones(64,64)@torch.ones(64,64)' 2>&1 | grep -m1 Core || echo unknown)"

results=$tmp/results.txt
: >"$results"
for t in $THREADS; do
	for r in $(seq 1 "$REPS"); do
		out=$tmp/run-$t-$r
		(cd "$tmp" && GOMAXPROCS=$t "$INFONCE" train --no-eval --out "$out" >"$out.log" 2>&1)
		go_sps=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["samples_per_second"])' "$out/summary.json")
		py_json=$(env -u OPENBLAS_CORETYPE OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t MKL_NUM_THREADS=$t \
			OMP_WAIT_POLICY=PASSIVE "$PYTHON" "$here/clip_mnist.py" --threads "$t" 2>/dev/null | tail -1)
		py_sps=$(echo "$py_json" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["samples_per_second"])')
		echo "$t $go_sps $py_sps" >>"$results"
		printf 'threads %s pair %s: infonce %.0f samples/s, pytorch %.0f samples/s\n' "$t" "$r" "$go_sps" "$py_sps"
	done
done

"$PYTHON" - "$results" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    t, g, p = line.split()
    rows.setdefault(int(t), []).append((float(g), float(p)))
print()
print("| threads | infonce samples/s (median) | PyTorch samples/s (median) | ratio of medians | per-pair ratio: median (min–max) | pairs |")
print("|---|---|---|---|---|---|")
for t in sorted(rows):
    g = [a for a, _ in rows[t]]
    p = [b for _, b in rows[t]]
    r = [a / b for a, b in rows[t]]
    print(f"| {t} | {statistics.median(g):,.0f} | {statistics.median(p):,.0f} | "
          f"{statistics.median(g) / statistics.median(p):.2f}× | {statistics.median(r):.2f}× "
          f"({min(r):.2f}–{max(r):.2f}) | {len(r)} |")
EOF
