package model

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func TestTowerKinds(t *testing.T) {
	if got := TowerKinds(ModalityImage); !slices.Contains(got, TowerMLP) {
		t.Errorf("image kinds %v lack %s", got, TowerMLP)
	}
	if got := TowerKinds(ModalityText); !slices.Contains(got, TowerBagOfWords) || slices.Contains(got, TowerMLP) {
		t.Errorf("text kinds %v: want %s and no image kind", got, TowerBagOfWords)
	}
	for _, tc := range []struct {
		name       string
		image, txt string
		want       string
	}{
		{"defaults", "", "", ""},
		{"explicit", TowerMLP, TowerBagOfWords, ""},
		{"unknown image", "resnet-9000", "", `image tower "resnet-9000" is unknown`},
		{"text kind as image", TowerBagOfWords, "", `image tower "bow" is unknown`},
		{"image kind as text", "", TowerMLP, `text tower "mlp" is unknown`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			c.TextVocab = 10
			c.ImageTower, c.TextTower = tc.image, tc.txt
			err := c.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestDescribeMatchesModel: the towers Describe lists from a Config are
// the segments a model built from it has, in buffer order, and they cover
// the buffer but for the logit scale.
func TestDescribeMatchesModel(t *testing.T) {
	c := DefaultConfig()
	c.TextVocab, c.LayerNorm = 40, true
	towers, err := c.Describe()
	if err != nil {
		t.Fatal(err)
	}
	m, err := New[float32](c, 1)
	if err != nil {
		t.Fatal(err)
	}
	var segs []Segment
	n := 0
	for _, tw := range towers {
		segs = append(segs, tw.Segments...)
		n += tw.Params
	}
	if want := m.P.Segments[:len(m.P.Segments)-1]; !slices.Equal(segs, want) {
		t.Errorf("Describe's segments\n%v\nmodel's\n%v", segs, want)
	}
	if n+1 != len(m.P.W) {
		t.Errorf("towers hold %d parameters, model %d (with the logit scale)", n, len(m.P.W))
	}
	if towers[0].Kind != TowerMLP || m.Image.Kind() != TowerMLP || towers[1].Kind != TowerBagOfWords || m.Text.Kind() != TowerBagOfWords {
		t.Errorf("kinds %s, %s; model's %s, %s", towers[0].Kind, towers[1].Kind, m.Image.Kind(), m.Text.Kind())
	}
}

// TestActionTower: a Config with ActionIn builds a third tower after the
// text tower, whose gradient matches finite differences like the others.
func TestActionTower(t *testing.T) {
	c := DefaultConfig()
	c.ImageIn, c.ImageHidden, c.TextVocab, c.TextHidden, c.Dim = 12, []int{6}, 5, 4, 3
	c.ActionIn, c.ActionHidden = 10, []int{7}
	m, err := New[float64](c, 3)
	if err != nil {
		t.Fatal(err)
	}
	if m.Action == nil || m.Action.Kind() != TowerMLP {
		t.Fatalf("no action tower")
	}
	towers, _ := c.Describe()
	if len(towers) != 3 || towers[2].Modality != ModalityAction || towers[2].Segments[0].Name != "action.fc0.weight" {
		t.Fatalf("towers %+v", towers)
	}
	if s, ok := m.P.Lookup("action.proj.bias"); !ok || s.Off+s.Len != m.LogitScale {
		t.Fatalf("action.proj.bias %+v must end where the logit scale starts (%d)", s, m.LogitScale)
	}
	// ∂(r·w)/∂θ against central differences, for a fixed random r.
	const b = 2
	x := []float64{0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8, 0.9, 1, 0.2, -0.1, 0.3, -0.3, 0.5, 0.1, 0.2, 0.4, -0.6, 0.2}
	r := []float64{0.3, -1, 0.5, 0.7, 0.2, -0.4}
	f := func() float64 {
		w, err := m.Action.Forward(Rows(x, b))
		if err != nil {
			t.Fatal(err)
		}
		var s float64
		for i := range w {
			s += r[i] * w[i]
		}
		return s
	}
	f()
	m.P.ZeroGrad()
	if err := m.Action.Backward(r); err != nil {
		t.Fatal(err)
	}
	seg, _ := m.P.Lookup("action.fc0.weight")
	for _, i := range []int{seg.Off, seg.Off + 17, seg.Off + 50} {
		old := m.P.W[i]
		m.P.W[i] = old + 1e-6
		up := f()
		m.P.W[i] = old - 1e-6
		down := f()
		m.P.W[i] = old
		if fd := (up - down) / 2e-6; math.Abs(fd-m.P.G[i]) > 1e-6*math.Max(1, math.Abs(fd)) {
			t.Errorf("∂/∂W[%d]: backward %v, finite differences %v", i, m.P.G[i], fd)
		}
	}
}
