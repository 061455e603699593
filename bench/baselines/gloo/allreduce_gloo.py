#!/usr/bin/env python3
"""torch.distributed (gloo) collectives on 127.0.0.1, measured like
`infonce bench allreduce`: warm-up, then timed iterations (each preceded by a
barrier), the per-iteration maximum over ranks, the median over iterations,
and the same columns: size, count, time, algbw, busbw, and the CPU time of
all ranks together per operation (user + system, all threads).

Usage: allreduce_gloo.py [--workers 2,4,8] [--sizes 4KiB,64KiB,1MiB,16MiB,64MiB]
                         [--op allreduce|allgather|reducescatter|broadcast]
                         [--iters 20] [--warmup 3] [--json FILE]
Needs python3-torch (Debian: apt-get install python3-torch).
"""
import argparse
import json
import os
import socket
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def parse_size(s):
    s = s.strip()
    for suffix, mul in (("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("B", 1)):
        if s.endswith(suffix):
            return int(s[: -len(suffix)]) * mul
    return int(s)


def busbw_factor(op, n):
    if op == "allreduce":
        return 2.0 * (n - 1) / n
    if op in ("allgather", "reducescatter"):
        return (n - 1) / n
    return 1.0


def worker(rank, n, port, args, queue):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=n)
    gen = torch.Generator().manual_seed(args.seed + rank)
    for size in args.sizes:
        count = size // 4
        data = torch.randn(count, generator=gen)
        buf = data.clone()
        per = count // n
        out_list = [torch.empty(per) for _ in range(n)]
        in_list = list(data[: per * n].split(per)) if per > 0 else [torch.empty(0)] * n
        rs_out = torch.empty(per)

        def run():
            if args.op == "allreduce":
                dist.all_reduce(buf)
            elif args.op == "allgather":
                dist.all_gather(out_list, data[:per])
            elif args.op == "reducescatter":
                dist.reduce_scatter(rs_out, in_list)
            elif args.op == "broadcast":
                dist.broadcast(buf, 0)

        for _ in range(args.warmup):
            buf.copy_(data)
            run()
        times = []
        cpu = 0.0  # CPU seconds of this process (all its threads) inside the timed calls
        for _ in range(args.iters):
            buf.copy_(data)
            dist.barrier()
            c0 = time.process_time()
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
            cpu += time.process_time() - c0
        t = torch.tensor(times, dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        c = torch.tensor([cpu], dtype=torch.float64)
        dist.all_reduce(c, op=dist.ReduceOp.SUM)
        if rank == 0:
            med = statistics.median(t.tolist())
            nbytes = count * 4
            algbw = nbytes / med / 1e9
            queue.put(dict(op=args.op, workers=n, bytes=nbytes, count=count, seconds_median=med,
                           algbw_gbps=algbw, busbw_gbps=algbw * busbw_factor(args.op, n),
                           cpu_seconds=c.item() / args.iters,
                           iters=args.iters, transport="gloo", wire="f32"))
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", default="2,4,8")
    p.add_argument("--sizes", default="4KiB,64KiB,1MiB,16MiB,64MiB")
    p.add_argument("--op", default="allreduce", choices=["allreduce", "allgather", "reducescatter", "broadcast"])
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", default="")
    args = p.parse_args()
    args.sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    if args.iters < 10:
        sys.exit("--iters: at least 10")
    rows = []
    ctx = mp.get_context("spawn")
    for n in [int(w) for w in args.workers.split(",")]:
        print(f"# op={args.op} workers={n} transport=gloo torch={torch.__version__} iters={args.iters} warmup={args.warmup}")
        print(f"# {'size(B)':>12} {'count(elem)':>12} {'time(us)':>10} {'algbw(GB/s)':>10} {'busbw(GB/s)':>10} {'cpu(ms)':>10}")
        queue = ctx.Queue()
        port = free_port()
        procs = [ctx.Process(target=worker, args=(r, n, port, args, queue)) for r in range(n)]
        for pr in procs:
            pr.start()
        for _ in args.sizes:
            r = queue.get()
            rows.append(r)
            print(f"  {r['bytes']:12d} {r['count']:12d} {r['seconds_median']*1e6:10.1f} {r['algbw_gbps']:10.3f} {r['busbw_gbps']:10.3f} {r['cpu_seconds']*1e3:10.2f}", flush=True)
        for pr in procs:
            pr.join()
            if pr.exitcode != 0:
                sys.exit(f"worker exited with {pr.exitcode}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
