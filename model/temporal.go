package model

import (
	"fmt"

	"github.com/infonce/infonce/gemm"
)

// TowerTemporal is the action tower that reads a chunk as a sequence of
// steps: a stack of two 1-D convolutions over time, pooled over the valid
// steps (TemporalTower).
const TowerTemporal = "temporal"

// TemporalConfig shapes the "temporal" action tower and says how its
// input row is laid out: H steps of A action values, H mask values, then
// State values of the robot's state (A is what is left of ActionIn).
type TemporalConfig struct {
	Horizon int `json:"horizon"`         // steps H of a chunk (0: 8)
	State   int `json:"state,omitempty"` // state values S after the mask (0: none)
	Width   int `json:"width"`           // channels C of both convolutions (0: 32)
	Kernel  int `json:"kernel"`          // odd kernel size K over time (0: 3)
}

// temporalDefaults fills in the zero fields of the temporal tower's shape.
func (t TemporalConfig) temporalDefaults() TemporalConfig {
	if t.Horizon == 0 {
		t.Horizon = 8
	}
	if t.Width == 0 {
		t.Width = 32
	}
	if t.Kernel == 0 {
		t.Kernel = 3
	}
	return t
}

// temporalShape returns H, A, S, C, K of c's temporal tower, defaults
// applied.
func (c Config) temporalShape() (h, a, s, w, k int) {
	t := c.ActionTemporal.temporalDefaults()
	a = -1
	if t.Horizon > 0 && c.ActionIn-t.State > 0 && (c.ActionIn-t.State)%t.Horizon == 0 {
		a = (c.ActionIn-t.State)/t.Horizon - 1
	}
	return t.Horizon, a, t.State, t.Width, t.Kernel
}

func checkTemporal(c Config) []error {
	var errs []error
	h, a, s, w, k := c.temporalShape()
	if h <= 0 {
		errs = append(errs, fmt.Errorf("model: Config.ActionTemporal.Horizon = %d, want > 0", h))
	}
	if s < 0 {
		errs = append(errs, fmt.Errorf("model: Config.ActionTemporal.State = %d, want >= 0", s))
	}
	if h > 0 && s >= 0 && a < 1 {
		errs = append(errs, fmt.Errorf("model: Config.ActionIn = %d is not H·(A+1) + S for H = %d, S = %d and some A ≥ 1", c.ActionIn, h, s))
	}
	if w <= 0 {
		errs = append(errs, fmt.Errorf("model: Config.ActionTemporal.Width = %d, want > 0", w))
	}
	if k <= 0 || k%2 == 0 {
		errs = append(errs, fmt.Errorf("model: Config.ActionTemporal.Kernel = %d, want an odd size ≥ 1", k))
	}
	return errs
}

func countTemporal(c Config, limit int) (int, bool) {
	_, a, s, w, k := c.temporalShape()
	var n counter
	n.limit = limit
	n.add(w, k*(a+s)+1)
	n.add(w, k*w+1)
	n.add(c.Dim, w+1)
	return n.n, n.ok()
}

// declareTemporal lists action.conv0, action.conv1 and action.proj: each
// convolution's weight is C × K·Cin, column j·Cin + c the weight of input
// channel c at offset j − ⌊K/2⌋ in time.
func declareTemporal(c Config, l *layout) {
	_, a, s, w, k := c.temporalShape()
	l.linear("action.conv0", k*(a+s), w)
	l.linear("action.conv1", k*w, w)
	l.linear("action.proj", w, c.Dim)
}

func init() {
	registerTower(TowerTemporal, towerKind{
		modality: ModalityAction,
		check:    checkTemporal,
		count:    countTemporal,
		declare:  declareTemporal,
		build32:  func(c Config, cur *cursor[float32]) Tower[float32] { return newTemporal(c, cur) },
		build64:  func(c Config, cur *cursor[float64]) Tower[float64] { return newTemporal(c, cur) },
	})
}

func newTemporal[T gemm.Float](cfg Config, c *cursor[T]) *TemporalTower[T] {
	h, a, s, w, k := cfg.temporalShape()
	t := &TemporalTower[T]{H: h, A: a, S: s, C: w, K: k, L2: &L2Normalize[T]{N: cfg.Dim}}
	t.Convs[0] = c.linear("action.conv0", k*(a+s), w)
	t.Convs[1] = c.linear("action.conv1", k*w, w)
	t.Proj = c.linear("action.proj", w, cfg.Dim)
	for l := range t.Acts {
		t.Acts[l] = newActivation[T](cfg.Activation, w)
	}
	return t
}

// TemporalTower encodes a chunk of H steps of A actions with its mask m
// (m_k ≥ ½ marks a valid step) and S values of the state at the chunk's
// first step. Each step's input is x_k = m_k·[a_k, s] (Cin = A + S
// channels); two same-padded convolutions over time of kernel K, each
// followed by the activation and the mask,
//
//	h⁰ = x,  hˡ_k = m_k · act(bˡ + Σ_{j<K} Wˡ_j h^{l−1}_{k+j−⌊K/2⌋})  (l = 1, 2; h_t = 0 outside [0, H)),
//
// are pooled over the valid steps and projected:
//
//	f = Σ_k m_k h²_k / max(1, Σ_k m_k),   w = L2Normalize(f W_projᵀ + b_proj).
//
// A padded step is zero at every layer's input, exactly like the zero
// padding past the chunk's end, so its values never reach the embedding;
// a chunk without a valid step pools to f = 0.
type TemporalTower[T gemm.Float] struct {
	H, A, S, C, K int
	// Convs are the two convolutions as Linear maps of the unfolded
	// windows (b·H rows of K·Cin), Acts their activations.
	Convs [2]*Linear[T]
	Acts  [2]Layer[T]
	Proj  *Linear[T]
	L2    *L2Normalize[T]
	// Ready is ImageTower.Ready's counterpart.
	Ready func(g []T)
	// InputGrad makes Backward also compute DX = ∂L/∂x of the input rows
	// (zero on the mask, which is not differentiable, and on padded
	// steps); a tower whose input is data leaves it off.
	InputGrad bool
	DX        []T

	b        int
	valid    []T    // b×H: m_k as 0 or 1
	inv      []T    // b: 1/max(1, Σ_k m_k)
	x0       []T    // b·H × Cin: the masked step inputs
	cols     [2][]T // the unfolded windows of each convolution
	hs       [2][]T // b·H × C: h¹ and h² (masked)
	f        []T    // b × C: the pooled features
	dh, dcol []T
	ready    bool
}

// Kind is TowerTemporal.
func (t *TemporalTower[T]) Kind() string { return TowerTemporal }

// SetGradReady sets Ready.
func (t *TemporalTower[T]) SetGradReady(ready func(g []T)) { t.Ready = ready }

// Features returns f, the b×C pooled activations of the last Forward.
func (t *TemporalTower[T]) Features() []T { return t.f }

func (t *TemporalTower[T]) rowLen() int { return t.H*(t.A+1) + t.S }

// unfold writes the windows of src (b·H steps of cin channels) into cols
// (b·H rows of K·cin): row (n, k), column j·cin + c holds
// src[n, k + j − ⌊K/2⌋, c], or 0 outside the chunk.
func (t *TemporalTower[T]) unfold(cols, src []T, cin int) {
	p := t.K / 2
	for n := 0; n < t.b; n++ {
		for k := 0; k < t.H; k++ {
			row := cols[(n*t.H+k)*t.K*cin : (n*t.H+k+1)*t.K*cin]
			for j := 0; j < t.K; j++ {
				dst := row[j*cin : (j+1)*cin]
				if s := k + j - p; s >= 0 && s < t.H {
					copy(dst, src[(n*t.H+s)*cin:(n*t.H+s+1)*cin])
				} else {
					clear(dst)
				}
			}
		}
	}
}

// fold is unfold's adjoint: it sets dst (b·H × cin) to the sum of the
// window gradients dcols over the positions each step appears at.
func (t *TemporalTower[T]) fold(dst, dcols []T, cin int) {
	clear(dst)
	p := t.K / 2
	for n := 0; n < t.b; n++ {
		for k := 0; k < t.H; k++ {
			row := dcols[(n*t.H+k)*t.K*cin : (n*t.H+k+1)*t.K*cin]
			for j := 0; j < t.K; j++ {
				if s := k + j - p; s >= 0 && s < t.H {
					addTo(dst[(n*t.H+s)*cin:(n*t.H+s+1)*cin], row[j*cin:(j+1)*cin])
				}
			}
		}
	}
}

// Forward encodes the in.N rows of in.X (N × (H·(A+1) + S)) and returns
// the N×Dim L2-normalised embeddings, a view valid until the next Forward.
func (t *TemporalTower[T]) Forward(in Batch[T]) ([]T, error) {
	t.ready = false // a failed Forward leaves nothing to run Backward on
	b, w := in.N, t.rowLen()
	if err := checkBatch(len(in.X), b, w); err != nil {
		return nil, fmt.Errorf("temporal action tower: %w", err)
	}
	H, A, S, C := t.H, t.A, t.S, t.C
	cin := A + S
	t.b = b
	t.valid, t.inv = grow(t.valid, b*H), grow(t.inv, b)
	t.x0 = grow(t.x0, b*H*cin)
	for n := 0; n < b; n++ {
		row := in.X[n*w : (n+1)*w]
		mask, state := row[H*A:H*(A+1)], row[H*(A+1):]
		valid := 0
		for k := 0; k < H; k++ {
			x := t.x0[(n*H+k)*cin : (n*H+k+1)*cin]
			if !(mask[k] >= 0.5) {
				t.valid[n*H+k] = 0
				clear(x)
				continue
			}
			t.valid[n*H+k] = 1
			valid++
			copy(x, row[k*A:(k+1)*A])
			copy(x[A:], state)
		}
		t.inv[n] = 1 / T(max(valid, 1))
	}
	src, cw := t.x0, cin
	for l := range t.Convs {
		t.cols[l] = grow(t.cols[l], b*H*t.K*cw)
		t.unfold(t.cols[l], src, cw)
		z, err := t.Convs[l].Forward(t.cols[l], b*H)
		if err != nil {
			return nil, fmt.Errorf("temporal action tower: conv%d: %w", l, err)
		}
		y, err := t.Acts[l].Forward(z, b*H)
		if err != nil {
			return nil, fmt.Errorf("temporal action tower: conv%d: %w", l, err)
		}
		t.hs[l] = grow(t.hs[l], b*H*C)
		for r := 0; r < b*H; r++ {
			m := t.valid[r]
			for c, v := range y[r*C : (r+1)*C] {
				t.hs[l][r*C+c] = m * v
			}
		}
		src, cw = t.hs[l], C
	}
	t.f = grow(t.f, b*C)
	clear(t.f)
	for n := 0; n < b; n++ {
		f := t.f[n*C : (n+1)*C]
		for k := 0; k < H; k++ {
			addTo(f, src[(n*H+k)*C:(n*H+k+1)*C])
		}
		for c := range f {
			f[c] *= t.inv[n]
		}
	}
	h, err := t.Proj.Forward(t.f, b)
	if err != nil {
		return nil, fmt.Errorf("temporal action tower: projection: %w", err)
	}
	if h, err = t.L2.Forward(h, b); err != nil {
		return nil, fmt.Errorf("temporal action tower: %w", err)
	}
	t.ready = true
	return h, nil
}

// Backward takes dEmb = ∂L/∂w (b×Dim) of the last Forward and accumulates
// the gradients of the tower's parameters into P.G (and DX with
// InputGrad).
func (t *TemporalTower[T]) Backward(dEmb []T) error {
	if !t.ready {
		return fmt.Errorf("temporal action tower: %w", errNoForward)
	}
	g, err := t.L2.Backward(dEmb)
	if err != nil {
		return fmt.Errorf("temporal action tower: %w", err)
	}
	if g, err = t.Proj.Backward(g); err != nil {
		return fmt.Errorf("temporal action tower: projection: %w", err)
	}
	notify(t.Ready, t.Proj.DB, t.Proj.DW)
	b, H, A, S, C := t.b, t.H, t.A, t.S, t.C
	// ∂L/∂h²_k = m_k ∂L/∂f / max(1, Σ m).
	t.dh = grow(t.dh, b*H*C)
	for n := 0; n < b; n++ {
		for k := 0; k < H; k++ {
			s := t.valid[n*H+k] * t.inv[n]
			for c, v := range g[n*C : (n+1)*C] {
				t.dh[(n*H+k)*C+c] = s * v
			}
		}
	}
	t.Convs[0].NoInputGrad = !t.InputGrad
	cin := A + S
	for l := len(t.Convs) - 1; l >= 0; l-- {
		// hˡ = m ⊙ act(zˡ): the mask's factor, then the activation's.
		for r := 0; r < b*H; r++ {
			if t.valid[r] == 0 {
				clear(t.dh[r*C : (r+1)*C])
			}
		}
		dz, err := t.Acts[l].Backward(t.dh)
		if err != nil {
			return fmt.Errorf("temporal action tower: conv%d: %w", l, err)
		}
		dcols, err := t.Convs[l].Backward(dz)
		if err != nil {
			return fmt.Errorf("temporal action tower: conv%d: %w", l, err)
		}
		notify(t.Ready, t.Convs[l].DB, t.Convs[l].DW)
		if l > 0 {
			t.fold(t.dh, dcols, C)
			continue
		}
		if !t.InputGrad {
			break
		}
		t.dcol = grow(t.dcol, b*H*cin)
		t.fold(t.dcol, dcols, cin)
		w := t.rowLen()
		t.DX = grow(t.DX, b*w)
		clear(t.DX)
		for n := 0; n < b; n++ {
			row := t.DX[n*w : (n+1)*w]
			for k := 0; k < H; k++ {
				if t.valid[n*H+k] == 0 {
					continue
				}
				d := t.dcol[(n*H+k)*cin : (n*H+k+1)*cin]
				copy(row[k*A:(k+1)*A], d[:A])
				addTo(row[H*(A+1):], d[A:])
			}
		}
	}
	return nil
}
