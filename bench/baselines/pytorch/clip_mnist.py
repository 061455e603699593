#!/usr/bin/python3
"""PyTorch reference for `infonce train` (CLIP on MNIST), for speed comparisons.

The same model, loss, optimizer, batch and data as infonce's default run:

  image tower  784 -> 512 -> ReLU -> 256 -> ReLU -> 64, L2-normalised
  text tower   EmbeddingBag(vocab, 256, mode="mean") -> ReLU -> 64, L2-normalised
  logits       S = exp(t) * U V^T, t learnable, init ln(1/0.07), clamped to [0, ln 100]
  loss         symmetric InfoNCE: (CE(S, I) + CE(S^T, I)) / 2
  optimizer    AdamW, lr 1e-3 constant, betas (0.9, 0.999), eps 1e-8, weight decay 0.1
               on weights and embeddings only (not biases, not t)
  data         MNIST training images from dataset/mnist/*.gz, x/255, global batch 512,
               a fresh permutation per epoch; each sample's caption is one of the
               digit templates of dataset/caption.go, tokenised like dataset.Tokenizer
               (maximal runs of letters and digits, lower-cased, sorted vocabulary,
               id 0 = [unk]).

A step is timed from the gather of the batch (uint8 -> float32 / 255, captions) to
the end of the optimizer step and the clamp, as infonce's step is. After --warmup
steps, --windows windows of --window steps each are timed (by default 10 + 10 x 10
steps, about infonce's epoch of 117 steps, whose metrics.jsonl has one line per 10
steps); the script prints the samples/s of every window, their median (also per
CPU-second of the process, all threads together) and the mean over all timed steps,
and the same as JSON on the last line.

Run it with Debian's python (/usr/bin/python3, package python3-torch) and set the
thread count of every layer the same way, e.g.

  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE \
      /usr/bin/python3 bench/baselines/pytorch/clip_mnist.py --threads 1
"""

import argparse
import gzip
import json
import math
import os
import re
import statistics
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

# The digit templates of dataset/caption.go, in the same order.
DIGIT_TEMPLATES = [
    "a photo of the digit {class}",
    "a handwritten {class}",
    "an image of the number {digit}",
    "a picture of a {class}",
    "the digit {class} written by hand",
    "a scan of a handwritten {digit}",
    "a black and white image of the digit {digit}",
    "the number {class} drawn with a pen",
]


def read_idx(path):
    """Reads an idx file (gzip-compressed) into a numpy uint8 array."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an idx file of unsigned bytes")
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def captions():
    """Returns the token ids of every (class, template) caption and the vocabulary size."""
    texts = []
    for k, name in enumerate(DIGIT_NAMES):
        for t in DIGIT_TEMPLATES:
            texts.append(t.replace("{class}", name).replace("{digit}", str(k)))
    words = lambda s: [w.lower() for w in re.findall(r"[^\W_]+", s)]
    vocab = sorted({w for s in texts for w in words(s)})
    ids = {w: i + 1 for i, w in enumerate(vocab)}  # 0 is [unk]
    tokens = [[ids[w] for w in words(s)] for s in texts]
    return tokens, len(vocab) + 1


class CLIP(nn.Module):
    def __init__(self, vocab, image_in=784, hidden=(512, 256), text_hidden=256, dim=64, tau=0.07):
        super().__init__()
        layers, n = [], image_in
        for h in hidden:
            layers += [nn.Linear(n, h), nn.ReLU()]
            n = h
        layers.append(nn.Linear(n, dim))
        self.image = nn.Sequential(*layers)
        self.embed = nn.EmbeddingBag(vocab, text_hidden, mode="mean")
        self.text_proj = nn.Linear(text_hidden, dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / tau)))

    def forward(self, x, ids, offsets):
        u = F.normalize(self.image(x), dim=1)
        v = F.normalize(self.text_proj(F.relu(self.embed(ids, offsets))), dim=1)
        s = self.logit_scale.exp() * (u @ v.t())
        target = torch.arange(s.shape[0])
        return (F.cross_entropy(s, target) + F.cross_entropy(s.t(), target)) / 2


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    ap.add_argument("--window", type=int, default=10, help="steps per timed window")
    ap.add_argument("--windows", type=int, default=10, help="timed windows")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "..", "dataset", "mnist"))
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    images = read_idx(os.path.join(a.data, "train-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(a.data, "train-labels-idx1-ubyte.gz")).astype(np.int64)
    n = images.shape[0]
    images = torch.from_numpy(images.reshape(n, -1).copy())  # uint8, n x 784
    tokens, vocab = captions()
    rng = np.random.default_rng(a.seed)
    T = len(DIGIT_TEMPLATES)

    model = CLIP(vocab)
    decay = [p for name, p in model.named_parameters() if name.endswith("weight")]
    no_decay = [p for name, p in model.named_parameters() if not name.endswith("weight")]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-3, betas=(0.9, 0.999), eps=1e-8)

    steps_per_epoch = n // a.batch
    perm, epoch = None, -1

    def step(i):
        nonlocal perm, epoch
        if i // steps_per_epoch != epoch:
            epoch = i // steps_per_epoch
            perm = rng.permutation(n)
        idx = perm[(i % steps_per_epoch) * a.batch : (i % steps_per_epoch + 1) * a.batch]
        x = images[torch.from_numpy(idx)].float().div_(255)
        tmpl = rng.integers(0, T, size=a.batch)
        bags = [tokens[c * T + m] for c, m in zip(labels[idx], tmpl)]
        offsets = torch.tensor(np.cumsum([0] + [len(b) for b in bags[:-1]]))
        ids = torch.tensor([t for b in bags for t in b])
        loss = model(x, ids, offsets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        return loss

    for i in range(a.warmup):
        step(i)
    rates, cpu_rates = [], []
    s = a.warmup
    start = time.perf_counter()
    for w in range(a.windows):
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(a.window):
            loss = step(s + i)
        loss = float(loss)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        s += a.window
        rates.append(a.window * a.batch / dt)
        cpu_rates.append(a.window * a.batch / dc)
        print(f"window {w}: {rates[-1]:.0f} samples/s, {cpu_rates[-1]:.0f} samples per CPU-second, "
              f"loss {loss:.4f}", file=sys.stderr)
    overall = a.windows * a.window * a.batch / (time.perf_counter() - start)
    med, cpu_med = statistics.median(rates), statistics.median(cpu_rates)
    print(f"pytorch {torch.__version__} threads {a.threads} batch {a.batch}: "
          f"median {med:.0f} samples/s ({cpu_med:.0f} per CPU-second) over {a.windows} windows "
          f"of {a.window} steps; {overall:.0f} samples/s over all of them", file=sys.stderr)
    print(json.dumps({"threads": a.threads, "batch": a.batch, "samples_per_second": med, "samples_per_second_overall": overall,
                      "samples_per_cpu_second": cpu_med, "windows": rates,
                      "final_loss": loss, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
