#!/usr/bin/env bash
# Alternates infonce and PyTorch on the reference configurations of the
# encoders (vit and cnn image towers, transformer text tower), three rounds
# each, one side then the other, in reverse order every other round, and
# prints each job's step phases (ms), samples/s and peak RSS. infonce's
# figures leave out its first step (the mean of the metrics lines of steps
# 2 on), as reference_step.py leaves out a warm-up step.
#
#   INFONCE=/tmp/infonce bench/baselines/pytorch/compare_encoders.sh [OUT]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
infonce=${INFONCE:-infonce}
out=${1:-$(mktemp -d)}
mkdir -p "$out"
T="--text-tower transformer --vocab-size 4096 --context-length 32 --text-width 128 --text-depth 3 --text-heads 2 --dim 128 --batch 256 --no-eval"
VIT="--data synthetic --image-size 64 --image-tower vit --vit-patch 8 --vit-width 192 --vit-depth 6 --vit-heads 3 $T"
CNN="--data synthetic --image-size 64 --image-tower cnn --cnn-width 32 --cnn-stages 3 --cnn-blocks 1 $T"
run_infonce() { # NAME FLAGS STEPS
	# shellcheck disable=SC2086
	"$infonce" train $2 --steps "$3" --log-every 1 --out "$out/$1" >"$out/$1.log" 2>&1
	python3 - "$out/$1" "$1" <<'PY'
import json, sys
run, name = sys.argv[1], sys.argv[2]
lines = [json.loads(l) for l in open(run + "/metrics.jsonl")][1:]
keys = ["forward_ms", "loss_ms", "backward_ms", "optimizer_ms", "total_ms"]
m = {k: sum(l["step_time"][k] for l in lines) / len(lines) for k in keys}
s = json.load(open(run + "/summary.json"))
print(name, "whole-run %.1f samples/s," % s["samples_per_second"], "from step 2 %.1f samples/s;" % (256000 / m["total_ms"]),
      " ".join("%s %.0f" % (k, m[k]) for k in keys) + ";", "peak RSS %.0f MiB" % (s["peak_rss_bytes"] / 2**20))
PY
}
run_pytorch() { # NAME TOWER STEPS
	echo "$1 $(OMP_WAIT_POLICY=PASSIVE python3 "$here/reference_step.py" --threads 2 --steps "$3" --image-tower "$2" | tr '\n' ' ')"
}
for tower in vit cnn; do
	flags=$VIT steps=7 psteps=5
	if [ "$tower" = cnn ]; then flags=$CNN steps=4 psteps=3; fi
	for r in 1 2 3; do
		if [ $((r % 2)) = 1 ]; then
			run_infonce "$tower-infonce-$r" "$flags" "$steps"
			run_pytorch "$tower-pytorch-$r" "$tower" "$psteps"
		else
			run_pytorch "$tower-pytorch-$r" "$tower" "$psteps"
			run_infonce "$tower-infonce-$r" "$flags" "$steps"
		fi
	done
done
