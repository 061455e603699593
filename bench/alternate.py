#!/usr/bin/env python3
"""Runs `infonce train` jobs of several variants in turn, round after round,
and prints the median samples/s of each: on a shared machine the rounds
spread the load's disturbance over every variant alike.

Usage: bench/alternate.py ROUNDS STEPS LABEL=ARGS [LABEL=ARGS...]
  ARGS are `infonce train` flags; a first word @PATH runs another binary.
  The binary defaults to $INFONCE (else ./bin/infonce).
Example (E(2) with one core per worker):
  bench/alternate.py 7 150 one="--cores-per-worker 1 --threads-per-worker 1" \\
      two="--workers 2 --cores-per-worker 1 --threads-per-worker 1"
"""
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile


def main():
    if len(sys.argv) < 4 or "=" not in sys.argv[3]:
        sys.exit(__doc__)
    rounds, steps = int(sys.argv[1]), int(sys.argv[2])
    variants = [a.split("=", 1) for a in sys.argv[3:]]
    binary = os.environ.get("INFONCE", "./bin/infonce")
    out = tempfile.mkdtemp(prefix="infonce-alternate-")
    rates = {label: [] for label, _ in variants}
    for r in range(rounds):
        for label, args in variants:
            words = shlex.split(args)
            exe = binary
            if words and words[0].startswith("@"):
                exe, words = words[0][1:], words[1:]
            run = os.path.join(out, f"{label}-{r}")
            cmd = [exe, "train", "--steps", str(steps), "--no-eval", "--out", run] + words
            with open(run + ".log", "w") as log:
                subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=log, check=True)
            with open(os.path.join(run, "summary.json")) as f:
                rates[label].append(json.load(f)["samples_per_second"])
    for label, _ in variants:
        xs = rates[label]
        print(f"{label:12s} median {statistics.median(xs):8.0f} samples/s   all {[round(x) for x in xs]}")
    print(f"runs in {out}")


if __name__ == "__main__":
    main()
