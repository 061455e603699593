#!/bin/sh
# Side-by-side training speed of `infonce train` and the PyTorch reference
# (clip_mnist.py) on the same model, batch and thread count.
#
# For every thread count T in $THREADS (default "1 2") it runs $REPS pairs
# (default 5), alternating the two sides so that a change in the machine's
# load hits both: infonce with GOMAXPROCS=T (`train --no-eval`, one epoch of
# 117 steps), then PyTorch with T threads in torch, OpenMP and OpenBLAS (10
# warm-up steps, then 10 windows of 10 steps). Each side gives two figures:
#   window: the median samples/s of its 10-step windows (infonce: the
#           samples_per_second lines of metrics.jsonl, one per 10 steps,
#           the first, which holds the first step, left out);
#   run:    samples/s over the whole run (infonce: samples_per_second of
#           summary.json, every step included; PyTorch: all timed steps).
# It prints every pair, then a table of the medians over the pairs and of
# the per-pair ratios infonce/PyTorch.
#
# Usage, from the repository root:  sh bench/baselines/pytorch/run.sh
# Environment: THREADS, REPS, PYTHON (default /usr/bin/python3, which has
# Debian's python3-torch), INFONCE (a built binary; default: go build).
set -eu

THREADS=${THREADS:-"1 2"}
REPS=${REPS:-5}
PYTHON=${PYTHON:-/usr/bin/python3}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ -z "${INFONCE:-}" ]; then
	(cd "$root" && go build -o "$tmp/infonce" ./cmd/infonce)
	INFONCE=$tmp/infonce
fi

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# infonce: commit $(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo unknown) (plus working tree), GOMAXPROCS = threads"
echo "# pytorch: $("$PYTHON" -c 'import torch; print(torch.__version__)'), BLAS: $(env -u OPENBLAS_CORETYPE OPENBLAS_VERBOSE=2 "$PYTHON" -c 'import torch; torch.ones(64,64)@torch.ones(64,64)' 2>&1 | grep -m1 Core || echo unknown)"

# goFigures prints the window and run figures of an infonce run directory.
goFigures() {
	"$PYTHON" -c '
import json, statistics, sys
d = sys.argv[1]
w = [json.loads(l) for l in open(d + "/metrics.jsonl") if l.strip()]
w = [x["samples_per_second"] for x in w if x.get("step", 0) >= 10 and x.get("samples_per_second")]
print(statistics.median(w), json.load(open(d + "/summary.json"))["samples_per_second"])
' "$1"
}

results=$tmp/results.txt
: >"$results"
for t in $THREADS; do
	for r in $(seq 1 "$REPS"); do
		out=$tmp/run-$t-$r
		(cd "$tmp" && GOMAXPROCS=$t "$INFONCE" train --no-eval --out "$out" >"$out.log" 2>&1)
		go_sps=$(goFigures "$out")
		py_sps=$(env -u OPENBLAS_CORETYPE OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t MKL_NUM_THREADS=$t \
			OMP_WAIT_POLICY=PASSIVE "$PYTHON" "$here/clip_mnist.py" --threads "$t" 2>/dev/null | tail -1 |
			"$PYTHON" -c 'import json,sys; d=json.load(sys.stdin); print(d["samples_per_second"], d["samples_per_second_overall"])')
		echo "$t $go_sps $py_sps" >>"$results"
		echo "$t $r $go_sps $py_sps" | "$PYTHON" -c '
import sys
t, r, gw, gr, pw, pr = sys.stdin.read().split()
gw, gr, pw, pr = map(float, (gw, gr, pw, pr))
print(f"threads {t} pair {r}: infonce {gw:.0f} (run {gr:.0f}) samples/s, pytorch {pw:.0f} (run {pr:.0f}) samples/s, ratio {gw / pw:.2f}x (run {gr / pr:.2f}x)")'
	done
done

"$PYTHON" -c '
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    t, gw, gr, pw, pr = line.split()
    rows.setdefault(int(t), []).append(tuple(map(float, (gw, gr, pw, pr))))
print()
print("| threads | figure | infonce samples/s (median of pairs) | PyTorch samples/s (median of pairs) | per-pair ratio infonce/PyTorch: median (min–max) | pairs |")
print("|---|---|---|---|---|---|")
for t in sorted(rows):
    for name, gi, pi in (("window", 0, 2), ("run", 1, 3)):
        g = [x[gi] for x in rows[t]]
        p = [x[pi] for x in rows[t]]
        r = [x[gi] / x[pi] for x in rows[t]]
        print(f"| {t} | {name} | {statistics.median(g):,.0f} | {statistics.median(p):,.0f} | "
              f"{statistics.median(r):.2f}× ({min(r):.2f}–{max(r):.2f}) | {len(r)} |")
' "$results"
