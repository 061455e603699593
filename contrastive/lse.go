package contrastive

import (
	"math"

	"github.com/infonce/infonce/gemm"
	"github.com/infonce/infonce/vec"
)

// LogSumExp returns log Σ_i exp(x_i), computed as m + log Σ_i exp(x_i − m)
// with m = max_i x_i and the sum accumulated in float64, so it neither
// overflows nor underflows for any logit scale or length. It is −Inf for an
// empty x (or all entries −Inf), +Inf if some entry is +Inf, NaN if some
// entry is NaN.
func LogSumExp[T gemm.Float](x []T) T {
	m, z := math.Inf(-1), 0.0
	for _, v := range x {
		if math.IsNaN(float64(v)) {
			return T(math.NaN())
		}
		if math.IsInf(float64(v), 1) {
			return T(math.Inf(1))
		}
	}
	lseAdd(&m, &z, x)
	return T(lseValue(m, z))
}

// lseAdd folds the entries of row into the running log-sum-exp (m, z) of
// all entries seen so far, lse = m + log z: the running maximum m and the
// sum z = Σ exp(x − m). A new maximum rescales z once per call.
//
// A float32 row goes through the vectorised kernels of package vec (float32
// exponentials, summed in float32 within the row); a float64 row keeps
// math.Exp and float64 sums.
func lseAdd[T gemm.Float](m, z *float64, row []T) {
	if r, ok := any(row).([]float32); ok {
		lseAdd32(m, z, r)
		return
	}
	cm := math.Inf(-1)
	for _, x := range row {
		if float64(x) > cm {
			cm = float64(x)
		}
	}
	if math.IsInf(cm, -1) {
		lseNaN(z, row) // all entries −Inf (contribute nothing) or NaN
		return
	}
	lseShift(m, z, cm)
	var sum float64
	for _, x := range row {
		sum += math.Exp(float64(x) - *m)
	}
	*z += sum
}

// lseAdd32 is lseAdd on a float32 row: the maximum and Σ exp(x − m) of
// the row by the vec kernels. The running maximum m is always a float32
// value (an entry of some row, or −Inf), so the shift is exact.
func lseAdd32(m, z *float64, row []float32) {
	cm := vec.Max(row) // skips NaNs, like the loop of lseAdd
	if math.IsInf(float64(cm), -1) {
		lseNaN(z, row)
		return
	}
	lseShift(m, z, float64(cm))
	*z += float64(vec.ExpSum(row, float32(*m)))
}

// lseNaN poisons z when row holds a NaN that the maximum search skipped.
func lseNaN[T gemm.Float](z *float64, row []T) {
	for _, x := range row {
		if x != x {
			*z = math.NaN()
			return
		}
	}
}

// lseShift moves the running maximum to cm if cm is larger, rescaling z.
func lseShift(m, z *float64, cm float64) {
	if cm > *m {
		*z *= math.Exp(*m - cm)
		*m = cm
	}
}

// lseAddIf folds the entries row[j] with ids[j] == id into (m, z): the
// log-sum-exp over the positives of a row under false-negative masking.
func lseAddIf[T gemm.Float](m, z *float64, row []T, ids []int32, id int32) {
	cm := math.Inf(-1)
	for j, x := range row {
		if ids[j] == id && float64(x) > cm {
			cm = float64(x)
		}
	}
	if math.IsInf(cm, -1) {
		return
	}
	lseShift(m, z, cm)
	var sum float64
	for j, x := range row {
		if ids[j] == id {
			sum += math.Exp(float64(x) - *m)
		}
	}
	*z += sum
}

// lseAddSkip folds every entry of row except row[skip] (skip < 0 or past
// the end skips nothing) into (m, z).
func lseAddSkip[T gemm.Float](m, z *float64, row []T, skip int) {
	if skip < 0 || skip >= len(row) {
		lseAdd(m, z, row)
		return
	}
	lseAdd(m, z, row[:skip])
	lseAdd(m, z, row[skip+1:])
}

// lseValue is the log-sum-exp m + log z of a running accumulator.
func lseValue(m, z float64) float64 {
	if z == 0 {
		return math.Inf(-1)
	}
	return m + math.Log(z)
}
