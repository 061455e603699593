#!/usr/bin/env bash
# Scaling efficiency with one core per worker, pinned with taskset: one
# worker on core 0 (GOMAXPROCS=1) against two workers on cores 0 and 1
# (GOMAXPROCS=2 each, so that a worker's network goroutines get a P while
# its compute runs). Usage: bench/pinned_scaling.sh [steps] [repeats]
set -euo pipefail
steps=${1:-100}
reps=${2:-3}
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
bin=$dir/infonce
go build -o "$bin" ./cmd/infonce
rate() { sed -n 's/.*"samples_per_second": \([0-9.]*\).*/\1/p' "$1/summary.json"; }
one=() two=()
for r in $(seq "$reps"); do
	GOMAXPROCS=1 taskset -c 0 "$bin" train --steps "$steps" --no-eval --out "$dir/one$r" >/dev/null 2>&1
	one+=("$(rate "$dir/one$r")")
	port=$((17970 + 2 * r))
	"$bin" coordinator --workers 2 --steps "$steps" --out "$dir/two$r" --port "$port" --gossip-port $((port + 1)) >"$dir/c$r.log" 2>&1 &
	sleep 1
	GOMAXPROCS=2 taskset -c 0 "$bin" worker --coordinator "127.0.0.1:$port" --no-eval >"$dir/w0-$r.log" 2>&1 &
	GOMAXPROCS=2 taskset -c 1 "$bin" worker --coordinator "127.0.0.1:$port" --no-eval >"$dir/w1-$r.log" 2>&1
	wait
	two+=("$(rate "$dir/two$r")")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
x1=$(median "${one[@]}")
x2=$(median "${two[@]}")
echo "1 worker, core 0:            ${one[*]} samples/s (median $x1)"
echo "2 workers, cores 0 and 1:    ${two[*]} samples/s (median $x2)"
awk -v a="$x1" -v b="$x2" 'BEGIN {printf "scaling efficiency E(2) = %.3f\n", b / (2 * a)}'
