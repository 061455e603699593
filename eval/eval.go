package eval

import (
	"fmt"
	"math"

	"github.com/infonce/infonce/gemm"
)

// blockElems bounds the size of one similarity block (rows × columns), so
// that memory stays O(block·n): 1<<21 elements is 8 MiB in float32. Tests
// lower it to cross many block boundaries with small inputs.
var blockElems = 1 << 21

// blockRows is the number of query rows per similarity block against cols
// candidates.
func blockRows(cols int) int {
	return max(1, min(1024, blockElems/max(cols, 1)))
}

// mustShape panics when a slice does not hold rows×cols elements.
func mustShape[T any](what string, x []T, rows, cols int) {
	if rows < 0 || cols < 0 || len(x) != rows*cols {
		panic(fmt.Sprintf("eval: %s has %d elements, want %d×%d", what, len(x), rows, cols))
	}
}

// mustLabels panics when labels is not n labels in [0, classes) (classes ≤ 0:
// any non-negative label).
func mustLabels(labels []int, n, classes int) {
	if len(labels) != n {
		panic(fmt.Sprintf("eval: %d labels for %d items", len(labels), n))
	}
	for i, y := range labels {
		if y < 0 || (classes > 0 && y >= classes) {
			panic(fmt.Sprintf("eval: label %d of item %d outside [0, %d)", y, i, classes))
		}
	}
}

// rank0 is the 0-based position of entry t when row is sorted by descending
// score with ties in index order (a stable sort): the number of entries
// scored higher, plus the entries before t scored the same. NaN scores sort
// after every number.
func rank0[T gemm.Float](row []T, t int) int {
	st := row[t]
	r := 0
	if st != st { // NaN: after every number and every earlier NaN
		for j, s := range row {
			if s == s || j < t {
				r++
			}
		}
		return r
	}
	for j, s := range row {
		if s > st || (s == st && j < t) {
			r++
		}
	}
	return r
}

// argmax is the index of the highest score, the first one among equals;
// NaN scores lose to every number.
func argmax[T gemm.Float](row []T) int {
	best := 0
	for j, s := range row {
		if s > row[best] || (row[best] != row[best] && s == s) {
			best = j
		}
	}
	return best
}

// frac is k/n as a float, NaN for n = 0.
func frac(k, n int) float64 {
	if n == 0 {
		return math.NaN()
	}
	return float64(k) / float64(n)
}
