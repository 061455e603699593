package optim

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/infonce/infonce/gemm"
)

// step is one update of a hand-computed trajectory: the gradient fed in and
// the parameters expected afterwards.
type step struct {
	g, want []float64
}

func runTrajectory(t *testing.T, o Optimizer[float64], w []float64, lr float64, steps []step) {
	t.Helper()
	for k, s := range steps {
		if err := o.Step(w, s.g, lr); err != nil {
			t.Fatalf("step %d: %v", k+1, err)
		}
		for i := range w {
			if d := math.Abs(w[i] - s.want[i]); d > 1e-14*math.Max(1, math.Abs(s.want[i])) {
				t.Fatalf("step %d: w[%d] = %.17g, want %.17g", k+1, i, w[i], s.want[i])
			}
		}
		if got := o.StepCount(); got != int64(k+1) {
			t.Fatalf("step %d: StepCount = %d", k+1, got)
		}
	}
}

func TestSGDHandComputed(t *testing.T) {
	// Momentum buffers by hand: b₁ = g₁, b₂ = μb₁ + g₂.
	const mu, lr = 0.9, 0.1
	nest1 := 1 - lr*(0.5+mu*0.5)              // b₁ = 0.5, d = g + μb₁
	nest2 := nest1 - lr*(0.5+mu*(mu*0.5+0.5)) // b₂ = 0.95
	cases := []struct {
		name   string
		cfg    SGDConfig
		groups []Group
		w0     []float64
		lr     float64
		steps  []step
	}{
		{"plain", SGDConfig{}, nil, []float64{1, -2}, lr, []step{
			{[]float64{0.5, 0.25}, []float64{0.95, -2.025}},
			{[]float64{0.5, 0.25}, []float64{0.9, -2.05}},
		}},
		{"momentum", SGDConfig{Momentum: mu}, nil, []float64{1}, lr, []step{
			{[]float64{0.5}, []float64{1 - lr*0.5}},
			{[]float64{0.5}, []float64{1 - lr*0.5 - lr*(mu*0.5+0.5)}},
		}},
		{"nesterov", SGDConfig{Momentum: mu, Nesterov: true}, nil, []float64{1}, lr, []step{
			{[]float64{0.5}, []float64{nest1}},
			{[]float64{0.5}, []float64{nest2}},
		}},
		{"decay excludes NoDecay", SGDConfig{WeightDecay: 0.1},
			[]Group{{Name: "w", Off: 0, Len: 1}, {Name: "bias", Off: 1, Len: 1, NoDecay: true}},
			[]float64{1, 1}, 0.5, []step{
				{[]float64{0, 0}, []float64{1 - 0.5*0.1, 1}},
				{[]float64{0, 0}, []float64{(1 - 0.5*0.1) * (1 - 0.5*0.1), 1}},
			}},
		{"momentum with decay", SGDConfig{Momentum: mu, WeightDecay: 0.1}, nil, []float64{2}, lr, []step{
			// g' = 1 + 0.2 = 1.2, b = 1.2, w = 2 − 0.12 = 1.88
			{[]float64{1}, []float64{1.88}},
			// g' = 1 + 0.188, b = 0.9·1.2 + 1.188 = 2.268, w = 1.88 − 0.2268
			{[]float64{1}, []float64{1.88 - 0.2268}},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			runTrajectory(t, NewSGD[float64](len(c.w0), c.groups, c.cfg), append([]float64(nil), c.w0...), c.lr, c.steps)
		})
	}
}

func TestAdamWHandComputed(t *testing.T) {
	const (
		b1, b2, eps, lambda, lr = 0.9, 0.999, 1e-8, 0.01, 0.1
		g1, g2                  = 0.5, -0.25
	)
	// Step 1: m = (1−β₁)g, v = (1−β₂)g², so m̂ = g and v̂ = g².
	upd1 := g1 / (math.Abs(g1) + eps)
	// Step 2: m = β₁(1−β₁)g₁ + (1−β₁)g₂ = 0.045 − 0.025 = 0.02,
	//         v = β₂(1−β₂)g₁² + (1−β₂)g₂² = 0.00024975 + 0.0000625 = 0.00031225.
	mHat2 := 0.02 / (1 - b1*b1)
	vHat2 := 0.00031225 / (1 - b2*b2)
	upd2 := mHat2 / (math.Sqrt(vHat2) + eps)

	wd1 := 1 - lr*(upd1+lambda*1) // decayed element
	wd2 := wd1 - lr*(upd2+lambda*wd1)
	wn1 := 1 - lr*upd1 // NoDecay element
	wn2 := wn1 - lr*upd2

	cfg := AdamWConfig{Beta1: b1, Beta2: b2, Eps: eps, WeightDecay: lambda}
	groups := []Group{{Name: "logit_scale", Off: 1, Len: 1, NoDecay: true}} // element 0 is uncovered: decayed
	o := NewAdamW[float64](2, groups, cfg)
	runTrajectory(t, o, []float64{1, 1}, lr, []step{
		{[]float64{g1, g1}, []float64{wd1, wn1}},
		{[]float64{g2, g2}, []float64{wd2, wn2}},
	})
	st := o.State()
	if len(st) != 2 || st[0].Name != "m" || st[1].Name != "v" {
		t.Fatalf("State names = %v", st)
	}
	if math.Abs(st[0].Data[0]-0.02) > 1e-17 || math.Abs(st[1].Data[0]-0.00031225) > 1e-18 {
		t.Errorf("moments = %v, %v, want 0.02, 0.00031225", st[0].Data[0], st[1].Data[0])
	}
}

func TestLARSHandComputed(t *testing.T) {
	const (
		mu, lambda, eta, lr = 0.9, 0.1, 0.01, 1.0
	)
	// Decayed tensor w = (3, 4): ‖w‖ = 5; g = (0, 1): ‖g‖ = 1.
	r1 := eta * 5 / (1 + lambda*5)
	b1 := []float64{r1 * (0 + lambda*3), r1 * (1 + lambda*4)}
	w1 := []float64{3 - lr*b1[0], 4 - lr*b1[1]}
	// Step 2 with g = (1, 0).
	wn := math.Hypot(w1[0], w1[1])
	r2 := eta * wn / (1 + lambda*wn)
	b2 := []float64{mu*b1[0] + r2*(1+lambda*w1[0]), mu*b1[1] + r2*(0+lambda*w1[1])}
	w2 := []float64{w1[0] - lr*b2[0], w1[1] - lr*b2[1]}
	// NoDecay tensor (element 2): plain momentum SGD, w = 2, g = 1 then 1.
	n1 := 2 - lr*1.0
	n2 := n1 - lr*(mu*1+1)

	cfg := LARSConfig{Momentum: mu, WeightDecay: lambda, Eta: eta}
	groups := []Group{{Name: "W", Off: 0, Len: 2}, {Name: "b", Off: 2, Len: 1, NoDecay: true}}
	runTrajectory(t, NewLARS[float64](3, groups, cfg), []float64{3, 4, 2}, lr, []step{
		{[]float64{0, 1, 1}, []float64{w1[0], w1[1], n1}},
		{[]float64{1, 0, 1}, []float64{w2[0], w2[1], n2}},
	})
}

func TestTrustRatio(t *testing.T) {
	cases := []struct {
		w, g, eta, lambda, eps, want float64
	}{
		{5, 1, 0.001, 0, 0, 0.005},
		{5, 1, 0.01, 0.1, 0, 0.01 * 5 / 1.5},
		{0, 1, 0.01, 0.1, 0, 1},
		{5, 0, 0.01, 0.1, 0, 1},
		{2, 2, 1, 0, 2, 0.5},
	}
	for _, c := range cases {
		if got := TrustRatio(c.w, c.g, c.eta, c.lambda, c.eps); math.Abs(got-c.want) > 1e-15 {
			t.Errorf("TrustRatio(%v, %v, %v, %v, %v) = %v, want %v", c.w, c.g, c.eta, c.lambda, c.eps, got, c.want)
		}
	}
}

// TestLARSTrustRatioScalesUpdate checks that the first update of a decayed
// tensor has norm lr·r·‖g'‖, whatever the scale of w, and that rescaling w and
// g together leaves the relative update unchanged (the point of LARS).
func TestLARSTrustRatioScalesUpdate(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	w0 := make([]float64, 50)
	g := make([]float64, 50)
	for i := range w0 {
		w0[i], g[i] = rng.NormFloat64(), rng.NormFloat64()
	}
	rel := func(scaleW, scaleG float64) float64 {
		w := make([]float64, len(w0))
		gs := make([]float64, len(g))
		for i := range w {
			w[i], gs[i] = w0[i]*scaleW, g[i]*scaleG
		}
		o := NewLARS[float64](len(w), nil, LARSConfig{Momentum: 0.9, Eta: 0.001})
		if err := o.Step(w, gs, 1); err != nil {
			t.Fatal(err)
		}
		var d float64
		for i := range w {
			d += (w[i] - w0[i]*scaleW) * (w[i] - w0[i]*scaleW)
		}
		return math.Sqrt(d) / norm2(w0) / scaleW
	}
	base := rel(1, 1)
	if math.Abs(base-0.001) > 1e-15 { // ‖Δw‖ = lr·η‖w‖/‖g‖·‖g‖
		t.Errorf("relative update %v, want η = 0.001", base)
	}
	for _, s := range [][2]float64{{10, 1}, {1, 1e-3}, {1e3, 7}} {
		if got := rel(s[0], s[1]); math.Abs(got-base) > 1e-12 {
			t.Errorf("scales %v: relative update %v, want %v", s, got, base)
		}
	}
}

// optimizers builds each optimizer with weight decay on the given groups.
func optimizers[T gemm.Float](n int, groups []Group) map[string]Optimizer[T] {
	return map[string]Optimizer[T]{
		"sgd":          NewSGD[T](n, groups, SGDConfig{Momentum: 0.9, WeightDecay: 0.1}),
		"sgd-nesterov": NewSGD[T](n, groups, SGDConfig{Momentum: 0.9, Nesterov: true, WeightDecay: 0.1}),
		"sgd-plain":    NewSGD[T](n, groups, SGDConfig{WeightDecay: 0.1}),
		"adamw":        NewAdamW[T](n, groups, AdamWConfig{Beta1: 0.9, Beta2: 0.98, Eps: 1e-6, WeightDecay: 0.1}),
		"lars":         NewLARS[T](n, groups, LARSConfig{Momentum: 0.9, WeightDecay: 0.1, Eta: 0.001}),
	}
}

func TestNoDecayUntouchedByDecay(t *testing.T) {
	// With a zero gradient the only force is weight decay: NoDecay tensors
	// must not move, decayed ones (including uncovered elements) must shrink.
	groups := []Group{
		{Name: "W1", Off: 0, Len: 3},
		{Name: "b1", Off: 3, Len: 2, NoDecay: true},
		// elements 5, 6 are uncovered
		{Name: "gain", Off: 7, Len: 2, NoDecay: true},
		{Name: "W2", Off: 9, Len: 3},
	}
	noDecay := map[int]bool{3: true, 4: true, 7: true, 8: true}
	for name, o := range optimizers[float64](12, groups) {
		t.Run(name, func(t *testing.T) {
			w := make([]float64, 12)
			for i := range w {
				w[i] = float64(i+1) * 0.5
			}
			g := make([]float64, 12)
			for range 3 {
				if err := o.Step(w, g, 0.1); err != nil {
					t.Fatal(err)
				}
			}
			for i := range w {
				w0 := float64(i+1) * 0.5
				if noDecay[i] && w[i] != w0 {
					t.Errorf("NoDecay w[%d] moved from %v to %v", i, w0, w[i])
				}
				if !noDecay[i] && !(math.Abs(w[i]) < w0) {
					t.Errorf("decayed w[%d] = %v, want |w| < %v", i, w[i], w0)
				}
			}
		})
	}
}

func TestLengthMismatch(t *testing.T) {
	for name, o := range optimizers[float32](4, nil) {
		t.Run(name, func(t *testing.T) {
			w := []float32{1, 2, 3, 4}
			for _, c := range []struct{ w, g []float32 }{
				{w[:3], make([]float32, 3)},
				{w, make([]float32, 5)},
				{w, nil},
			} {
				err := o.Step(c.w, c.g, 0.1)
				if err == nil || !strings.Contains(err.Error(), "built for 4") {
					t.Errorf("len(w)=%d len(g)=%d: err = %v", len(c.w), len(c.g), err)
				}
			}
			if w[0] != 1 || o.StepCount() != 0 {
				t.Errorf("failed Step changed state: w=%v count=%d", w, o.StepCount())
			}
		})
	}
}

func TestInvalidGroupsAndConfig(t *testing.T) {
	bad := []struct {
		name   string
		groups []Group
	}{
		{"overlap", []Group{{Name: "a", Off: 0, Len: 3}, {Name: "b", Off: 2, Len: 2}}},
		{"past end", []Group{{Name: "a", Off: 2, Len: 3}}},
		{"negative", []Group{{Name: "a", Off: -1, Len: 1}}},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			if err := ValidateGroups(4, b.groups); err == nil {
				t.Error("ValidateGroups accepted", b.groups)
			}
			for _, name := range Names {
				if _, err := New[float32](name, 4, b.groups, 0); err == nil {
					t.Errorf("New(%q) accepted %v", name, b.groups)
				}
			}
			if err := NewSGD[float32](4, b.groups, DefaultSGDConfig()).Step(make([]float32, 4), make([]float32, 4), 1); err == nil {
				t.Error("Step with invalid groups succeeded")
			}
		})
	}
	// Groups in any order, touching, with gaps, are fine.
	if err := ValidateGroups(6, []Group{{Off: 4, Len: 2}, {Off: 0, Len: 2}, {Off: 2, Len: 1}}); err != nil {
		t.Error(err)
	}
	configs := []struct {
		name string
		err  error
	}{
		{"adamw zero config", NewAdamW[float32](2, nil, AdamWConfig{WeightDecay: 0.1}).err},
		{"adamw beta 1", NewAdamW[float32](2, nil, AdamWConfig{Beta1: 1, Beta2: 0.9, Eps: 1e-8}).err},
		{"sgd nesterov without momentum", NewSGD[float32](2, nil, SGDConfig{Nesterov: true}).err},
		{"sgd negative decay", NewSGD[float32](2, nil, SGDConfig{WeightDecay: -1}).err},
		{"lars zero eta", NewLARS[float32](2, nil, LARSConfig{Momentum: 0.9}).err},
		{"lars NaN decay", NewLARS[float32](2, nil, LARSConfig{Eta: 1, WeightDecay: math.NaN()}).err},
	}
	for _, c := range configs {
		if c.err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
}

func TestNewNames(t *testing.T) {
	for _, name := range append(Names, "AdamW") {
		o, err := New[float64](name, 3, nil, 0.05)
		if err != nil || o == nil {
			t.Errorf("New(%q): %v", name, err)
		}
	}
	_, err := New[float64]("adagrad", 3, nil, 0)
	if err == nil || !strings.Contains(err.Error(), "sgd, adamw, lars") {
		t.Errorf("unknown name: err = %v, want the list of names", err)
	}
}

// TestStateRoundTrip saves an optimizer's state after a few steps, restores
// it into a fresh optimizer and checks that the next step is bit for bit the
// same.
func TestStateRoundTrip(t *testing.T) {
	testStateRoundTrip[float32](t)
	testStateRoundTrip[float64](t)
}

func testStateRoundTrip[T gemm.Float](t *testing.T) {
	const n = 37
	groups := []Group{{Name: "W", Off: 0, Len: 20}, {Name: "b", Off: 20, Len: 5, NoDecay: true}, {Name: "W2", Off: 25, Len: 12}}
	rng := rand.New(rand.NewPCG(7, 8))
	grad := func() []T {
		g := make([]T, n)
		for i := range g {
			g[i] = T(rng.NormFloat64())
		}
		return g
	}
	a := optimizers[T](n, groups)
	b := optimizers[T](n, groups)
	for name, oa := range a {
		w := grad()
		for range 5 {
			if err := oa.Step(w, grad(), 0.05); err != nil {
				t.Fatal(err)
			}
		}
		// Save: copies of w, the state buffers and the step count.
		saved := make([][]T, 0)
		for _, buf := range oa.State() {
			saved = append(saved, append([]T(nil), buf.Data...))
		}
		wb := append([]T(nil), w...)
		ob := b[name]
		stB := ob.State()
		if len(stB) != len(saved) {
			t.Fatalf("%s: %d state buffers, want %d", name, len(stB), len(saved))
		}
		for i, buf := range stB {
			if buf.Name != oa.State()[i].Name {
				t.Fatalf("%s: buffer %d named %q, want %q", name, i, buf.Name, oa.State()[i].Name)
			}
			copy(buf.Data, saved[i])
		}
		ob.SetStep(oa.StepCount())
		g := grad()
		if err := oa.Step(w, g, 0.03); err != nil {
			t.Fatal(err)
		}
		if err := ob.Step(wb, g, 0.03); err != nil {
			t.Fatal(err)
		}
		for i := range w {
			if w[i] != wb[i] {
				t.Fatalf("%s %T: after restore w[%d] = %v, want %v", name, w[0], i, wb[i], w[i])
			}
		}
		if ob.StepCount() != 6 {
			t.Errorf("%s: StepCount = %d, want 6", name, ob.StepCount())
		}
	}
	// The step count matters for AdamW: without SetStep the bias correction
	// differs and so does the next update.
	oa := NewAdamW[T](n, nil, DefaultAdamWConfig())
	ob := NewAdamW[T](n, nil, DefaultAdamWConfig())
	w := grad()
	for range 3 {
		if err := oa.Step(w, grad(), 0.1); err != nil {
			t.Fatal(err)
		}
	}
	for i, buf := range ob.State() {
		copy(buf.Data, oa.State()[i].Data)
	}
	wb := append([]T(nil), w...)
	g := grad()
	_ = oa.Step(w, g, 0.1)
	_ = ob.Step(wb, g, 0.1)
	same := true
	for i := range w {
		same = same && w[i] == wb[i]
	}
	if same {
		t.Error("AdamW: the step count did not affect the update")
	}
}

func TestStepDoesNotAllocate(t *testing.T) {
	const n = 1000
	groups := []Group{{Name: "W", Off: 0, Len: 900}, {Name: "b", Off: 900, Len: 100, NoDecay: true}}
	w, g := make([]float32, n), make([]float32, n)
	for i := range w {
		w[i], g[i] = float32(i)/n, 1-float32(i)/n
	}
	for name, o := range optimizers[float32](n, groups) {
		if allocs := testing.AllocsPerRun(20, func() { _ = o.Step(w, g, 1e-3) }); allocs != 0 {
			t.Errorf("%s: %v allocations per Step", name, allocs)
		}
	}
	if allocs := testing.AllocsPerRun(20, func() { ClipGlobalNorm(g, 1) }); allocs != 0 {
		t.Errorf("ClipGlobalNorm: %v allocations", allocs)
	}
}

// TestFloat32FollowsFloat64 runs the same trajectory in both element types.
func TestFloat32FollowsFloat64(t *testing.T) {
	const n = 64
	rng := rand.New(rand.NewPCG(11, 12))
	w64, w32 := make([]float64, n), make([]float32, n)
	for i := range w64 {
		w32[i] = float32(rng.NormFloat64())
		w64[i] = float64(w32[i])
	}
	o64, o32 := optimizers[float64](n, nil), optimizers[float32](n, nil)
	for name := range o64 {
		a, b := append([]float64(nil), w64...), append([]float32(nil), w32...)
		for range 10 {
			g32 := make([]float32, n)
			g64 := make([]float64, n)
			for i := range g32 {
				g32[i] = float32(rng.NormFloat64())
				g64[i] = float64(g32[i])
			}
			_ = o64[name].Step(a, g64, 0.01)
			_ = o32[name].Step(b, g32, 0.01)
		}
		for i := range a {
			if math.Abs(a[i]-float64(b[i])) > 1e-5 {
				t.Fatalf("%s: w[%d] float64 %v, float32 %v", name, i, a[i], b[i])
			}
		}
	}
}
