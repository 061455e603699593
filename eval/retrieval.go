package eval

import (
	"math"
	"slices"

	"github.com/infonce/infonce/gemm"
)

// Directional holds the retrieval metrics of one direction. R1, R5 and R10
// are the fractions of queries whose match ranks within the first 1, 5, 10;
// MeanRank and MedianRank are 1-based, as in OpenCLIP (MedianRank is the
// floor of the median 0-based rank, plus one).
type Directional struct {
	R1, R5, R10, MeanRank, MedianRank float64
}

// RetrievalResult holds both directions of image↔text retrieval, and the
// class-level R@1 of each: the fraction of queries whose top hit is any item
// of the query's class (NaN without labels).
type RetrievalResult struct {
	I2T, T2I               Directional
	ClassR1I2T, ClassR1T2I float64
}

// Retrieval scores image→text and text→image retrieval among n pairs: image i
// (row i of img) and text i (row i of txt) match, all other rows are
// distractors, and the score of a pair is the dot product. labels, if not
// nil, gives each pair's class for the class-level R@1. Equal scores are
// ordered by index.
func Retrieval[T gemm.Float](img, txt []T, n, d int, labels []int) RetrievalResult {
	mustShape("img", img, n, d)
	mustShape("txt", txt, n, d)
	if labels != nil {
		mustLabels(labels, n, 0)
	}
	var res RetrievalResult
	res.I2T, res.ClassR1I2T = direction(img, txt, n, d, labels)
	res.T2I, res.ClassR1T2I = direction(txt, img, n, d, labels)
	return res
}

// direction ranks, for every query row i of q, candidate i of c among all
// rows of c. Each block S = Q_blk Cᵀ holds whole rows, so a query's own
// score and its competitors' come from one product.
func direction[T gemm.Float](q, c []T, n, d int, labels []int) (Directional, float64) {
	ranks := make([]int, n)
	classHits := 0
	blk := blockRows(n)
	s := make([]T, min(blk, n)*n)
	for i0 := 0; i0 < n; i0 += blk {
		b := min(blk, n-i0)
		gemm.Gemm(false, true, b, n, d, 1, q[i0*d:], d, c, d, 0, s, n)
		for r := range b {
			i := i0 + r
			row := s[r*n : (r+1)*n]
			ranks[i] = rank0(row, i)
			if labels != nil && labels[argmax(row)] == labels[i] {
				classHits++
			}
		}
	}
	classR1 := math.NaN()
	if labels != nil {
		classR1 = frac(classHits, n)
	}
	return summarise(ranks), classR1
}

// summarise turns 0-based ranks into recall@k and 1-based mean and median
// ranks.
func summarise(ranks []int) Directional {
	n := len(ranks)
	if n == 0 {
		nan := math.NaN()
		return Directional{nan, nan, nan, nan, nan}
	}
	var r1, r5, r10 int
	var sum float64
	for _, r := range ranks {
		if r < 1 {
			r1++
		}
		if r < 5 {
			r5++
		}
		if r < 10 {
			r10++
		}
		sum += float64(r)
	}
	sorted := slices.Clone(ranks)
	slices.Sort(sorted)
	med := float64(sorted[n/2])
	if n%2 == 0 {
		med = (float64(sorted[n/2-1]) + med) / 2
	}
	return Directional{
		R1:         frac(r1, n),
		R5:         frac(r5, n),
		R10:        frac(r10, n),
		MeanRank:   sum/float64(n) + 1,
		MedianRank: math.Floor(med) + 1,
	}
}
