package observe

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/infonce/infonce/worker"
)

// Namespace prefixes every metric name.
const Namespace = "infonce"

// NewRegistry returns a registry for one process, with the Go runtime and
// process collectors registered. Each process builds its own: nothing is
// registered on prometheus's global registry.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Phases are the step-time phases, in the order of a step (worker.StepTimes).
var Phases = []string{"data", "forward", "gather", "loss", "backward", "reduce", "optimizer"}

// phaseTimes lists st's phases in the order of Phases.
func phaseTimes(st worker.StepTimes) [7]time.Duration {
	return [7]time.Duration{st.Data, st.Forward, st.Gather, st.Loss, st.Backward, st.Reduce, st.Optimizer}
}

// stepBuckets are the upper bounds, in seconds, of the step-time
// histograms: 100 µs to 60 s in steps of 1, 2.5 and 5 per decade.
var stepBuckets = []float64{1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60}

// Worker exports one training process's metrics. It implements
// worker.Observer; its methods are safe for concurrent use and only update
// in-memory metrics, so they return quickly.
type Worker struct {
	role string
	now  func() time.Time

	steps, samples, reduceBytes, generations, checkpoints prometheus.Counter
	checkpointFailures                                    prometheus.Counter
	step, epoch, loss, logitScale, lr, gradNorm           prometheus.Gauge
	generation, rank, world, gradBytes, batch             prometheus.Gauge
	algbw, busbw, ckptStep                                prometheus.Gauge
	phase                                                 [7]prometheus.Observer
	total                                                 prometheus.Observer
	bad                                                   *prometheus.GaugeVec // bad samples by reason
	eval                                                  *evalCollector

	mu        sync.Mutex
	h         Health
	batchN    int   // global batch B (0: unknown)
	gradN     int64 // bytes of the flat gradient buffer (0: unknown)
	ckptAt    time.Time
	ckptKnown bool
}

// WorkerOptions describe the run a Worker observes, as far as the process
// knows it when it starts.
type WorkerOptions struct {
	// Role names the process in /healthz: "train" or "worker".
	Role string
	// Batch is the global batch B; samples count B per step. Zero until
	// known (RunConfigured sets it).
	Batch int
	// GradientBytes is the size of the flat gradient buffer that the
	// all-reduce sums every step (len(Model.P.G)·4 in float32). Zero until
	// known.
	GradientBytes int64
	// Now is the clock (nil: time.Now); tests fix it.
	Now func() time.Time
}

// NewWorker registers a training process's metrics on reg.
func NewWorker(reg prometheus.Registerer, o WorkerOptions) (*Worker, error) {
	if o.Role == "" {
		o.Role = "worker"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	w := &Worker{role: o.Role, now: o.Now, batchN: o.Batch, gradN: o.GradientBytes}
	w.h = Health{Role: o.Role, Status: "starting"}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help})
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help})
	}
	w.steps = counter("steps_total", "Optimizer steps this process completed.")
	w.samples = counter("samples_total", "Samples of the global batch trained on by the steps this process completed (B per step).")
	w.reduceBytes = counter("allreduce_bytes_total", "Bytes of gradient buffer summed by the all-reduce (S per step with more than one rank).")
	w.generations = counter("generations_started_total", "Generations this process started training in.")
	w.checkpoints = counter("checkpoints_saved_total", "Checkpoints this process saved.")
	w.checkpointFailures = counter("checkpoint_failures_total", "Checkpoint saves of this process that failed (each retried at the next interval).")
	w.step = gauge("step", "Optimizer steps completed by the run (the last completed step + 1).")
	w.epoch = gauge("epoch", "Epoch of the last completed step.")
	w.loss = gauge("loss", "Global loss of the last completed step.")
	w.logitScale = gauge("logit_scale", "Logit scale s = exp(t) after the last step.")
	w.lr = gauge("learning_rate", "Learning rate of the last step.")
	w.gradNorm = gauge("grad_norm", "Global gradient norm of the last step.")
	w.generation = gauge("generation", "Generation this process trains in.")
	w.rank = gauge("rank", "Rank of this process in its generation.")
	w.world = gauge("world_size", "Ranks in this process's generation.")
	w.gradBytes = gauge("gradient_bytes", "Size S of the flat gradient buffer the all-reduce sums, in bytes.")
	w.batch = gauge("global_batch", "Global batch size B.")
	w.algbw = gauge("allreduce_algbw_bytes_per_second", "Algorithm bandwidth S/t of the last step's all-reduce (t: the Reduce phase, waiting included).")
	w.busbw = gauge("allreduce_busbw_bytes_per_second", "Estimated bus bandwidth algbw·2(n-1)/n of the last step's ring all-reduce.")
	w.ckptStep = gauge("checkpoint_step", "Step of the last checkpoint this process saved.")
	hist := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "step_phase_seconds",
		Help:    "Wall time of each phase of a step (data, forward, gather, loss, backward, reduce, optimizer).",
		Buckets: stepBuckets,
	}, []string{"phase"})
	for i, p := range Phases {
		w.phase[i] = hist.WithLabelValues(p)
	}
	w.bad = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "bad_samples",
		Help: "Samples this process could not use (counted and replaced), by reason.",
	}, []string{"reason"})
	total := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "step_seconds", Help: "Wall time of a whole step.", Buckets: stepBuckets,
	})
	w.total = total
	age := &ageCollector{
		desc: prometheus.NewDesc(Namespace+"_checkpoint_age_seconds", "Seconds since this process saved its last checkpoint (absent before the first).", nil, nil),
		age: func() (float64, bool) {
			w.mu.Lock()
			defer w.mu.Unlock()
			return w.now().Sub(w.ckptAt).Seconds(), w.ckptKnown
		},
	}
	w.eval = newEvalCollector()
	for _, c := range []prometheus.Collector{
		w.steps, w.samples, w.reduceBytes, w.generations, w.checkpoints, w.checkpointFailures,
		w.step, w.epoch, w.loss, w.logitScale, w.lr, w.gradNorm,
		w.generation, w.rank, w.world, w.gradBytes, w.batch, w.algbw, w.busbw, w.ckptStep,
		hist, total, age, w.bad, w.eval,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("observe: register worker metrics: %w", err)
		}
	}
	w.batch.Set(float64(o.Batch))
	w.gradBytes.Set(float64(o.GradientBytes))
	return w, nil
}

// RunConfigured tells the observer the run's configuration and the number
// of parameters of the model (the flat gradient buffer holds as many
// float32), once the process knows them; params 0 leaves the gradient size
// as it was.
func (w *Worker) RunConfigured(cfg worker.Config, params int) {
	w.mu.Lock()
	w.batchN = cfg.Batch
	if params > 0 {
		w.gradN = int64(params) * 4
	}
	s := w.gradN
	w.mu.Unlock()
	w.batch.Set(float64(cfg.Batch))
	w.gradBytes.Set(float64(s))
}

// StepDone records a completed step (worker.Observer).
func (w *Worker) StepDone(st worker.StepStats, gen uint64, rank, world int) {
	w.mu.Lock()
	b, s := w.batchN, w.gradN
	w.h.Status, w.h.Generation, w.h.Step, w.h.Rank, w.h.World = "training", gen, st.Step+1, rank, world
	w.h.Loss = st.Loss
	w.mu.Unlock()

	w.steps.Inc()
	w.samples.Add(float64(b))
	w.step.Set(float64(st.Step + 1))
	w.epoch.Set(float64(st.Epoch))
	w.loss.Set(st.Loss)
	w.logitScale.Set(st.LogitScale)
	w.lr.Set(st.LR)
	w.gradNorm.Set(st.GradNorm)
	w.generation.Set(float64(gen))
	w.rank.Set(float64(rank))
	w.world.Set(float64(world))
	for i, d := range phaseTimes(st.Times) {
		w.phase[i].Observe(d.Seconds())
	}
	w.total.Observe(st.Times.Total().Seconds())
	for reason, n := range st.BadSamples {
		w.bad.WithLabelValues(reason).Set(float64(n))
	}
	if world > 1 && s > 0 {
		w.reduceBytes.Add(float64(s))
		if t := st.Times.Reduce.Seconds(); t > 0 {
			alg, bus := Bandwidth(s, st.Times.Reduce, world)
			w.algbw.Set(alg)
			w.busbw.Set(bus)
		}
	}
}

// GenerationStarted records the start of a generation (worker.Observer).
func (w *Worker) GenerationStarted(gen uint64, rank, world int) {
	w.mu.Lock()
	w.h.Status, w.h.Generation, w.h.Rank, w.h.World = "training", gen, rank, world
	w.mu.Unlock()
	w.generations.Inc()
	w.generation.Set(float64(gen))
	w.rank.Set(float64(rank))
	w.world.Set(float64(world))
}

// CheckpointSaved records a saved checkpoint (worker.Observer).
func (w *Worker) CheckpointSaved(step int64, dir string) {
	w.mu.Lock()
	w.ckptAt, w.ckptKnown = w.now(), true
	w.h.Checkpoint = dir
	w.mu.Unlock()
	w.checkpoints.Inc()
	w.ckptStep.Set(float64(step))
}

// CheckpointFailed records a checkpoint save that failed
// (worker.SaveObserver).
func (w *Worker) CheckpointFailed(step int64, err error) {
	w.checkpointFailures.Inc()
}

// Evaluated records the evaluation of the parameters after done completed
// steps (worker.EvalObserver): the infonce_eval_* gauges show the latest.
func (w *Worker) Evaluated(done int64, ev worker.Evaluation) {
	w.eval.set(done, ev)
}

// Health is the process's /healthz answer.
func (w *Worker) Health() Health {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.h
}

// Bandwidth returns the algorithm and bus bandwidth, in bytes per second,
// of a ring all-reduce of s bytes over n ranks that took t (DESIGN, Speed):
// algbw = s/t, busbw = algbw · 2(n−1)/n.
func Bandwidth(s int64, t time.Duration, n int) (algbw, busbw float64) {
	if t <= 0 || n < 1 {
		return 0, 0
	}
	algbw = float64(s) / t.Seconds()
	return algbw, algbw * 2 * float64(n-1) / float64(n)
}

// ageCollector exports an age in seconds only once it is known.
type ageCollector struct {
	desc *prometheus.Desc
	age  func() (float64, bool)
}

func (c *ageCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *ageCollector) Collect(ch chan<- prometheus.Metric) {
	if a, ok := c.age(); ok {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, a)
	}
}

// Health is the body of /healthz.
type Health struct {
	Role       string  `json:"role"`   // train, worker or coordinator
	Status     string  `json:"status"` // starting, training, waiting, running, paused, stopped
	Generation uint64  `json:"generation"`
	Step       int64   `json:"step"`  // optimizer steps completed
	Rank       int     `json:"rank"`  // a worker's rank (0 on the coordinator)
	World      int     `json:"world"` // ranks of the generation (the coordinator: active members)
	Loss       float64 `json:"loss,omitempty"`
	Checkpoint string  `json:"checkpoint,omitempty"`
}
