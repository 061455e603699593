#!/usr/bin/env python3
"""Measures what two workers could reach at best on this machine: two
independent 1-worker jobs, each with half the global batch and pinned to
its own core, run side by side, against the same job alone and against
one job with the whole batch; and a 2-worker job of the whole batch.

Usage: bench/pair.py ROUNDS STEPS [BATCH]
  The binary is $INFONCE (else ./bin/infonce); every job runs with
  GOMAXPROCS=1 and one thread, pinned with taskset.
Prints the median samples/s of each kind of job and these ratios:
  pair/solo     what running beside another job costs one job
  E(2)          the 2-worker job over twice the whole-batch job
  independent   two half-batch jobs side by side over twice the
                whole-batch job: the E(2) of a run that neither talks
                nor waits (its loss is over B/2 columns, not B)
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    rounds, steps = int(sys.argv[1]), sys.argv[2]
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 512
    binary = os.environ.get("INFONCE", "./bin/infonce")
    out = tempfile.mkdtemp(prefix="infonce-pair-")
    env = dict(os.environ, GOMAXPROCS="1")

    def start(tag, core, args):
        run = os.path.join(out, tag)
        log = open(run + ".log", "w")
        cmd = ["taskset", "-c", str(core), binary, "train", "--steps", steps, "--no-eval",
               "--threads-per-worker", "1", "--out", run] + args
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, env=env), run

    def rate(run):
        with open(os.path.join(run, "summary.json")) as f:
            return json.load(f)["samples_per_second"]

    half, whole = ["--batch", str(batch // 2)], ["--batch", str(batch)]
    rates = {"solo": [], "pair": [], "whole": [], "two": []}
    for r in range(rounds):
        p, run = start(f"solo-{r}", 0, half)
        p.wait()
        rates["solo"].append(rate(run))
        (p0, run0), (p1, run1) = start(f"pair0-{r}", 0, half), start(f"pair1-{r}", 1, half + ["--seed", "2"])
        p0.wait()
        p1.wait()
        rates["pair"].append((rate(run0) + rate(run1)) / 2)
        p, run = start(f"whole-{r}", 0, whole)
        p.wait()
        rates["whole"].append(rate(run))
        run = os.path.join(out, f"two-{r}")
        with open(run + ".log", "w") as log:
            subprocess.run([binary, "train", "--steps", steps, "--no-eval", "--workers", "2",
                            "--cores-per-worker", "1", "--threads-per-worker", "1", "--out", run] + whole,
                           stdout=subprocess.DEVNULL, stderr=log, check=True)
        rates["two"].append(rate(run))
    m = {k: statistics.median(v) for k, v in rates.items()}
    for k, v in rates.items():
        print(f"{k:6s} median {m[k]:8.0f} samples/s   all {[round(x) for x in v]}")
    print(f"pair/solo {m['pair'] / m['solo']:.3f}   E(2) {m['two'] / (2 * m['whole']):.3f}   "
          f"independent {m['pair'] / m['whole']:.3f}")
    print(f"runs in {out}")


if __name__ == "__main__":
    main()
