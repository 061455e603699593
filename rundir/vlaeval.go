package rundir

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// VLAEvalFile is the name of the file of a run's VLA evaluation curves.
const VLAEvalFile = "vla_eval.json"

// VLAEvalPath is the path of run's vla_eval.json.
func VLAEvalPath(run string) string { return filepath.Join(run, VLAEvalFile) }

// VLAEval is what the plots of a VLA evaluation need, vla_eval.json: the
// retrieval curves and a 2-D projection of the validation image
// embeddings. The end-of-run evaluation writes it when the validation data
// has actions.
type VLAEval struct {
	// RecallAtK: Action[k−1] and Instruction[k−1] are R@k of the action
	// and instruction retrieval (the summary's action_recall_at_* and
	// instruction_recall_at_*), k = K[k−1] = 1, 2, ….
	RecallAtK struct {
		K           []int     `json:"k"`
		Action      []float64 `json:"action"`
		Instruction []float64 `json:"instruction"`
	} `json:"recall_at_k"`
	// PCA: validation row i's image embedding projected on the first two
	// principal components of the rows' embeddings is (X[i], Y[i]); its
	// task family is Families[Family[i]] (−1: unknown). Variance holds the
	// two components' variances, Total the sum over all components.
	PCA struct {
		Families []string   `json:"families"`
		X        []float64  `json:"x"`
		Y        []float64  `json:"y"`
		Family   []int      `json:"family"`
		Variance [2]float64 `json:"variance"`
		Total    float64    `json:"total_variance"`
	} `json:"pca"`
}

// WriteVLAEval writes v as run's vla_eval.json, atomically.
func WriteVLAEval(run string, v *VLAEval) error {
	return WriteJSON(VLAEvalPath(run), v)
}

// ReadVLAEval reads run's vla_eval.json. A run without one gives an error
// wrapping fs.ErrNotExist.
func ReadVLAEval(run string) (*VLAEval, error) {
	b, err := os.ReadFile(VLAEvalPath(run))
	if err != nil {
		return nil, fmt.Errorf("vla evaluation: %w", err)
	}
	var v VLAEval
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", VLAEvalPath(run), err)
	}
	n := len(v.PCA.X)
	if len(v.PCA.Y) != n || len(v.PCA.Family) != n {
		return nil, fmt.Errorf("%s: pca has %d x, %d y and %d family values", VLAEvalPath(run), n, len(v.PCA.Y), len(v.PCA.Family))
	}
	for i, f := range v.PCA.Family {
		if f < -1 || f >= len(v.PCA.Families) {
			return nil, fmt.Errorf("%s: pca point %d has family %d of %d", VLAEvalPath(run), i, f, len(v.PCA.Families))
		}
	}
	k := len(v.RecallAtK.K)
	if len(v.RecallAtK.Action) != k || len(v.RecallAtK.Instruction) != k {
		return nil, fmt.Errorf("%s: recall_at_k has %d k, %d action and %d instruction values", VLAEvalPath(run), k, len(v.RecallAtK.Action), len(v.RecallAtK.Instruction))
	}
	return &v, nil
}
