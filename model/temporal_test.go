package model

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// temporalConfig is a small Config with a temporal action tower over
// chunks of H = 5 steps of A = 2 actions and S values of state.
func temporalConfig(act string, state int) Config {
	c := Config{ImageIn: 4, ImageHidden: []int{3}, Dim: 3, Activation: act, InitLogitScale: 1}
	c.ActionTower = TowerTemporal
	c.ActionTemporal = TemporalConfig{Horizon: 5, State: state, Width: 4, Kernel: 3}
	c.ActionIn = 5*(2+1) + state
	return c
}

// temporalRows builds b rows of random actions and state with the masks
// given (1 valid, 0 padded), padded steps holding random values too.
func temporalRows(rng *rand.Rand, c Config, masks [][]float64) []float64 {
	H, A, S := 5, 2, c.ActionTemporal.State
	w := c.ActionIn
	x := make([]float64, len(masks)*w)
	for n, m := range masks {
		row := x[n*w : (n+1)*w]
		for i := 0; i < H*A; i++ {
			row[i] = rng.NormFloat64()
		}
		copy(row[H*A:], m)
		for i := 0; i < S; i++ {
			row[H*(A+1)+i] = rng.NormFloat64()
		}
	}
	return x
}

// temporalMasks: a full chunk, one cut by the episode's end, a single
// step, a mask with a gap, and a chunk without a valid step.
var temporalMasks = [][]float64{
	{1, 1, 1, 1, 1},
	{1, 1, 1, 0, 0},
	{1, 0, 0, 0, 0},
	{1, 0, 1, 1, 0},
	{0, 0, 0, 0, 0},
}

// TestTemporalTowerGradients checks ∂(r·w)/∂θ for every parameter of the
// temporal tower and ∂(r·w)/∂x for its input rows against float64 central
// differences, on chunks with padded steps.
func TestTemporalTowerGradients(t *testing.T) {
	for _, tc := range []struct {
		act   string
		state int
	}{{ActGELU, 3}, {ActReLU, 3}, {ActGELU, 0}} {
		t.Run(tc.act+"/state"+string(rune('0'+tc.state)), func(t *testing.T) {
			c := temporalConfig(tc.act, tc.state)
			m, err := New[float64](c, 7)
			if err != nil {
				t.Fatal(err)
			}
			tw, ok := m.Action.(*TemporalTower[float64])
			if !ok {
				t.Fatalf("action tower is %T, want the temporal tower", m.Action)
			}
			rng := rand.New(rand.NewPCG(5, 11))
			for i := range m.P.W {
				m.P.W[i] += 0.3 * rng.NormFloat64()
			}
			b := len(temporalMasks)
			x := temporalRows(rng, c, temporalMasks)
			r := randVec(rng, b*c.Dim)
			loss := func() float64 {
				w, err := m.Action.Forward(Rows(x, b))
				if err != nil {
					t.Fatal(err)
				}
				return dot(r, w)
			}
			var handed [][2]int // each slice's [start, end) in P.G
			m.SetGradReady(func(g []float64) {
				for i := range m.P.G {
					if &m.P.G[i] == &g[0] {
						handed = append(handed, [2]int{i, i + len(g)})
					}
				}
			})
			tw.InputGrad = true
			m.P.ZeroGrad()
			loss()
			if err := m.Action.Backward(r); err != nil {
				t.Fatal(err)
			}
			m.SetGradReady(nil)
			g, dx := slices.Clone(m.P.G), slices.Clone(tw.DX)
			for _, s := range m.P.Segments {
				if strings.HasPrefix(s.Name, "action.") {
					w, _ := m.P.View(s)
					checkFD(t, s.Name, w, g[s.Off:s.Off+s.Len], loss)
				}
			}
			checkFD(t, "input", x, dx, loss)
			// The gradients come in decreasing buffer order, adjacent,
			// from the logit scale down to the action tower's start.
			seg, _ := m.P.Lookup("action.conv0.weight")
			top := m.LogitScale
			for i, h := range handed {
				if h[1] != top {
					t.Fatalf("slice %d covers %v, want it to end at %d", i, h, top)
				}
				top = h[0]
			}
			if top != seg.Off {
				t.Errorf("the handed slices stop at %d, want %d", top, seg.Off)
			}
		})
	}
}

// TestTemporalIgnoresPadding: the values of padded steps never reach the
// embedding (changing them leaves it bit for bit), nor do the other rows
// of the batch, while the state does.
func TestTemporalIgnoresPadding(t *testing.T) {
	c := temporalConfig(ActGELU, 3)
	m, err := New[float64](c, 3)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(2, 2))
	b, w := len(temporalMasks), c.ActionIn
	x := temporalRows(rng, c, temporalMasks)
	emb, err := m.Action.Forward(Rows(x, b))
	if err != nil {
		t.Fatal(err)
	}
	emb = slices.Clone(emb)
	y := slices.Clone(x)
	for n, mask := range temporalMasks {
		for k, v := range mask {
			if v == 0 {
				for a := range 2 {
					y[n*w+k*2+a] = 1e3 * rng.NormFloat64()
				}
			}
		}
	}
	got, err := m.Action.Forward(Rows(y, b))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, emb) {
		t.Errorf("new values at the padded steps changed the embeddings:\n%v\n%v", got, emb)
	}
	for n := range b {
		one, err := m.Action.Forward(Rows(x[n*w:(n+1)*w], 1))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(one, emb[n*c.Dim:(n+1)*c.Dim]) {
			t.Errorf("row %d alone gives %v, in the batch %v", n, one, emb[n*c.Dim:(n+1)*c.Dim])
		}
	}
	// Only the state of row 0 differs: its embedding moves, the others'
	// stay.
	z := slices.Clone(x)
	z[w-1] += 0.5
	got, err = m.Action.Forward(Rows(z, b))
	if err != nil {
		t.Fatal(err)
	}
	if relErr(got[:c.Dim], emb[:c.Dim]) < 1e-6 {
		t.Errorf("a new state left the embedding %v as it was", got[:c.Dim])
	}
	if !slices.Equal(got[c.Dim:], emb[c.Dim:]) {
		t.Errorf("the state of row 0 moved the other rows")
	}
}

// TestTemporalFloat32 runs the tower in float32 and float64 from the same
// parameters: the embeddings agree to float32 rounding.
func TestTemporalFloat32(t *testing.T) {
	c := temporalConfig(ActGELU, 2)
	m64, err := New[float64](c, 4)
	if err != nil {
		t.Fatal(err)
	}
	m32, err := New[float32](c, 4)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range m64.P.W {
		m32.P.W[i] = float32(v)
	}
	rng := rand.New(rand.NewPCG(8, 1))
	b := len(temporalMasks)
	x := temporalRows(rng, c, temporalMasks)
	x32 := make([]float32, len(x))
	for i, v := range x {
		x32[i] = float32(v)
	}
	e64, err := m64.Action.Forward(Rows(x, b))
	if err != nil {
		t.Fatal(err)
	}
	e32, err := m32.Action.Forward(Rows(x32, b))
	if err != nil {
		t.Fatal(err)
	}
	for i := range e64 {
		if d := math.Abs(float64(e32[i]) - e64[i]); d > 1e-5 {
			t.Errorf("embedding %d: float32 %v, float64 %v", i, e32[i], e64[i])
		}
	}
}

// TestTemporalConfig checks the layout against the count and Describe,
// the defaults, and the errors of bad shapes.
func TestTemporalConfig(t *testing.T) {
	c := temporalConfig(ActReLU, 3)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	n, ok := c.paramCount()
	if want := layoutOf(c.clone()).n; !ok || n != want {
		t.Errorf("counted %d parameters (ok %v), laid out %d", n, ok, want)
	}
	towers, err := c.Describe()
	if err != nil {
		t.Fatal(err)
	}
	act := towers[len(towers)-1]
	var names []string
	for _, s := range act.Segments {
		names = append(names, s.Name)
	}
	want := []string{"action.conv0.weight", "action.conv0.bias", "action.conv1.weight", "action.conv1.bias", "action.proj.weight", "action.proj.bias"}
	if act.Kind != TowerTemporal || !slices.Equal(names, want) {
		t.Errorf("action tower %s with %v, want %s with %v", act.Kind, names, TowerTemporal, want)
	}
	if got := act.Segments[0].Len; got != 4*3*(2+3) {
		t.Errorf("conv0 weight of %d values, want C·K·(A+S) = %d", got, 4*3*5)
	}
	d := Config{ImageIn: 4, ImageHidden: []int{3}, Dim: 3, InitLogitScale: 1, ActionIn: 8 * 8, ActionTower: TowerTemporal}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if got, want := d.WithDefaults().ActionTemporal, (TemporalConfig{Horizon: 8, Width: 32, Kernel: 3}); got != want {
		t.Errorf("defaults %+v, want %+v", got, want)
	}
	mlp := d
	mlp.ActionTower = ""
	if got := mlp.WithDefaults().ActionTemporal; got != (TemporalConfig{}) {
		t.Errorf("an mlp action tower got temporal fields %+v", got)
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"width not H·(A+1)+S", func(c *Config) { c.ActionIn++ }, "is not H·(A+1) + S"},
		{"no action dimension", func(c *Config) { c.ActionIn = 5 + 3 }, "is not H·(A+1) + S"},
		{"even kernel", func(c *Config) { c.ActionTemporal.Kernel = 2 }, "Kernel = 2"},
		{"negative width", func(c *Config) { c.ActionTemporal.Width = -1 }, "Width = -1"},
		{"negative state", func(c *Config) { c.ActionTemporal.State = -1 }, "State = -1"},
	} {
		bad := temporalConfig(ActReLU, 3)
		tc.edit(&bad)
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate = %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestTemporalNoAlloc checks that a float32 Forward and Backward of the
// temporal tower allocate nothing once the caches exist.
func TestTemporalNoAlloc(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation allocates")
	}
	c := temporalConfig(ActGELU, 3)
	m, err := New[float32](c, 1)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	b := len(temporalMasks)
	x64 := temporalRows(rng, c, temporalMasks)
	x, r := make([]float32, len(x64)), make([]float32, b*c.Dim)
	for i, v := range x64 {
		x[i] = float32(v)
	}
	for i := range r {
		r[i] = float32(i%5) - 2
	}
	allocs := testing.AllocsPerRun(5, func() {
		if _, err := m.Action.Forward(Rows(x, b)); err != nil {
			t.Fatal(err)
		}
		if err := m.Action.Backward(r); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per Forward and Backward, want 0", allocs)
	}
}
