package worker

import (
	"math"
	"testing"

	"github.com/infonce/infonce/gemm"
	"github.com/infonce/infonce/vec"
)

// kernelRunSteps is the length of the training run compared across kernels.
const kernelRunSteps = 20

// The same short CLIP training run gives the same losses, within float32
// tolerance, with the assembly kernels (the default matrix kernel of this
// CPU and vec's AVX2 code) and with the pure-Go ones (gonum's Sgemm and
// vec's portable code). The two differ only in the order of float32 sums
// (and fused multiply-adds), so the losses agree to a few units in the
// last place at first and drift apart slowly as the parameters do.
func TestKernelsGiveTheSameTraining(t *testing.T) {
	if vec.Impl() == "go" && gemm.Current() == (gemm.Gonum{}) {
		t.Skip("this CPU or build has no assembly kernels to compare with the pure-Go ones")
	}
	run := func() []float64 {
		set := smallMNIST(t, 4096, 10)
		cfg := smallConfig(t, CLIP)
		cfg.Batch, cfg.Steps = 128, kernelRunSteps
		cfg.ImageHidden = []int{128, 64}
		cfg.TextHidden, cfg.Dim = 64, 32
		tr, err := NewTrainer[float32](cfg, set)
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		return trainSteps(t, tr, 0, kernelRunSteps)
	}
	asm := run()
	asmGemm, asmVec := gemm.Current(), vec.Impl()

	defer gemm.Use(gemm.Use(gemm.Gonum{}))
	prev, err := vec.Use("go")
	if err != nil {
		t.Fatal(err)
	}
	defer vec.Use(prev)
	pure := run()

	// float32 tolerance: relative 1e-6 per step of training, which the
	// drift stays well inside; a wrong kernel is off by far more.
	for s := range asm {
		tol := 1e-6 * float64(s+1) * (1 + math.Abs(pure[s]))
		d := math.Abs(asm[s] - pure[s])
		t.Logf("step %2d: loss %.7f (%s, vec %s)  %.7f (go)  |Δ| %.2g", s, asm[s], asmGemm, asmVec, pure[s], d)
		if !(d <= tol) {
			t.Errorf("step %d: loss %.8g with the assembly kernels, %.8g with the pure-Go ones: |Δ| %.3g > %.3g", s, asm[s], pure[s], d, tol)
		}
	}
}
