// Package model holds the encoders of infonce: one flat parameter buffer, one
// flat gradient buffer, and layers that own views into them.
//
// Every parameter tensor of a Model is a Segment of Params.W, and its
// gradient is the same Segment of Params.G. The all-reduce therefore sums one
// buffer, the optimizer steps one buffer and a checkpoint writes one buffer.
//
// Each layer has an explicit Forward and Backward, written after the formula
// it implements:
//
//	Linear        y = x Wᵀ + b                     ∂L/∂x = dy W, ∂L/∂W += dyᵀ x, ∂L/∂b += Σ_rows dy
//	ReLU          y = max(0, x)                    ∂L/∂x = dy ⊙ [x > 0]
//	GELU          y = x Φ(x)                       ∂L/∂x = dy ⊙ (Φ(x) + x φ(x))
//	LayerNorm     y = g ⊙ (x − μ)/σ + β            (see LayerNorm)
//	EmbeddingBag  y_i = (1/n_i) Σ_{j ∈ bag i} E[id_j]
//	L2Normalize   y = x/ν, ν = √(‖x‖² + ε²)        ∂L/∂x = (dy − y (y·dy))/ν
//
// The encoders of images and token sequences add, over b sequences of L
// tokens of width D (b × L × D) or b feature maps (NCHW):
//
//	MultiHeadAttention  y = [softmax(Q_h K_hᵀ/√d_h + M) V_h]_h W_outᵀ + b_out, [Q K V] = x W_inᵀ + b_in
//	                    (the softmax streamed over key blocks, M causal or 0; see MultiHeadAttention)
//	Conv2d              Y = W X_col (+ bias), X_col = im2col(x)   ∂L/∂x = col2im(Wᵀ dY), ∂L/∂W += dY X_colᵀ
//	GroupNorm           y = γ_c (x − μ_g)/σ_g + β_c per group g of channels
//	PatchEmbed          P×P patches → Linear (the convolution of kernel = stride = P)
//	PositionEmbedding   y_n = x_n + E;  ClassToken  y_n = [c; x_n];  TokenEmbedding  y[n, t] = E[id_{n,t}]
//	MeanPool, PoolAt    y_n = mean_t x[n, t], y_n = x[n, at_n];  GlobalAvgPool  y[n, c] = mean_s x[n, c, s]
//	Residual            y = x + F(x);  Sequential, PerToken compose layers
//
// # Towers
//
// A Model is towers over one buffer: an image tower, a text tower when the
// objective reads text, and the learnable logit scale t (s = exp t) after
// them. Every tower implements Tower: Forward(Batch) → N×d L2-normalised
// embeddings, Backward(∂L/∂emb) into its segments of the gradient buffer.
// A kind of tower is one type in one file plus a registerTower call in
// that file's init: its modality, the checks of its Config fields, its
// parameter segments in buffer order with their initialisation, and how
// to wire a tower over views of the buffers. Config.ImageTower and
// Config.TextTower choose the kinds by name (TowerKinds lists them), and
// Config.Describe lists the towers a Config builds, which is how a
// checkpoint's manifest is read back into the same towers.
//
// The kinds so far: "mlp", an image MLP (Linear → [LayerNorm] →
// activation, repeated, then Linear to the embedding dimension d) followed
// by L2 normalisation; "bow", a text tower that mean-pools an EmbeddingBag
// → [LayerNorm] → activation → Linear(→d) → L2 normalisation; "cnn", a
// ResNet-style CNN with GroupNorm (Config.CNN, see CNN); "vit", a vision
// transformer (Config.ViT, see ViT); "transformer", CLIP's causal text
// transformer (Config.Transformer, see Transformer). The transformer
// blocks of the last two are PyTorch's nn.TransformerEncoderLayer with
// norm_first=True, activation="gelu" and no dropout, with its parameter
// names; Config.ImageShape gives the C×H×W of the images, and a Config
// that names one of these kinds gets default shapes for the fields it
// leaves at zero (see encoderDefaults). Their GELU, LayerNorm and
// GroupNorm compute their float32 paths in float32 (GELU.Fast32,
// LayerNorm.Fast32, GroupNorm.Fast32: the norms with the kernels of
// package vec, rows and groups in parallel); the "mlp" and "bow" towers
// keep math.Erf and their LayerNorm's statistics in float64.
//
// Config.TorchStateDict names every segment as the state_dict of PyTorch
// modules with the same structure does (bench/baselines/pytorch/towers.py),
// with PyTorch's shapes: the mapping export writes and the golden tests
// (testdata/torch, PyTorch's embeddings and gradients) read.
//
// Layers allocate their activation caches the first time a batch of a given
// size arrives and reuse them afterwards (they grow only for a larger batch),
// so a training step in the steady state allocates nothing. The slice a
// Forward returns is a view into such a cache and stays valid until the next
// Forward of the same layer. All matrix products go through gemm.Gemm.
//
// Memory. The cnn, vit and transformer towers keep what Backward needs
// and little more: their layers write ∂L/∂x to buffers lent by the
// tower's gradient arena (gradArena), given back once the layer before has
// read them, so the gradients of the whole batch are never all alive; the
// float32 GELU, LayerNorm and GroupNorm recompute Φ, φ and x̂ from their
// input rather than keep them; and the cnn's ReLU and residual sum write
// over a GroupNorm's output, which nothing reads again. Layers whose work
// is independent across rows, channels or (sequence, head) pairs split it
// over GOMAXPROCS goroutines (parallelFor) with the same bits for any
// split.
//
// The element type is generic: float32 for training, float64 for exact
// gradient checks.
package model
