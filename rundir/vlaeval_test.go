package rundir

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestVLAEvalRoundTrip(t *testing.T) {
	run := t.TempDir()
	if _, err := ReadVLAEval(run); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("vla_eval.json of an empty run: %v, want fs.ErrNotExist", err)
	}
	var v VLAEval
	v.RecallAtK.K = []int{1, 2}
	v.RecallAtK.Action = []float64{0.25, 0.5}
	v.RecallAtK.Instruction = []float64{0.5, 1}
	v.PCA.Families = []string{"push", "lift"}
	v.PCA.X, v.PCA.Y, v.PCA.Family = []float64{1, -1, 0}, []float64{0, 2, 1}, []int{0, 1, -1}
	v.PCA.Variance, v.PCA.Total = [2]float64{3, 1}, 5
	if err := WriteVLAEval(run, &v); err != nil {
		t.Fatal(err)
	}
	got, err := ReadVLAEval(run)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.RecallAtK.Instruction, v.RecallAtK.Instruction) || !slices.Equal(got.PCA.Family, v.PCA.Family) || got.PCA.Total != 5 {
		t.Fatalf("read back %+v, want %+v", got, v)
	}
	// The plots' data is not part of summary.json.
	b, err := json.Marshal(Evaluation{VLAPlots: &v})
	if err != nil || strings.Contains(string(b), "recall_at_k") {
		t.Fatalf("summary fields %s (%v) hold the plots' data", b, err)
	}
	for _, bad := range []string{
		`{"pca":{"x":[1],"y":[],"family":[0],"families":["a"]}}`,
		`{"pca":{"x":[1],"y":[1],"family":[1],"families":["a"]}}`,
		`{"recall_at_k":{"k":[1,2],"action":[0.5],"instruction":[0.5,1]}}`,
		`{`,
	} {
		if err := os.WriteFile(VLAEvalPath(run), []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadVLAEval(run); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
