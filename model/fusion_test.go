package model

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func fusionConfig() Config {
	c := DefaultConfig()
	c.ImageIn, c.ImageHidden, c.TextVocab, c.TextHidden, c.Dim = 9, []int{5}, 11, 4, 3
	c.Fusion = FusionMLP
	return c
}

// TestFusionLayout: a fusion head puts fusion.fc1 (2d→h) and fusion.fc2
// (h→d) after the logit scale, leaves the rest of the layout and its
// initial values as they were, defaults h to 2d, and is listed by
// Describe and TorchStateDict.
func TestFusionLayout(t *testing.T) {
	plain := fusionConfig()
	plain.Fusion = ""
	c := fusionConfig()
	p, err := New[float64](plain, 7)
	if err != nil {
		t.Fatal(err)
	}
	m, err := New[float64](c, 7)
	if err != nil {
		t.Fatal(err)
	}
	d, h := c.Dim, 2*c.Dim
	if m.Cfg.FusionHidden != h || c.WithDefaults().FusionHidden != h {
		t.Errorf("FusionHidden %d, want the default 2·Dim = %d", m.Cfg.FusionHidden, h)
	}
	if p.Fusion != nil || p.FusionOff != -1 {
		t.Errorf("a model without Config.Fusion has a fusion head at %d", p.FusionOff)
	}
	n := len(p.P.W)
	if m.FusionOff != n || len(m.P.W) != n+h*(2*d+1)+d*(h+1) || m.Fusion.NumParams() != len(m.P.W)-n {
		t.Fatalf("fusion head at %d of %d parameters, want at %d with %d", m.FusionOff, len(m.P.W), n, h*(2*d+1)+d*(h+1))
	}
	if !slices.Equal(m.P.W[:n], p.P.W) || !slices.Equal(m.P.Segments[:len(p.P.Segments)], p.P.Segments) {
		t.Error("the fusion head changed the parameters before it")
	}
	var names []string
	for _, s := range m.P.Segments[len(p.P.Segments):] {
		names = append(names, s.Name)
	}
	if want := []string{"fusion.fc1.weight", "fusion.fc1.bias", "fusion.fc2.weight", "fusion.fc2.bias"}; !slices.Equal(names, want) {
		t.Errorf("fusion segments %v, want %v", names, want)
	}
	// PyTorch's Linear initialisation: U(±1/√fan_in).
	for _, w := range m.Fusion.FC1.W {
		if math.Abs(w) > 1/math.Sqrt(float64(2*d)) {
			t.Fatalf("fc1 weight %v outside ±1/√%d", w, 2*d)
		}
	}
	info, err := c.Describe()
	if err != nil {
		t.Fatal(err)
	}
	last := info[len(info)-1]
	if last.Modality != ModalityFusion || last.Kind != FusionMLP || last.Params != m.Fusion.NumParams() || last.Segments[0].Off != m.FusionOff {
		t.Errorf("Describe lists %+v last, want the fusion head", last)
	}
	ts, err := c.TorchStateDict()
	if err != nil {
		t.Fatal(err)
	}
	if got := ts[len(ts)-4]; got.Name != "fusion.fc1.weight" || !slices.Equal(got.Shape, []int{h, 2 * d}) {
		t.Errorf("state dict entry %s %v, want fusion.fc1.weight [%d %d]", got.Name, got.Shape, h, 2*d)
	}
}

// TestFusionForward: the head maps rows of u and v to unit vectors, each
// row depending only on its own u and v.
func TestFusionForward(t *testing.T) {
	c := fusionConfig()
	c.FusionHidden = 5
	m, err := New[float64](c, 3)
	if err != nil {
		t.Fatal(err)
	}
	d := c.Dim
	u := []float64{1, 0, 0, 0, 1, 0, 0.6, 0.8, 0}
	v := []float64{0, 0, 1, 1, 0, 0, 0, 0.6, 0.8}
	f, err := m.Fusion.Forward(u, v, 3)
	if err != nil {
		t.Fatal(err)
	}
	f = slices.Clone(f)
	for i := range 3 {
		var ss float64
		for _, x := range f[i*d : (i+1)*d] {
			ss += x * x
		}
		if math.Abs(ss-1) > 1e-9 {
			t.Errorf("row %d: ‖f‖² = %v, want 1", i, ss)
		}
		one, err := m.Fusion.Forward(u[i*d:(i+1)*d], v[i*d:(i+1)*d], 1)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(one, f[i*d:(i+1)*d]) {
			t.Errorf("row %d alone: %v, in the batch %v", i, one, f[i*d:(i+1)*d])
		}
	}
	if _, err := m.Fusion.Forward(u, v[:d], 3); err == nil {
		t.Error("Forward with fewer instruction rows succeeded")
	}
}

func TestFusionValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string // "" for a valid configuration
	}{
		{"mlp", func(*Config) {}, ""},
		{"mlp with width", func(c *Config) { c.FusionHidden = 7 }, ""},
		{"unknown kind", func(c *Config) { c.Fusion = "gate" }, "Config.Fusion"},
		{"no text tower", func(c *Config) { c.TextVocab = 0 }, "text tower"},
		{"negative width", func(c *Config) { c.FusionHidden = -1 }, "FusionHidden"},
		{"width without head", func(c *Config) { c.Fusion, c.FusionHidden = "", 4 }, "without a fusion head"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fusionConfig()
			tc.edit(&c)
			err := c.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
}
