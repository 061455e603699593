"""Training steps of the reference configuration of infonce's encoders in PyTorch.

The towers are towers.py's (the module structure of infonce's vit and
transformer towers); the step is CLIP's symmetric InfoNCE on a global batch
of random 64x64x3 images and random token rows, AdamW, float32, on the CPU:

    OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/baselines/pytorch/reference_step.py --threads 2 --steps 5

Its counterpart (docs/BENCHMARKS.md, README "Encoders"):

    infonce train --data synthetic --image-size 64 --image-tower vit --vit-patch 8 --vit-width 192 \\
        --vit-depth 6 --vit-heads 3 --text-tower transformer --vocab-size 4096 --context-length 32 \\
        --text-width 128 --text-depth 3 --text-heads 2 --dim 128 --batch 256 --steps 20
"""
import argparse
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import towers  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=256)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    cfg = {
        "image_tower": "vit", "image_in": 3 * 64 * 64, "image_shape": {"channels": 3, "height": 64, "width": 64},
        "vit": {"patch": 8, "width": 192, "depth": 6, "heads": 3, "mlp": 768, "pool": "cls"},
        "text_tower": "transformer", "text_vocab": 4096,
        "transformer": {"context": 32, "width": 128, "depth": 3, "heads": 2, "mlp": 512, "pool": "eot"},
        "dim": 128, "activation": "gelu", "init_logit_scale": math.log(1 / 0.07),
    }
    m = towers.Model(cfg)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.1)
    B = a.batch
    x = torch.rand(B, 3, 64, 64)
    ids = torch.randint(0, 4096, (B, 32))
    lengths = torch.randint(4, 33, (B,))
    labels = torch.arange(B)

    def step():
        u = m.image(x)
        v = m.text(ids, lengths)
        s = m.logit_scale.exp()
        logits = s * u @ v.t()
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    dt = (time.perf_counter() - t0) / a.steps
    print(f"pytorch {torch.__version__}, {a.threads} threads: {dt * 1e3:.0f} ms a step, {B / dt:.0f} samples/s")


if __name__ == "__main__":
    main()
