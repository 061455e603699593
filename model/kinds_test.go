package model

import (
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
