"""Training steps of the reference configurations of infonce's encoders in PyTorch.

The towers are towers.py's (the module structure of infonce's vit, cnn and
transformer towers); the step is CLIP's symmetric InfoNCE on a global batch
of random 64x64x3 images and random token rows, AdamW, float32, on the CPU:

    OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/baselines/pytorch/reference_step.py --threads 2 --steps 5 [--image-tower cnn]

It prints the mean time of each phase of a step (forward of both towers,
loss, backward, optimizer), the samples per second, the model's GFLOP/s
(the dense multiply-adds of one step, counted by model_flops, over the
step time), the rate of a 1024^3 matrix product on the same threads (the
BLAS's own), and the process's peak RSS.

Its counterparts (docs/BENCHMARKS.md, README "Encoders"):

    infonce train --data synthetic --image-size 64 --image-tower vit --vit-patch 8 --vit-width 192 \\
        --vit-depth 6 --vit-heads 3 --text-tower transformer --vocab-size 4096 --context-length 32 \\
        --text-width 128 --text-depth 3 --text-heads 2 --dim 128 --batch 256 --steps 20

    infonce train --data synthetic --image-size 64 --image-tower cnn --cnn-width 32 --cnn-stages 3 \\
        --cnn-blocks 1 --text-tower transformer --vocab-size 4096 --context-length 32 \\
        --text-width 128 --text-depth 3 --text-heads 2 --dim 128 --batch 256 --steps 20
"""
import argparse
import math
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import towers  # noqa: E402

TEXT = {"context": 32, "width": 128, "depth": 3, "heads": 2, "mlp": 512, "pool": "eot"}
VIT = {"patch": 8, "width": 192, "depth": 6, "heads": 3, "mlp": 768, "pool": "cls"}
CNN = {"width": 32, "stages": 3, "blocks": 1, "groups": 8}


def transformer_flops(T, d, mlp, depth):
    """Multiply-adds x 2 of a pre-norm encoder of depth layers over T tokens
    of width d: the q, k, v and output projections (4 T d^2), the scores and
    their weighted sum (2 T^2 d), and the MLP (2 T d mlp)."""
    return depth * 2 * (4 * T * d * d + 2 * T * T * d + 2 * T * d * mlp)


def cnn_flops(C, H, W, v, dim):
    """2 x the multiply-adds of the cnn tower's convolutions and projection."""
    w, f = v["width"], 0
    f += 2 * H * W * C * w * 9  # stem 3x3
    cin = w
    for i in range(v["stages"]):
        cout = w << i
        for j in range(v["blocks"]):
            if i > 0 and j == 0:
                H, W = (H + 1) // 2, (W + 1) // 2
            f += 2 * H * W * cin * cout * 9 + 2 * H * W * cout * cout * 9
            if cin != cout or (i > 0 and j == 0):
                f += 2 * H * W * cin * cout  # 1x1 shortcut
            cin = cout
    return f + 2 * cin * dim


def model_flops(image_tower, B, dim):
    """Dense FLOPs of one training step: 3 x the forward's (the backward
    pass costs about twice the forward), padding tokens and the causal
    mask's half counted as PyTorch computes them."""
    t = TEXT
    text = transformer_flops(t["context"], t["width"], t["mlp"], t["depth"]) + 2 * t["width"] * dim
    if image_tower == "vit":
        v = VIT
        n = (64 // v["patch"]) ** 2
        image = 2 * n * 3 * v["patch"] ** 2 * v["width"] + transformer_flops(n + 1, v["width"], v["mlp"], v["depth"]) + 2 * v["width"] * dim
    else:
        image = cnn_flops(3, 64, 64, CNN, dim)
    return 3 * B * (image + text + 2 * B * dim)


def gemm_rate(threads):
    """GFLOP/s of a 1024^3 float32 product: the BLAS's own rate."""
    a, b = torch.rand(1024, 1024), torch.rand(1024, 1024)
    a @ b
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < 1.0:
        a @ b
        n += 1
    return 2 * 1024 ** 3 * n / (time.perf_counter() - t0) / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--image-tower", choices=["vit", "cnn"], default="vit")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    cfg = {
        "image_tower": a.image_tower, "image_in": 3 * 64 * 64, "image_shape": {"channels": 3, "height": 64, "width": 64},
        "vit": VIT, "cnn": CNN,
        "text_tower": "transformer", "text_vocab": 4096, "transformer": TEXT,
        "dim": 128, "activation": "gelu" if a.image_tower == "vit" else "relu", "init_logit_scale": math.log(1 / 0.07),
    }
    m = towers.Model(cfg)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.1)
    B = a.batch
    x = torch.rand(B, 3, 64, 64)
    ids = torch.randint(0, 4096, (B, 32))
    lengths = torch.randint(4, 33, (B,))
    labels = torch.arange(B)
    phases = {"forward": 0.0, "loss": 0.0, "backward": 0.0, "optimizer": 0.0}

    def step(record):
        t0 = time.perf_counter()
        u = m.image(x)
        v = m.text(ids, lengths)
        t1 = time.perf_counter()
        s = m.logit_scale.exp()
        logits = s * u @ v.t()
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
        t2 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        if record:
            for k, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                phases[k] += dt

    step(False)  # warm-up
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step(True)
    dt = (time.perf_counter() - t0) / a.steps
    flops = model_flops(a.image_tower, B, cfg["dim"])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"pytorch {torch.__version__}, {a.image_tower}, {a.threads} threads: {dt * 1e3:.0f} ms a step, {B / dt:.1f} samples/s")
    print("phases (ms): " + ", ".join(f"{k} {v / a.steps * 1e3:.0f}" for k, v in phases.items()))
    print(f"model {flops / 1e9:.1f} GFLOP a step: {flops / dt / 1e9:.1f} GFLOP/s; GEMM 1024^3: {gemm_rate(a.threads):.1f} GFLOP/s")
    print(f"peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
