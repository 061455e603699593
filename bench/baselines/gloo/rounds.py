#!/usr/bin/env python3
"""Alternates `infonce bench allreduce` (one or more binaries and transports),
torch.distributed gloo and the single-stream loopback TCP baseline for
several rounds, and prints the median of each figure over the rounds with
the ratio to gloo. On a shared machine the rounds spread the load's
disturbance over every contender alike; within a round each contender runs
once, in alternating order.

Usage: rounds.py [--rounds 5] [--workers 2,4,8] [--sizes 4KiB,16MiB,64MiB]
                 [--iters 12] [--infonce LABEL=BINARY[:TRANSPORT]]...
                 [--json FILE]
Defaults: --infonce tcp=/tmp/infonce-bench/infonce:tcp and
grpc=/tmp/infonce-bench/infonce:grpc (build it first:
go build -o /tmp/infonce-bench/infonce ./cmd/infonce).
Each row: the median over rounds of the median time, busbw (GB/s) and CPU
time of all ranks per operation (ms), and busbw / gloo's busbw (for 4 KiB:
gloo's time / this time). "1-stream" is `--op tcp` (64 MiB), against which
the 2-process all-reduce is judged.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def run(args):
    fd, js = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        subprocess.run(args + ["--json", js], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
        with open(js) as f:
            return json.load(f)
    finally:
        os.unlink(js)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--workers", default="2,4,8")
    p.add_argument("--sizes", default="4KiB,16MiB,64MiB")
    p.add_argument("--iters", type=int, default=12)
    p.add_argument("--infonce", action="append", default=[])
    p.add_argument("--python", default="/usr/bin/python3")
    p.add_argument("--json", default="")
    a = p.parse_args()
    contenders = []
    for spec in a.infonce or ["tcp=/tmp/infonce-bench/infonce:tcp", "grpc=/tmp/infonce-bench/infonce:grpc"]:
        label, rest = spec.split("=", 1)
        binary, _, transport = rest.partition(":")
        contenders.append((label, [binary, "bench", "allreduce", "--transport", transport or "tcp",
                                   "--workers", a.workers, "--sizes", a.sizes, "--iters", str(a.iters)]))
    contenders.append(("gloo", [a.python, os.path.join(HERE, "allreduce_gloo.py"), "--workers", a.workers,
                                "--sizes", a.sizes, "--iters", str(a.iters)]))
    first = contenders[0][1][0]
    contenders.append(("1-stream", [first, "bench", "allreduce", "--op", "tcp", "--sizes", "64MiB", "--iters", str(a.iters)]))
    res = {}
    for r in range(a.rounds):
        order = contenders if r % 2 == 0 else contenders[::-1]
        for label, args in order:
            for row in run(args):
                res.setdefault((row["workers"], row["bytes"], label), []).append(row)
        print(f"# round {r + 1}/{a.rounds} done", file=sys.stderr, flush=True)
    med = {}
    for k, rows in res.items():
        med[k] = dict(seconds=statistics.median(x["seconds_median"] for x in rows),
                      busbw=statistics.median(x["busbw_gbps"] for x in rows),
                      cpu=statistics.median(x.get("cpu_seconds", 0) for x in rows), n=len(rows))
    print(f"# {a.rounds} rounds, medians over rounds; ratio = busbw / gloo busbw (4 KiB: gloo time / time)")
    print(f"# {'procs':>5} {'size':>10} {'contender':>10} {'time(us)':>10} {'busbw':>8} {'cpu(ms)':>8} {'ratio':>6}")
    for (w, b, label) in sorted(med, key=lambda k: (k[0], k[1], k[2])):
        m = med[(w, b, label)]
        g = med.get((w, b, "gloo"))
        ratio = ""
        if g and label not in ("gloo", "1-stream"):
            ratio = f"{g['seconds'] / m['seconds']:.2f}" if b <= 64 << 10 else f"{m['busbw'] / g['busbw']:.2f}"
        print(f"  {w:5d} {b:10d} {label:>10} {m['seconds'] * 1e6:10.1f} {m['busbw']:8.3f} {m['cpu'] * 1e3:8.1f} {ratio:>6}")
    one = med.get((2, 64 << 20, "1-stream"))
    if one:
        for (w, b, label), m in sorted(med.items()):
            if w == 2 and b == 64 << 20 and label not in ("1-stream", "gloo"):
                print(f"# 2 procs, 64 MiB, {label}: {100 * m['busbw'] / one['busbw']:.0f}% of single-stream TCP ({one['busbw']:.3f} GB/s)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump([dict(workers=w, bytes=b, contender=l, **m) for (w, b, l), m in sorted(med.items())], f, indent=2)


if __name__ == "__main__":
    main()
