package worker

import (
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"testing"

	"github.com/infonce/infonce/dataset"
)

// unitRow is a random unit vector of d dimensions plus scale·e_c (c < 0:
// none), normalised.
func unitRow(rng *rand.Rand, d, c int, scale, noise float64) []float64 {
	x := make([]float64, d)
	var ss float64
	for j := range x {
		x[j] = noise * rng.NormFloat64()
		if j == c {
			x[j] += scale
		}
		ss += x[j] * x[j]
	}
	for j := range x {
		x[j] /= math.Sqrt(ss)
	}
	return x
}

// TestTaskRecognitionKnown: image embeddings near the axis of their
// family, prompts near the same axes (a different number per family), are
// recognised perfectly by both scores; embeddings that carry no family
// score about chance, 1/C.
func TestTaskRecognitionKnown(t *testing.T) {
	const d, C, nTr, nVa = 16, 4, 4000, 2000
	counts := []int{1, 2, 3, 2}
	for _, tc := range []struct {
		name     string
		scale    float64
		min, max float64
	}{
		{"separated", 1, 1, 1},
		{"random", 0, 1.0/C - 0.05, 1.0/C + 0.05},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, 8))
			rows := func(n int) ([]float64, []int) {
				var x []float64
				y := make([]int, n)
				for i := range y {
					y[i] = rng.IntN(C)
					x = append(x, unitRow(rng, d, y[i], tc.scale, 0.1)...)
				}
				return x, y
			}
			trX, trY := rows(nTr)
			vaX, vaY := rows(nVa)
			var prompts []float64
			for c, k := range counts {
				for range k {
					prompts = append(prompts, unitRow(rng, d, c, 1, 0.1)...)
				}
			}
			zs, probe, err := taskRecognition(trX, trY, vaX, vaY, prompts, counts, d, 1)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("zero-shot %.3f, probe %.3f (chance %.3f)", zs, probe, 1.0/C)
			for name, v := range map[string]float64{"zero-shot": zs, "probe": probe} {
				if v < tc.min || v > tc.max {
					t.Errorf("%s accuracy %.4f, want in [%.2f, %.2f]", name, v, tc.min, tc.max)
				}
			}
		})
	}
	if _, _, err := taskRecognition([]float64{1, 0}, []int{0}, []float64{1, 0}, []int{0}, make([]float64, 2*2), []int{1, 2}, 2, 1); err == nil {
		t.Error("fewer prompt rows than counts accepted")
	}
}

// TestVLAPlots: the curves are R@k of the given ranks, and the PCA
// coordinates keep two well separated families apart along the first
// component.
func TestVLAPlots(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const d, n = 8, 60
	var u []float32
	fam := make([]int, n)
	for i := range n {
		fam[i] = i % 2
		for _, v := range unitRow(rng, d, 3*fam[i], 1, 0.05) {
			u = append(u, float32(v))
		}
	}
	ranksA := make([]int, n)
	for i := range ranksA {
		ranksA[i] = i + 1
	}
	ranksI := slices.Repeat([]int{1}, n)
	tf := &dataset.TaskFamilies{IDsPerFamily: 1, Families: []dataset.TaskFamily{{Name: "a", Prompts: []string{"a"}}, {Name: "b", Prompts: []string{"b"}}}}
	p, err := vlaPlots(ranksA, ranksI, u, fam, tf, d)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.RecallAtK.K) != recallCurveK || p.RecallAtK.K[49] != 50 {
		t.Fatalf("k %v", p.RecallAtK.K)
	}
	for k := 1; k <= recallCurveK; k++ {
		if a, i := p.RecallAtK.Action[k-1], p.RecallAtK.Instruction[k-1]; math.Abs(a-float64(k)/n) > 1e-12 || i != 1 {
			t.Fatalf("R@%d: action %v instruction %v, want %v and 1", k, a, i, float64(k)/n)
		}
	}
	if !slices.Equal(p.PCA.Families, []string{"a", "b"}) || len(p.PCA.X) != n || len(p.PCA.Y) != n || !slices.Equal(p.PCA.Family, fam) {
		t.Fatalf("pca %+v", p.PCA)
	}
	if !(p.PCA.Variance[0] >= p.PCA.Variance[1]) || p.PCA.Variance[0] > p.PCA.Total || p.PCA.Variance[0] < 0.8*p.PCA.Total {
		t.Fatalf("variances %v of %v: the first component should hold the families' split", p.PCA.Variance, p.PCA.Total)
	}
	// Every point of family 0 on one side of 0 along the first component,
	// every point of family 1 on the other.
	side := math.Signbit(p.PCA.X[0])
	for i := range n {
		if math.Signbit(p.PCA.X[i]) != (side == (fam[i] == 0)) {
			t.Fatalf("point %d of family %d at x = %v: the families overlap", i, fam[i], p.PCA.X[i])
		}
	}
}

// writeMoveFamilies writes the tasks.json of writeEpisodes' toy robot (task
// e%4, one family per move) into dir.
func writeMoveFamilies(t testing.TB, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tf := &dataset.TaskFamilies{IDsPerFamily: 1}
	for _, m := range []string{"left", "right", "up", "down"} {
		tf.Families = append(tf.Families, dataset.TaskFamily{Name: m, Prompts: []string{"move the dot " + m, "the dot goes " + m}})
	}
	if err := dataset.WriteTaskFamilies(dir+"/"+dataset.TasksFile, tf); err != nil {
		t.Fatal(err)
	}
}
