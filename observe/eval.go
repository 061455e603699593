package observe

import (
	"bytes"
	"io"
	"os"
	"reflect"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infonce/infonce/rundir"
)

// evalScore is one score of an evaluation (a number field of
// rundir.Evaluation), exported as the gauge infonce_eval_<json name>.
type evalScore struct {
	name  string // the field's JSON name
	index int    // the field's index in rundir.Evaluation
	desc  *prometheus.Desc
}

// evalScores lists the scalar scores of rundir.Evaluation, in the order of
// its fields: a score added there is exported without a change here.
var evalScores = sync.OnceValue(func() []evalScore {
	var out []evalScore
	typ := reflect.TypeFor[rundir.Evaluation]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		switch {
		case f.Type.Kind() == reflect.Float64:
		case f.Type.Kind() == reflect.Pointer && f.Type.Elem().Kind() == reflect.Float64:
		default:
			continue // per-dimension lists stay in metrics.jsonl
		}
		out = append(out, evalScore{name: name, index: i, desc: prometheus.NewDesc(Namespace+"_eval_"+name,
			"Latest evaluation of the parameters (--eval-every, or the one at the end): "+strings.ReplaceAll(name, "_", " ")+".", nil, nil)})
	}
	return out
})

// score is s's value in ev; false when ev did not measure it.
func (s evalScore) score(ev *rundir.Evaluation) (float64, bool) {
	v := reflect.ValueOf(ev).Elem().Field(s.index)
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return 0, false
		}
		v = v.Elem()
	}
	return v.Float(), true
}

// evalCollector exports the latest evaluation: its step and the scores it
// measured. Nothing is exported before the first evaluation, and a score
// the evaluation did not measure (zero-shot without a text tower) is
// absent rather than zero.
type evalCollector struct {
	step *prometheus.Desc
	mu   sync.Mutex
	have bool
	done int64
	ev   rundir.Evaluation
}

func newEvalCollector() *evalCollector {
	return &evalCollector{step: prometheus.NewDesc(Namespace+"_eval_step",
		"Optimizer steps completed when the latest evaluation's parameters were measured (absent before the first).", nil, nil)}
}

// set records the evaluation after done completed steps.
func (c *evalCollector) set(done int64, ev rundir.Evaluation) {
	c.mu.Lock()
	c.have, c.done, c.ev = true, done, ev
	c.mu.Unlock()
}

// reset forgets the evaluation.
func (c *evalCollector) reset() {
	c.mu.Lock()
	c.have, c.done, c.ev = false, 0, rundir.Evaluation{}
	c.mu.Unlock()
}

func (c *evalCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.step
	for _, s := range evalScores() {
		ch <- s.desc
	}
}

func (c *evalCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	have, done, ev := c.have, c.done, c.ev
	c.mu.Unlock()
	if !have {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.step, prometheus.GaugeValue, float64(done))
	for _, s := range evalScores() {
		if v, ok := s.score(&ev); ok {
			ch <- prometheus.MustNewConstMetric(s.desc, prometheus.GaugeValue, v)
		}
	}
}

// evalFile exports the latest evaluation of a metrics.jsonl that another
// process writes: each scrape decodes the whole lines appended since the
// previous one, so that the file is read once over the run. A file that
// shrank was started anew (a new run) and is read from its start; lines
// that do not decode are skipped.
type evalFile struct {
	path string
	c    *evalCollector
	mu   sync.Mutex
	off  int64 // the bytes of whole lines read so far
}

func (f *evalFile) Describe(ch chan<- *prometheus.Desc) { f.c.Describe(ch) }

func (f *evalFile) Collect(ch chan<- prometheus.Metric) {
	f.refresh()
	f.c.Collect(ch)
}

// refresh reads the whole lines appended since the last call.
func (f *evalFile) refresh() {
	f.mu.Lock()
	defer f.mu.Unlock()
	fh, err := os.Open(f.path)
	if err != nil {
		return // not written yet, or not on this machine
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return
	}
	if fi.Size() < f.off {
		f.off = 0
		f.c.reset()
	}
	if fi.Size() == f.off {
		return
	}
	b, err := io.ReadAll(io.NewSectionReader(fh, f.off, fi.Size()-f.off))
	if err != nil {
		return
	}
	end := bytes.LastIndexByte(b, '\n')
	if end < 0 {
		if len(b) > rundir.MaxMetricLine {
			f.off += int64(len(b)) // no line is this long: skip it
		}
		return
	}
	f.off += int64(end + 1)
	ms, _, _ := rundir.DecodeMetricsSkipping(bytes.NewReader(b[:end+1]))
	if evs := rundir.Evaluations(ms); len(evs) > 0 {
		last := evs[len(evs)-1]
		f.c.set(last.Step+1, *last.Eval)
	}
}
