#!/usr/bin/env bash
# Peak resident memory (VmHWM) of a standalone coordinator during a
# two-worker run on loopback. Usage: bench/coordinator_rss.sh [steps]
set -euo pipefail
steps=${1:-60}
cd "$(dirname "$0")/.."
bin=$(mktemp -d)/infonce
go build -o "$bin" ./cmd/infonce
out=$(mktemp -d)
"$bin" coordinator --workers 2 --steps "$steps" --out "$out" --port 17950 --gossip-port 17946 >"$out/coordinator.log" 2>&1 &
pid=$!
sleep 1
for i in 0 1; do
	"$bin" worker --coordinator 127.0.0.1:17950 --no-eval >"$out/worker$i.log" 2>&1 &
done
peak=0
while kill -0 "$pid" 2>/dev/null; do
	v=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
	[ -n "$v" ] && peak=$v
	sleep 0.2
done
wait
echo "coordinator peak RSS: $((peak / 1024)) MiB ($peak kB) over a $steps-step two-worker run"
