package observe

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infonce/infonce/coordinator"
	"github.com/infonce/infonce/rundir"
)

// StatusSource is what the coordinator's observer reads:
// coordinator.Server satisfies it.
type StatusSource interface {
	Status() coordinator.Status
}

// Point is one sample of the run's progress aggregate, for the curves.
type Point struct {
	At            time.Time `json:"at"`
	Generation    uint64    `json:"generation"`
	Workers       int       `json:"workers"` // workers that reported
	Step          int64     `json:"step"`    // the fastest reporter's completed steps
	Loss          float64   `json:"loss"`    // mean of the reporters' latest losses
	SamplesPerSec float64   `json:"samples_per_second"`
}

// CoordinatorOptions configure a Coordinator.
type CoordinatorOptions struct {
	// Batch is the run's global batch B; the exported sample count is
	// steps · B (0: not exported).
	Batch int
	// Interval is the sampling period of the curves (0: one second).
	Interval time.Duration
	// MaxPoints bounds the history kept for the curves (0: 2048). When it
	// is full, every other point is dropped: the curves keep the whole
	// run at half the resolution.
	MaxPoints int
	// Refresh is the status page's reload period (0: 5 s; negative: off).
	Refresh time.Duration
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// RunDir, when set, is the run directory whose metrics.jsonl rank 0
	// writes: the latest evaluation in it (--eval-every) is exported as
	// the infonce_eval_* gauges, read at every scrape from where the last
	// scrape stopped. Without access to the file they are absent.
	RunDir string
}

// Coordinator exports the coordinator's metrics, read from a fresh Status
// snapshot at every scrape, and keeps the history behind the status page's
// curves.
type Coordinator struct {
	src StatusSource
	o   CoordinatorOptions

	mu     sync.Mutex
	points []Point
	lastAt time.Time // Progress.At of the last point
}

// NewCoordinator registers the coordinator's metrics on reg.
func NewCoordinator(reg prometheus.Registerer, src StatusSource, o CoordinatorOptions) (*Coordinator, error) {
	if src == nil {
		return nil, fmt.Errorf("observe: coordinator: nil status source")
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.MaxPoints <= 0 {
		o.MaxPoints = 2048
	}
	if o.MaxPoints < 2 {
		o.MaxPoints = 2
	}
	if o.Refresh == 0 {
		o.Refresh = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c := &Coordinator{src: src, o: o}
	if err := reg.Register(&statusCollector{c: c}); err != nil {
		return nil, fmt.Errorf("observe: register coordinator metrics: %w", err)
	}
	if o.RunDir != "" {
		if err := reg.Register(&evalFile{path: rundir.MetricsPath(o.RunDir), c: newEvalCollector()}); err != nil {
			return nil, fmt.Errorf("observe: register coordinator metrics: %w", err)
		}
	}
	return c, nil
}

// Run samples the progress aggregate every Interval until ctx ends, then
// returns nil.
func (c *Coordinator) Run(ctx context.Context) error {
	t := time.NewTicker(c.o.Interval)
	defer t.Stop()
	c.Sample()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			c.Sample()
		}
	}
}

// Sample reads one Status and appends a point when the workers reported
// since the last one.
func (c *Coordinator) Sample() {
	c.record(c.src.Status())
}

func (c *Coordinator) record(st coordinator.Status) {
	a := st.Progress
	if a.Workers == 0 || a.At.IsZero() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !a.At.After(c.lastAt) {
		return
	}
	c.lastAt = a.At
	c.points = append(c.points, Point{At: a.At, Generation: a.Generation, Workers: a.Workers,
		Step: a.MaxStep, Loss: a.Loss, SamplesPerSec: a.SamplesPerSec})
	if len(c.points) > c.o.MaxPoints {
		kept := c.points[:0]
		for i, p := range c.points {
			if i%2 == 0 || i == len(c.points)-1 {
				kept = append(kept, p)
			}
		}
		clear(c.points[len(kept):])
		c.points = kept
	}
}

// Points returns a copy of the sampled history, oldest first.
func (c *Coordinator) Points() []Point {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Point(nil), c.points...)
}

// Health is the coordinator's /healthz answer.
func (c *Coordinator) Health() Health {
	return healthOf(c.src.Status())
}

func healthOf(st coordinator.Status) Health {
	h := Health{Role: "coordinator", Status: st.Phase.String(), Generation: st.Current.Number,
		Step: st.Progress.MaxStep, World: len(st.Current.Members), Loss: st.Progress.Loss}
	if st.Latest != nil {
		h.Checkpoint = st.Latest.Path
	}
	return h
}

// statusCollector turns a Status snapshot into metrics at scrape time.
type statusCollector struct{ c *Coordinator }

var (
	descGeneration = prometheus.NewDesc(Namespace+"_generation", "Current generation number.", nil, nil)
	descMembers    = prometheus.NewDesc(Namespace+"_members", "Workers known to the coordinator, by state.", []string{"state"}, nil)
	descPhase      = prometheus.NewDesc(Namespace+"_run_phase", "1 for the run's current phase, 0 for the others.", []string{"phase"}, nil)
	descWorld      = prometheus.NewDesc(Namespace+"_world_size", "Ranks of the current generation.", nil, nil)
	descReporting  = prometheus.NewDesc(Namespace+"_reporting_workers", "Workers of the current generation that reported progress.", nil, nil)
	descStep       = prometheus.NewDesc(Namespace+"_step", "Completed optimizer steps of the fastest reporting worker.", nil, nil)
	descMinStep    = prometheus.NewDesc(Namespace+"_step_min", "Completed optimizer steps of the slowest reporting worker.", nil, nil)
	descLoss       = prometheus.NewDesc(Namespace+"_loss", "Mean of the reporting workers' latest losses.", nil, nil)
	descRate       = prometheus.NewDesc(Namespace+"_samples_per_second", "Training throughput: the sum of the reporting workers' rates.", nil, nil)
	descSamples    = prometheus.NewDesc(Namespace+"_run_samples", "Samples trained on by the run: completed steps times the global batch.", nil, nil)
	descCkptStep   = prometheus.NewDesc(Namespace+"_checkpoint_step", "Step of the newest committed checkpoint.", nil, nil)
	descCkptAge    = prometheus.NewDesc(Namespace+"_checkpoint_age_seconds", "Seconds since the newest checkpoint was committed.", nil, nil)
	descGossip     = prometheus.NewDesc(Namespace+"_gossip_members", "Memberlist nodes believed alive.", nil, nil)
	descUptime     = prometheus.NewDesc(Namespace+"_coordinator_uptime_seconds", "Seconds since the coordinator started.", nil, nil)
)

var memberStates = []coordinator.MemberState{coordinator.MemberPending, coordinator.MemberActive, coordinator.MemberLeft, coordinator.MemberDead}

var runPhases = []coordinator.Phase{coordinator.PhaseWaiting, coordinator.PhaseRunning, coordinator.PhasePaused, coordinator.PhaseStopped}

func (s *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descGeneration, descMembers, descPhase, descWorld, descReporting, descStep,
		descMinStep, descLoss, descRate, descSamples, descCkptStep, descCkptAge, descGossip, descUptime} {
		ch <- d
	}
}

func (s *statusCollector) Collect(ch chan<- prometheus.Metric) {
	st := s.c.src.Status()
	s.c.record(st) // a scrape is a sample too
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	g(descGeneration, float64(st.Current.Number))
	counts := map[coordinator.MemberState]int{}
	for _, m := range st.Members {
		counts[m.State]++
	}
	for _, ms := range memberStates {
		g(descMembers, float64(counts[ms]), ms.String())
	}
	for _, p := range runPhases {
		v := 0.0
		if p == st.Phase {
			v = 1
		}
		g(descPhase, v, p.String())
	}
	g(descWorld, float64(len(st.Current.Members)))
	a := st.Progress
	g(descReporting, float64(a.Workers))
	if a.Workers > 0 {
		g(descStep, float64(a.MaxStep))
		g(descMinStep, float64(a.MinStep))
		g(descLoss, a.Loss)
		g(descRate, a.SamplesPerSec)
		if s.c.o.Batch > 0 {
			g(descSamples, float64(a.MaxStep)*float64(s.c.o.Batch))
		}
	}
	if st.Latest != nil {
		g(descCkptStep, float64(st.Latest.Step))
		g(descCkptAge, s.c.o.Now().Sub(st.Latest.At).Seconds())
	}
	g(descGossip, float64(len(st.Gossip)))
	if !st.StartedAt.IsZero() {
		g(descUptime, s.c.o.Now().Sub(st.StartedAt).Seconds())
	}
}
