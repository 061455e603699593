#!/usr/bin/env python3
"""A model of the waits of two ranks that meet at every sync of a step.

A step is three intervals of work between syncs: optimizer, data and
forward pass; the loss's first pass; the loss's second pass and the
backward pass. Each rank's duration of an interval is drawn on its own
(Gaussian, optionally with rare long stalls), and each sync waits for the
later rank. The model prints the mean step against the sum of the mean
intervals (the waits), and what doing up to W ms of the second interval's
work inside the first sync's wait would save.

Usage: bench/syncmodel.py [STEPS]
"""
import random
import sys

# Mean and standard deviation (ms) of each interval, from `train --workers 2
# --cores-per-worker 1 --threads-per-worker 1 --log-every 1` on the machine
# of docs/BENCHMARKS.md (fourth session).
INTERVALS = [(3.8, 0.3), (0.6, 0.08), (5.5, 0.45)]


def step_time(rng, early_work, stalls):
    def draw(mean, sd):
        x = rng.gauss(mean, sd)
        if stalls and rng.random() < 0.05:
            x += rng.expovariate(1 / 0.8)
        return x

    (m1, s1), (m2, s2), (m3, s3) = INTERVALS
    a, b = draw(m1, s1), draw(m1, s1)
    t = max(a, b)
    # The rank that waits does up to early_work of its next interval.
    wa, wb = min(early_work, t - a), min(early_work, t - b)
    t += max(draw(m2, s2) - wa, draw(m2, s2) - wb)
    t += max(draw(m3, s3), draw(m3, s3))
    return t


def mean_step(steps, early_work, stalls, seed=1):
    rng = random.Random(seed)
    return sum(step_time(rng, early_work, stalls) for _ in range(steps)) / steps


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 200000
    for stalls in (False, True):
        # A rank's own mean work: the intervals, and their stalls' mean.
        work = sum(m for m, _ in INTERVALS) + (len(INTERVALS) * 0.05 * 0.8 if stalls else 0)
        base = mean_step(steps, 0, stalls)
        kind = "with 5 % stalls of 0.8 ms" if stalls else "Gaussian"
        print(f"{kind}: mean step {base:.3f} ms, work {work:.3f} ms, waits {base - work:.3f} ms")
        for w in (0.15, 0.3):
            t = mean_step(steps, w, stalls)
            print(f"  {w} ms of the loss done in the first wait: {t:.3f} ms ({100 * (base - t) / base:.2f} % faster)")


if __name__ == "__main__":
    main()
