#!/usr/bin/python3
"""PyTorch reference modules of infonce's towers, and their golden files.

The modules below have exactly the structure of infonce's towers (package
model), so that their state_dict names are the names `infonce export` writes
(model.Config.TorchStateDict, the one place in Go that maps the flat
parameter buffer's segments to these names):

  vit          image.patch_embed (Conv2d, kernel = stride = P), image.cls_token (D),
               image.pos_embed (L x D), image.blocks.k (nn.TransformerEncoderLayer,
               norm_first=True, activation="gelu", dropout 0, batch_first),
               image.norm (LayerNorm), pooled at the class token (or the mean),
               image.proj (Linear), L2-normalised
  cnn          image.stem.{conv, gn} (Conv2d 3x3 without bias, GroupNorm), then per
               stage i and block j image.stages.i.j.{conv1, gn1, conv2, gn2[, down.conv,
               down.gn]}: y = act(GN(conv2(act(GN(conv1(x))))) + S(x)), global average
               pool, image.proj, L2-normalised
  transformer  text.token_embedding (Embedding), text.positional_embedding (L x D),
               text.blocks.k (as above, with a causal mask), text.ln_final, pooled at the
               last token of each row (or the mean of the row), text.proj, L2-normalised
  mlp, bow     image.fc<i> [image.ln<i>] act ... image.proj; text.embed (EmbeddingBag,
               mode "mean") [text.ln] act text.proj
  logit_scale  t (a 0-d tensor), s = exp(t)

LayerNorm and GroupNorm use eps = 1e-5, GELU is the exact erf form, attention
is scaled by 1/sqrt(head width), L2 normalisation is x / sqrt(|x|^2 + 1e-16).

Golden files. With --golden DIR (model/testdata/torch in the repository) the
script builds small models of each tower (vit, cnn, transformer; with the
other pools, and the cnn with GELU: vit_mean, cnn_gelu, transformer_mean), sets their
weights from --seed (PyTorch's default initialisation, then random LayerNorm
and GroupNorm gains and biases and random position embeddings and class
token, all rounded to float32), runs one forward and one backward pass in
float64 on fixed inputs with the loss L = sum(R * U), R a fixed random
projection of the L2-normalised embeddings U, and writes DIR/<name>.safetensors:

  the weights          state_dict names, F32
  input.images         F32 [b, C, H, W]          (vit, cnn)
  input.ids            I64 [b, context], 0-padded (transformer)
  input.lengths        I64 [b]                    (transformer)
  loss.projection      F32 [b, dim]               R = dL/dU
  output.embedding     F64 [b, dim]               U
  grad.<name>          F64                        dL/d(weight), every parameter
  __metadata__         "model": the infonce model.Config (JSON) of the tower

Regenerate them (Debian's python3-torch, python3-numpy; no other package) with

  /usr/bin/python3 bench/baselines/pytorch/towers.py --golden model/testdata/torch

and check them with `go test ./model -run Torch`.

With --load FILE (a file of `infonce export --format safetensors`) the
script builds the reference model from the config in the file's metadata,
loads the weights with load_state_dict(strict=True), and prints the
embeddings of a fixed input (the first --rows rows of a fixed pattern of
images, or of token ids 1..n) as JSON.
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------- safetensors

_DTYPES = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}


def save_safetensors(path, tensors, metadata=None):
    """Writes tensors (name -> numpy array) in the safetensors format."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        raw = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": _NAMES[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_safetensors(path):
    """Returns (name -> numpy array, metadata) of a safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    body = data[8 + n:]
    out = {}
    for name, e in header.items():
        lo, hi = e["data_offsets"]
        a = np.frombuffer(body[lo:hi], dtype=np.dtype(_DTYPES[e["dtype"]]).newbyteorder("<"))
        out[name] = a.reshape(e["shape"]).copy()
    return out, meta

# ---------------------------------------------------------------- the towers


def l2_normalize(x):
    # infonce's L2Normalize: x / sqrt(|x|^2 + eps^2), eps = 1e-8.
    return x / torch.sqrt((x * x).sum(-1, keepdim=True) + 1e-16)


def block(d, heads, mlp):
    return nn.TransformerEncoderLayer(d, heads, mlp, dropout=0.0, activation="gelu",
                                      layer_norm_eps=1e-5, batch_first=True, norm_first=True)


def mlp_width(mlp, d):
    return mlp if mlp > 0 else 4 * d


def activation(name):
    return nn.GELU() if name == "gelu" else nn.ReLU()


def image_shape(cfg):
    s = cfg.get("image_shape") or {}
    if s.get("channels"):
        return s["channels"], s["height"], s["width"]
    side = round(math.sqrt(cfg["image_in"]))
    if side * side != cfg["image_in"]:
        return 1, 1, cfg["image_in"]  # an mlp tower's flat rows
    return 1, side, side


class ViT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C, H, W = image_shape(cfg)
        v = cfg["vit"]
        d, P = v["width"], v["patch"]
        self.pool = v.get("pool") or "cls"
        n = (H // P) * (W // P)
        L = n + 1 if self.pool == "cls" else n
        self.patch_embed = nn.Conv2d(C, d, P, stride=P)
        if self.pool == "cls":
            self.cls_token = nn.Parameter(torch.zeros(d))
        self.pos_embed = nn.Parameter(torch.zeros(L, d))
        self.blocks = nn.ModuleList(block(d, v["heads"], mlp_width(v.get("mlp", 0), d)) for _ in range(v["depth"]))
        self.norm = nn.LayerNorm(d, eps=1e-5)
        self.proj = nn.Linear(d, cfg["dim"])

    def forward(self, x):
        h = self.patch_embed(x).flatten(2).transpose(1, 2)  # b x N x D, patches row-major
        if self.pool == "cls":
            h = torch.cat([self.cls_token.expand(h.shape[0], 1, -1), h], dim=1)
        h = h + self.pos_embed
        for b in self.blocks:
            h = b(h)
        h = self.norm(h)
        f = h[:, 0] if self.pool == "cls" else h.mean(1)
        return l2_normalize(self.proj(f))


class ConvGN(nn.Module):
    """GN(Conv_k,s(x)), the convolution without bias: the stem and the shortcuts."""

    def __init__(self, cin, cout, k, stride, groups):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)
        self.gn = nn.GroupNorm(groups, cout, eps=1e-5)

    def forward(self, x):
        return self.gn(self.conv(x))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride, groups, act):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.gn1 = nn.GroupNorm(groups, cout, eps=1e-5)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.gn2 = nn.GroupNorm(groups, cout, eps=1e-5)
        self.down = ConvGN(cin, cout, 1, stride, groups) if stride != 1 or cin != cout else None
        self.act = activation(act)

    def forward(self, x):
        m = self.gn2(self.conv2(self.act(self.gn1(self.conv1(x)))))
        s = x if self.down is None else self.down(x)
        return self.act(m + s)


class CNN(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C, _, _ = image_shape(cfg)
        v = cfg["cnn"]
        w, g = v["width"], v.get("groups") or min(8, v["width"])
        act = cfg.get("activation") or "relu"
        self.stem = ConvGN(C, w, 3, 1, g)
        self.act = activation(act)
        self.stages = nn.ModuleList()
        cin = w
        for i in range(v["stages"]):
            cout = w << i
            stage = nn.ModuleList()
            for j in range(v["blocks"]):
                stage.append(BasicBlock(cin, cout, 2 if i > 0 and j == 0 else 1, g, act))
                cin = cout
            self.stages.append(stage)
        self.proj = nn.Linear(cin, cfg["dim"])

    def forward(self, x):
        h = self.act(self.stem(x))
        for stage in self.stages:
            for b in stage:
                h = b(h)
        return l2_normalize(self.proj(h.mean((2, 3))))


class TextTransformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        v = cfg["transformer"]
        d, L = v["width"], v["context"]
        self.pool = v.get("pool") or "eot"
        self.token_embedding = nn.Embedding(cfg["text_vocab"], d)
        self.positional_embedding = nn.Parameter(torch.zeros(L, d))
        self.blocks = nn.ModuleList(block(d, v["heads"], mlp_width(v.get("mlp", 0), d)) for _ in range(v["depth"]))
        self.ln_final = nn.LayerNorm(d, eps=1e-5)
        self.proj = nn.Linear(d, cfg["dim"])
        self.register_buffer("mask", torch.triu(torch.full((L, L), float("-inf")), diagonal=1), persistent=False)

    def forward(self, ids, lengths):
        """ids: b x L token ids, 0-padded; lengths: the ids of each row (1..L)."""
        h = self.token_embedding(ids) + self.positional_embedding
        for b in self.blocks:
            h = b(h, src_mask=self.mask.to(h.dtype))
        h = self.ln_final(h)
        if self.pool == "eot":
            f = h[torch.arange(h.shape[0]), lengths - 1]
        else:
            keep = (torch.arange(h.shape[1])[None, :] < lengths[:, None]).to(h.dtype)
            f = (h * keep[..., None]).sum(1) / lengths[:, None].to(h.dtype)
        return l2_normalize(self.proj(f))


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n = len(cfg["image_hidden"])
        self.act = activation(cfg.get("activation") or "relu")
        self.layer_norm = cfg.get("layer_norm", False)
        cin = cfg["image_in"]
        for i, h in enumerate(cfg["image_hidden"]):
            setattr(self, f"fc{i}", nn.Linear(cin, h))
            if self.layer_norm:
                setattr(self, f"ln{i}", nn.LayerNorm(h, eps=1e-5))
            cin = h
        self.proj = nn.Linear(cin, cfg["dim"])

    def forward(self, x):
        h = x.flatten(1)
        for i in range(self.n):
            h = getattr(self, f"fc{i}")(h)
            if self.layer_norm:
                h = getattr(self, f"ln{i}")(h)
            h = self.act(h)
        return l2_normalize(self.proj(h))


class BagOfWords(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed = nn.EmbeddingBag(cfg["text_vocab"], cfg["text_hidden"], mode="mean")
        self.ln = nn.LayerNorm(cfg["text_hidden"], eps=1e-5) if cfg.get("layer_norm") else None
        self.act = activation(cfg.get("activation") or "relu")
        self.proj = nn.Linear(cfg["text_hidden"], cfg["dim"])

    def forward(self, ids, lengths):
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])
        flat = torch.cat([ids[i, :n] for i, n in enumerate(lengths.tolist())])
        h = self.embed(flat, offsets)
        if self.ln is not None:
            h = self.ln(h)
        return l2_normalize(self.proj(self.act(h)))


IMAGE_TOWERS = {"vit": ViT, "cnn": CNN, "mlp": MLP, "": MLP}
TEXT_TOWERS = {"transformer": TextTransformer, "bow": BagOfWords, "": BagOfWords}


class Model(nn.Module):
    """The towers of an infonce model.Config (its JSON) and the logit scale."""

    def __init__(self, cfg):
        super().__init__()
        self.image = IMAGE_TOWERS[cfg.get("image_tower", "")](cfg)
        if cfg.get("text_vocab", 0) > 0:
            self.text = TEXT_TOWERS[cfg.get("text_tower", "")](cfg)
        self.logit_scale = nn.Parameter(torch.tensor(float(cfg.get("init_logit_scale", math.log(1 / 0.07)))))

# ---------------------------------------------------------------- golden files


def golden_configs():
    """The small configurations of the golden files (infonce model.Config JSON)."""
    base = {"image_hidden": [8], "text_hidden": 8, "dim": 8, "activation": "relu",
            "init_logit_scale": math.log(1 / 0.07)}
    c = {
        "vit": dict(base, image_in=3 * 8 * 8, image_tower="vit",
                    image_shape={"channels": 3, "height": 8, "width": 8},
                    vit={"patch": 4, "width": 16, "depth": 2, "heads": 2, "mlp": 32, "pool": "cls"}),
        "cnn": dict(base, image_in=3 * 8 * 8, image_tower="cnn",
                    image_shape={"channels": 3, "height": 8, "width": 8},
                    cnn={"width": 8, "stages": 2, "blocks": 1, "groups": 4}),
        "transformer": dict(base, image_in=4, image_hidden=[4], text_vocab=50, text_tower="transformer",
                            transformer={"context": 8, "width": 16, "depth": 2, "heads": 4, "mlp": 0, "pool": "eot"}),
    }
    # The other pools, and the CNN with GELU.
    c["vit_mean"] = dict(c["vit"], vit=dict(c["vit"]["vit"], pool="mean", depth=1))
    c["cnn_gelu"] = dict(c["cnn"], activation="gelu")
    c["transformer_mean"] = dict(c["transformer"], transformer=dict(c["transformer"]["transformer"], pool="mean", depth=1))
    return c


def randomise(model, g):
    """PyTorch's default initialisation (already done), then random norm gains
    and biases, position embeddings and class token; all rounded to float32."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.LayerNorm, nn.GroupNorm)):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, nn.MultiheadAttention):
                m.in_proj_bias.copy_(0.1 * torch.randn(m.in_proj_bias.shape, generator=g))
        for name, p in model.named_parameters():
            if name.endswith(("pos_embed", "cls_token", "positional_embedding")):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))


def write_golden(out, seed):
    os.makedirs(out, exist_ok=True)
    for name, cfg in golden_configs().items():
        text = cfg.get("text_vocab", 0) > 0
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed)
        model = Model(cfg).float()
        randomise(model, g)
        model = model.double()  # float32 weights, computed in float64
        b = 4
        tensors = {}
        if text:
            L = cfg["transformer"]["context"]
            lengths = torch.tensor([L, 3, 5, 1])
            ids = torch.randint(1, cfg["text_vocab"], (b, L), generator=g)
            ids = ids * (torch.arange(L)[None, :] < lengths[:, None])  # 0-padded
            emb = model.text(ids, lengths)
            tensors["input.ids"] = ids.numpy().astype(np.int64)
            tensors["input.lengths"] = lengths.numpy().astype(np.int64)
        else:
            C, H, W = image_shape(cfg)
            x = torch.randn((b, C, H, W), generator=g).float()
            emb = model.image(x.double())
            tensors["input.images"] = x.numpy()
        R = torch.randn(emb.shape, generator=g).float()
        loss = (emb * R.double()).sum()
        loss.backward()
        side = "text." if text else "image."
        weights = {k: v for k, v in model.state_dict().items() if k.startswith(side)}
        for k, v in weights.items():
            tensors[k] = v.float().numpy()
        tensors["loss.projection"] = R.numpy()
        tensors["output.embedding"] = emb.detach().numpy()
        for k, p in model.named_parameters():
            if k.startswith(side):
                tensors["grad." + k] = p.grad.numpy()
        path = os.path.join(out, name + ".safetensors")
        save_safetensors(path, tensors, {"model": json.dumps(cfg), "seed": seed,
                                         "torch": torch.__version__})
        print(f"{path}: {os.path.getsize(path)} bytes, {len(weights)} weights")

# ---------------------------------------------------------------- --load


def load_export(path, rows):
    tensors, meta = load_safetensors(path)
    cfg = json.loads(meta["model"])
    model = Model(cfg).float()
    state = {k: torch.from_numpy(v) for k, v in tensors.items()}
    model.load_state_dict(state, strict=True)
    out = {"config": cfg}
    with torch.no_grad():
        C, H, W = image_shape(cfg)
        # A fixed input: pixel (c, y, x) of image n is ((n + 1)(c + 1) + y + x) mod 7 / 6.
        n, c, y, x = np.meshgrid(np.arange(rows), np.arange(C), np.arange(H), np.arange(W), indexing="ij")
        images = torch.from_numpy((((n + 1) * (c + 1) + y + x) % 7 / 6).astype(np.float32))
        out["image_embedding"] = model.image(images).tolist()
        if hasattr(model, "text"):
            L = cfg.get("transformer", {}).get("context", 8) or 8
            vocab = cfg["text_vocab"]
            lengths = torch.tensor([min(L, i + 1) for i in range(rows)])
            ids = (torch.arange(L)[None, :] % (vocab - 1) + 1) * (torch.arange(L)[None, :] < lengths[:, None])
            out["text_embedding"] = model.text(ids, lengths).tolist()
    json.dump(out, sys.stdout)
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--golden", metavar="DIR", help="write the golden files into DIR")
    ap.add_argument("--seed", type=int, default=1, help="seed of the golden weights and inputs")
    ap.add_argument("--load", metavar="FILE", help="load an exported safetensors file and print embeddings")
    ap.add_argument("--rows", type=int, default=2, help="rows of the fixed input of --load")
    a = ap.parse_args()
    if not a.golden and not a.load:
        ap.error("give --golden DIR or --load FILE")
    if a.golden:
        write_golden(a.golden, a.seed)
    if a.load:
        load_export(a.load, a.rows)


if __name__ == "__main__":
    main()
