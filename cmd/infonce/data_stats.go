package main

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/infonce/infonce/dataset"
)

// The statistics of 'data inspect': a dataStats takes one dataInfo per
// sample read, in the source's order, and makes the dataReport. No I/O
// here, so that the arithmetic is tested on its own.

// dataInfo is what inspect keeps of one sample.
type dataInfo struct {
	key          string
	err          error
	size         dataSize // zero when the sample has no image
	text         bool
	chars, words int
	label        int
	episode      int64
	task         int
	action       []float32
	actionShape  []int
	state        []float32
}

// dataInfoOf copies what inspect needs of s (which its reader reuses).
func dataInfoOf(s *dataset.Sample, err error) dataInfo {
	if err != nil {
		return dataInfo{key: s.Key, err: err}
	}
	d := dataInfo{key: s.Key, label: s.Label, episode: s.Episode, task: s.Task}
	if s.Has(dataset.FieldImage) {
		d.size = dataSize{W: s.Image.W, H: s.Image.H, C: s.Image.C}
	}
	if s.Text != "" {
		d.text = true
		d.chars = utf8.RuneCountInString(s.Text)
		d.words = len(strings.Fields(s.Text))
	}
	if len(s.Action) > 0 {
		d.action = slices.Clone(s.Action)
		d.actionShape = slices.Clone(s.ActionShape)
	}
	if len(s.State) > 0 {
		d.state = slices.Clone(s.State)
	}
	return d
}

// dataSize is the size of an image.
type dataSize struct {
	W int `json:"w"`
	H int `json:"h"`
	C int `json:"c"`
}

func (s dataSize) String() string { return fmt.Sprintf("%d×%d×%d", s.W, s.H, s.C) }

// dataClass is the number of samples of one label.
type dataClass struct {
	Label int    `json:"label"`
	Name  string `json:"name,omitempty"`
	Count int    `json:"count"`
}

// dataImages summarises the image sizes: the smallest and largest by
// pixels (ties by width), the most common (ties by the smaller).
type dataImages struct {
	Count       int      `json:"count"`
	Smallest    dataSize `json:"smallest"`
	Largest     dataSize `json:"largest"`
	Common      dataSize `json:"most_common"`
	CommonCount int      `json:"most_common_count"`
	Sizes       int      `json:"distinct_sizes"`
}

// dataSpread is the minimum, median and maximum of a list of counts.
type dataSpread struct {
	Min    int     `json:"min"`
	Median float64 `json:"median"`
	Max    int     `json:"max"`
}

// dataCaptions summarises the lengths of the texts.
type dataCaptions struct {
	Count int        `json:"count"`
	Chars dataSpread `json:"chars"`
	Words dataSpread `json:"words"`
}

// dataDim is the statistics of one dimension of an action or a state.
type dataDim struct {
	Min  float64 `json:"min"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
	Std  float64 `json:"std"`
	P1   float64 `json:"p1"`
	P99  float64 `json:"p99"`
}

// dataVector is the statistics of actions or states per dimension: the
// last axis of the first sample's shape, every row of a chunk counting as
// one value per dimension. Samples of another last axis are counted in
// OtherShape and left out.
type dataVector struct {
	Count      int       `json:"count"`
	Shape      []int     `json:"shape"`
	OtherShape int       `json:"other_shape,omitempty"`
	Dims       []dataDim `json:"dims"`
}

// dataReport is what 'data inspect' finds.
type dataReport struct {
	Source       string          `json:"source"`
	Fields       []dataset.Field `json:"fields"`
	Samples      int             `json:"samples"` // in the source
	Read         int             `json:"read"`    // inspected (all, or --limit)
	Good         int             `json:"good"`
	Bad          int             `json:"bad"`
	Reasons      []dataBad       `json:"bad_reasons,omitempty"`
	Episodes     int             `json:"episodes,omitempty"`
	Tasks        int             `json:"tasks,omitempty"`
	Classes      []dataClass     `json:"classes,omitempty"`
	Images       *dataImages     `json:"images,omitempty"`
	Captions     *dataCaptions   `json:"captions,omitempty"`
	Actions      *dataVector     `json:"actions,omitempty"`
	States       *dataVector     `json:"states,omitempty"`
	ContactSheet string          `json:"contact_sheet,omitempty"`
}

// dataVectorAcc gathers the values of each dimension.
type dataVectorAcc struct {
	count, other int
	shape        []int
	vals         [][]float64 // per dimension
}

func (a *dataVectorAcc) add(v []float32, shape []int) {
	if len(shape) == 0 {
		shape = []int{len(v)}
	}
	d := shape[len(shape)-1]
	if a.vals == nil {
		a.shape = slices.Clone(shape)
		a.vals = make([][]float64, d)
	}
	if d != len(a.vals) || d == 0 || len(v)%d != 0 {
		a.other++
		return
	}
	a.count++
	for i, x := range v {
		a.vals[i%d] = append(a.vals[i%d], float64(x))
	}
}

func (a *dataVectorAcc) report() *dataVector {
	if a.count == 0 {
		return nil
	}
	out := &dataVector{Count: a.count, Shape: a.shape, OtherShape: a.other}
	for _, v := range a.vals {
		out.Dims = append(out.Dims, dataDimOf(v))
	}
	return out
}

// dataDimOf is the statistics of the values v (sorted in place): the mean
// x̄ = Σx/n, the population standard deviation √(Σ(x−x̄)²/n), and the 1st
// and 99th percentiles by dataPercentile.
func dataDimOf(v []float64) dataDim {
	slices.Sort(v)
	var sum float64
	for _, x := range v {
		sum += x
	}
	mean := sum / float64(len(v))
	var ss float64
	for _, x := range v {
		ss += (x - mean) * (x - mean)
	}
	return dataDim{Min: v[0], Max: v[len(v)-1], Mean: mean, Std: math.Sqrt(ss / float64(len(v))),
		P1: dataPercentile(v, 1), P99: dataPercentile(v, 99)}
}

// dataPercentile is the p-th percentile of the sorted values v, linearly
// interpolated between the closest ranks (NumPy's default "linear"
// method): with h = (n−1)·p/100, x[⌊h⌋] + (h−⌊h⌋)·(x[⌊h⌋+1] − x[⌊h⌋]).
func dataPercentile(v []float64, p float64) float64 {
	h := float64(len(v)-1) * p / 100
	lo := int(math.Floor(h))
	if lo+1 >= len(v) {
		return v[len(v)-1]
	}
	return v[lo] + (h-float64(lo))*(v[lo+1]-v[lo])
}

// dataSpreadOf is the minimum, median (the mean of the two middle values
// of an even count) and maximum of v (sorted in place).
func dataSpreadOf(v []int) dataSpread {
	slices.Sort(v)
	n := len(v)
	med := float64(v[n/2])
	if n%2 == 0 {
		med = float64(v[n/2-1]+v[n/2]) / 2
	}
	return dataSpread{Min: v[0], Median: med, Max: v[n-1]}
}

// dataStats accumulates the infos of the samples read.
type dataStats struct {
	read          int
	bad           dataTally
	labels        map[int]int
	episodes      map[int64]bool
	tasks         map[int]bool
	sizes         map[dataSize]int
	chars, words  []int
	action, state dataVectorAcc
}

func (st *dataStats) add(index int, d dataInfo) {
	st.read++
	if d.err != nil {
		st.bad.add(index, d.key, d.err)
		return
	}
	if st.labels == nil {
		st.labels, st.episodes, st.tasks, st.sizes = map[int]int{}, map[int64]bool{}, map[int]bool{}, map[dataSize]int{}
	}
	if d.label >= 0 {
		st.labels[d.label]++
	}
	if d.episode >= 0 {
		st.episodes[d.episode] = true
	}
	if d.task >= 0 {
		st.tasks[d.task] = true
	}
	if d.size != (dataSize{}) {
		st.sizes[d.size]++
	}
	if d.text {
		st.chars = append(st.chars, d.chars)
		st.words = append(st.words, d.words)
	}
	if len(d.action) > 0 {
		st.action.add(d.action, d.actionShape)
	}
	if len(d.state) > 0 {
		st.state.add(d.state, nil)
	}
}

// report makes the report of what was added; names are the class names
// by label, when the source has them.
func (st *dataStats) report(src dataset.Source, names []string) dataReport {
	r := dataReport{Source: src.Name(), Fields: src.Fields(), Samples: src.Len(), Read: st.read,
		Good: st.read - st.bad.total, Bad: st.bad.total, Reasons: st.bad.list(),
		Episodes: len(st.episodes), Tasks: len(st.tasks)}
	for l, c := range st.labels {
		dc := dataClass{Label: l, Count: c}
		if l < len(names) {
			dc.Name = names[l]
		}
		r.Classes = append(r.Classes, dc)
	}
	slices.SortFunc(r.Classes, func(a, b dataClass) int { return a.Label - b.Label })
	if len(st.sizes) > 0 {
		im := &dataImages{Sizes: len(st.sizes)}
		first := true
		for s, c := range st.sizes {
			im.Count += c
			if first {
				im.Smallest, im.Largest, im.Common, im.CommonCount = s, s, s, c
				first = false
				continue
			}
			if dataSizeCmp(s, im.Smallest) < 0 {
				im.Smallest = s
			}
			if dataSizeCmp(s, im.Largest) > 0 {
				im.Largest = s
			}
			if c > im.CommonCount || (c == im.CommonCount && dataSizeCmp(s, im.Common) < 0) {
				im.Common, im.CommonCount = s, c
			}
		}
		r.Images = im
	}
	if len(st.chars) > 0 {
		r.Captions = &dataCaptions{Count: len(st.chars), Chars: dataSpreadOf(st.chars), Words: dataSpreadOf(st.words)}
	}
	r.Actions = st.action.report()
	r.States = st.state.report()
	return r
}

// dataSizeCmp orders sizes by pixels, then width, then channels.
func dataSizeCmp(a, b dataSize) int {
	return cmp.Or(cmp.Compare(a.W*a.H, b.W*b.H), cmp.Compare(a.W, b.W), cmp.Compare(a.C, b.C))
}

// dataMaxClasses is how many classes the text report lists.
const dataMaxClasses = 20

// print writes the report as text.
func (r *dataReport) print(w io.Writer) {
	fields := make([]string, len(r.Fields))
	for i, f := range r.Fields {
		fields[i] = string(f)
	}
	fmt.Fprintf(w, "source    %s (%s)\n", r.Source, strings.Join(fields, ", "))
	fmt.Fprintf(w, "samples   %d", r.Samples)
	if r.Read != r.Samples {
		fmt.Fprintf(w, " (the first %d read)", r.Read)
	}
	fmt.Fprintf(w, ": %d good, %d bad\n", r.Good, r.Bad)
	if r.Episodes > 0 {
		fmt.Fprintf(w, "episodes  %d\n", r.Episodes)
	}
	if r.Tasks > 0 {
		fmt.Fprintf(w, "tasks     %d\n", r.Tasks)
	}
	if len(r.Classes) > 0 {
		fmt.Fprintf(w, "classes   %d\n", len(r.Classes))
		for i, c := range r.Classes {
			if i == dataMaxClasses {
				fmt.Fprintf(w, "  … %d more (--json lists them all)\n", len(r.Classes)-i)
				break
			}
			fmt.Fprintf(w, "  %5d %-24s %8d\n", c.Label, c.Name, c.Count)
		}
	}
	if im := r.Images; im != nil {
		fmt.Fprintf(w, "images    %d (width×height×channels): smallest %s, largest %s, most common %s (%d images), %d sizes\n",
			im.Count, im.Smallest, im.Largest, im.Common, im.CommonCount, im.Sizes)
	}
	if c := r.Captions; c != nil {
		fmt.Fprintf(w, "captions  %d: characters min %d median %g max %d; words min %d median %g max %d\n",
			c.Count, c.Chars.Min, c.Chars.Median, c.Chars.Max, c.Words.Min, c.Words.Median, c.Words.Max)
	}
	for _, v := range []struct {
		name string
		v    *dataVector
	}{{"actions", r.Actions}, {"states", r.States}} {
		if v.v == nil {
			continue
		}
		fmt.Fprintf(w, "%-9s %d of shape %v", v.name, v.v.Count, v.v.Shape)
		if v.v.OtherShape > 0 {
			fmt.Fprintf(w, " (%d of another shape, left out)", v.v.OtherShape)
		}
		fmt.Fprintf(w, ", per dimension:\n  %4s %12s %12s %12s %12s %12s %12s\n", "dim", "min", "max", "mean", "std", "p1", "p99")
		for i, d := range v.v.Dims {
			fmt.Fprintf(w, "  %4d %12.5g %12.5g %12.5g %12.5g %12.5g %12.5g\n", i, d.Min, d.Max, d.Mean, d.Std, d.P1, d.P99)
		}
	}
	if r.Bad > 0 {
		fmt.Fprintf(w, "bad samples by reason:\n")
		dataPrintBad(w, r.Reasons)
	}
	if r.ContactSheet != "" {
		fmt.Fprintf(w, "contact sheet %s\n", r.ContactSheet)
	}
}
