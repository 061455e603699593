package worker

import (
	"math"
	"strings"
	"testing"

	"github.com/infonce/infonce/allreduce"
)

// TestNegativesDistributedEqualsSingleProcess: with --hard-negatives and
// --debias, K ranks with uneven shares (B = 10) still produce the loss,
// the gradient (logit scale included) and the parameters after two steps
// of one process, and the gradient is not the plain objective's.
func TestNegativesDistributedEqualsSingleProcess(t *testing.T) {
	for _, tc := range []struct {
		name      string
		objective string
		symmetric bool
	}{{"clip", CLIP, false}, {"simclr", SimCLR, false}, {"moco-symmetric", MoCo, true}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := smallConfig(t, tc.objective)
			cfg.Batch, cfg.Chunk, cfg.MoCoQueue, cfg.MoCoSymmetric = 10, 3, 20, tc.symmetric
			cfg.LearnTemperature = true
			cfg.MaskFalseNegatives = tc.objective == CLIP
			plain, _ := stepOnRanks(t, cfg, 1, 1, func(*allreduce.Ring) Comm[float64] { return Single[float64]{} })
			cfg.HardNegatives, cfg.Debias = 1, 0.1
			one, wantLoss := stepOnRanks(t, cfg, 1, 2, func(*allreduce.Ring) Comm[float64] { return Single[float64]{} })
			first, _ := stepOnRanks(t, cfg, 1, 1, func(*allreduce.Ring) Comm[float64] { return Single[float64]{} })
			if d := relDiff(first[0].Model.P.G, plain[0].Model.P.G); d < 1e-3 {
				t.Errorf("the reweighted gradient is within %.2g of the plain one", d)
			}
			for K := 2; K <= 4; K++ {
				got, gotLoss := stepOnRanks(t, cfg, K, 2, func(r *allreduce.Ring) Comm[float64] { return ring64{r} })
				for s := range wantLoss {
					if d := math.Abs(gotLoss[s]-wantLoss[s]) / math.Abs(wantLoss[s]); d > 1e-10 {
						t.Errorf("K=%d step %d: loss %v, single process %v (rel %.2g)", K, s, gotLoss[s], wantLoss[s], d)
					}
				}
				for k, tr := range got {
					if d := relDiff(tr.Model.P.G, one[0].Model.P.G); d > 1e-10 {
						t.Errorf("K=%d rank %d: gradient differs from the single process by %.2g relative", K, k, d)
					}
					ls := tr.Model.LogitScale
					if g, w := tr.Model.P.G[ls], one[0].Model.P.G[ls]; math.Abs(g-w) > 1e-10*math.Max(math.Abs(w), 1e-12) {
						t.Errorf("K=%d rank %d: dL/dt %v, single process %v", K, k, g, w)
					}
					if d := relDiff(tr.Model.P.W, one[0].Model.P.W); d > 1e-10 {
						t.Errorf("K=%d rank %d: parameters after 2 steps differ by %.2g relative", K, k, d)
					}
				}
			}
		})
	}
}

// TestNegativesObjectiveGradients: the objectives built from the
// configuration with --hard-negatives and --debias write the gradients of
// their losses.
func TestNegativesObjectiveGradients(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  func(*Config)
		mk   func(Config) (Objective[float64], error)
	}{
		{"clip hard", func(c *Config) { c.HardNegatives = 0.8 }, newCLIP[float64]},
		{"clip debiased", func(c *Config) { c.Debias = 0.1 }, newCLIP[float64]},
		{"clip hard+debiased masked", func(c *Config) { c.HardNegatives, c.Debias, c.MaskFalseNegatives = 0.8, 0.1, true }, newCLIP[float64]},
		{"clip hard+tcn", func(c *Config) { c.HardNegatives, c.TCNWeight = 0.8, 0.5 }, newCLIP[float64]},
		{"simclr hard+debiased", func(c *Config) { c.HardNegatives, c.Debias = 0.8, 0.1 }, newSimCLR[float64]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Chunk = 3
			tc.cfg(&cfg)
			obj, err := tc.mk(cfg)
			if err != nil {
				t.Fatal(err)
			}
			checkObjectiveGradient(t, obj, 5, 4)
		})
	}
}

// TestNegativesConfig: the flags' ranges, the objectives they apply to,
// the fingerprint (unchanged at the defaults) and the run spec.
func TestNegativesConfig(t *testing.T) {
	for _, tc := range []struct {
		name      string
		objective string
		beta, tau float64
		want      string // "" for valid
	}{
		{"clip", CLIP, 1, 0.1, ""},
		{"simclr", SimCLR, 0.5, 0, ""},
		{"moco", MoCo, 0, 0.05, ""},
		{"siglip refused", SigLIP, 1, 0, "not to --objective siglip"},
		{"siglip debias refused", SigLIP, 0, 0.1, "not to --objective siglip"},
		{"tri refused", Tri, 1, 0, "not to --objective tri"},
		{"negative β", CLIP, -1, 0, "--hard-negatives -1"},
		{"NaN β", CLIP, math.NaN(), 0, "--hard-negatives NaN"},
		{"τ⁺ = 1", CLIP, 0, 1, "--debias 1"},
		{"negative τ⁺", SimCLR, 0, -0.2, "--debias -0.2"},
		{"siglip at the defaults", SigLIP, 0, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Objective, cfg.HardNegatives, cfg.Debias = tc.objective, tc.beta, tc.tau
			err := cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("valid configuration refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}

	def := DefaultConfig()
	if strings.Contains(def.Fingerprint(), "hard_negatives") || strings.Contains(def.Fingerprint(), "debias") {
		t.Errorf("the default fingerprint names the negatives: %s", def.Fingerprint())
	}
	set := def
	set.HardNegatives, set.Debias = 1, 0.1
	if set.Fingerprint() == def.Fingerprint() {
		t.Errorf("the fingerprint does not tell reweighted negatives from plain ones")
	}
	raw, err := EncodeRunSpec(RunSpec{Config: set})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := DecodeRunSpec(raw)
	if err != nil {
		t.Fatal(err)
	}
	if spec.HardNegatives != 1 || spec.Debias != 0.1 {
		t.Errorf("run spec carries β %g, τ⁺ %g; want 1, 0.1", spec.HardNegatives, spec.Debias)
	}
	raw, err = EncodeRunSpec(RunSpec{Config: def})
	if err != nil {
		t.Fatal(err)
	}
	if s := string(raw); strings.Contains(s, "hard_negatives") || strings.Contains(s, "debias") {
		t.Errorf("the default run spec names the negatives: %s", s)
	}
}
