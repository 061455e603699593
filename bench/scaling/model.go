package scaling

import (
	"errors"
	"fmt"
	"io"
	"math"
	"text/tabwriter"
)

// Observation is one measured worker count, as the model fit sees it.
type Observation struct {
	Workers        int
	Oversubscribed bool
	StepMS         float64 // wall time of a step: B / throughput
	StepTime       Breakdown
}

// Model is the analytic step time of data-parallel contrastive training
// with a global batch B split over n workers (strong scaling):
//
//	T(n)     = Tcomp(n) + Tcomm(n)
//	Tcomp(n) = c0 + cs·(B/n) + cl·(B/n)·B
//	Tcomm(n) = λ·(n−1) + β·[2(n−1)/n·S + (n−1)/n·G]
//
// c0 is the per-step work every rank repeats in full (the optimizer update
// of all P parameters, logging); cs the towers' forward and backward per
// local sample; cl the loss per logit (each rank scores its B/n rows against
// all B gathered columns). The communication is a ring all-reduce of the
// S = 4P gradient bytes, which moves 2(n−1)/n·S bytes over each link, plus
// the ring all-gather of the G embedding bytes (G = 2·B·d·4 for CLIP, the
// image and the text embeddings), which moves (n−1)/n·G; β is the time per
// byte (1/bandwidth) and λ the latency of one ring step summed over the
// step's collectives (each collective takes n−1 or 2(n−1) sequential steps).
type Model struct {
	Objective        string  `json:"objective"`
	Batch            int     `json:"batch"`
	Dim              int     `json:"dim"`
	Params           int64   `json:"params"`
	ThreadsPerWorker int     `json:"threads_per_worker"` // the compute constants are for workers of this many threads
	GradBytes        float64 `json:"grad_bytes"`         // S
	GatherBytes      float64 `json:"gather_bytes"`       // G

	FixedMS     float64 `json:"fixed_ms"`      // c0
	PerSampleMS float64 `json:"per_sample_ms"` // cs
	PerLogitMS  float64 `json:"per_logit_ms"`  // cl
	HopMS       float64 `json:"hop_ms"`        // λ
	MSPerByte   float64 `json:"ms_per_byte"`   // β of the measured network

	// NominalBitsPerSecond is the rate limit of the measured network (0 on
	// loopback); BandwidthEfficiency = (8/β)/nominal is the share of it the
	// collectives achieved, 1 when there was no limit.
	NominalBitsPerSecond float64 `json:"nominal_bits_per_second"`
	BandwidthEfficiency  float64 `json:"bandwidth_efficiency"`

	ComputePoints int `json:"compute_points"` // observations the compute constants came from
	CommPoints    int `json:"comm_points"`    // observations the communication constants came from
}

// GatheredBytes is G, the embedding bytes one step all-gathers, for an
// objective with global batch B and dimension d (float32 embeddings).
func GatheredBytes(objective string, batch, dim int) float64 {
	switch objective {
	case "moco":
		return float64(batch * dim * 4) // the momentum keys
	default:
		return 2 * float64(batch*dim*4) // clip: U and V; simclr: both views
	}
}

// Fit fits the model's constants to the observations by least squares.
// The compute constants come from the observations whose workers had a
// core each (not oversubscribed), the communication constants from every
// observation with more than one worker; with only one worker count there,
// λ is taken as 0 and β alone is fitted. nominalBPS is the rate limit of
// each worker's link during the measurement, 0 for none.
func Fit(m Model, obs []Observation, nominalBPS float64) (Model, error) {
	if m.Batch < 1 || m.GradBytes <= 0 {
		return m, fmt.Errorf("fit: batch %d and gradient bytes %g must be positive", m.Batch, m.GradBytes)
	}
	B := float64(m.Batch)
	var fixed, towersY, towersX, lossY, lossX []float64
	for _, o := range obs {
		if o.Oversubscribed || o.Workers < 1 {
			continue
		}
		b := B / float64(o.Workers)
		t := o.StepTime
		fixed = append(fixed, t.OptimizerMS+math.Max(0, o.StepMS-t.TotalMS))
		towersX, towersY = append(towersX, b), append(towersY, t.DataMS+t.ForwardMS+t.BackwardMS)
		lossX, lossY = append(lossX, b*B), append(lossY, t.LossMS)
	}
	if len(fixed) == 0 {
		return m, errors.New("fit: no observation with a core per worker to fit the compute constants")
	}
	m.ComputePoints = len(fixed)
	m.FixedMS = mean(fixed)
	m.PerSampleMS = throughOrigin(towersX, towersY)
	m.PerLogitMS = throughOrigin(lossX, lossY)

	var hop, bytes, comm []float64
	distinct := map[int]bool{}
	for _, o := range obs {
		if o.Workers < 2 {
			continue
		}
		n := float64(o.Workers)
		hop = append(hop, n-1)
		bytes = append(bytes, 2*(n-1)/n*m.GradBytes+(n-1)/n*m.GatherBytes)
		comm = append(comm, o.StepTime.GatherMS+o.StepTime.ReduceMS)
		distinct[o.Workers] = true
	}
	m.CommPoints = len(comm)
	switch {
	case len(comm) == 0:
		return m, errors.New("fit: no observation with two or more workers to fit the communication constants")
	case len(distinct) == 1:
		m.HopMS, m.MSPerByte = 0, throughOrigin(bytes, comm)
	default:
		m.HopMS, m.MSPerByte = nonNegative2(hop, bytes, comm)
	}
	m.NominalBitsPerSecond, m.BandwidthEfficiency = nominalBPS, 1
	if nominalBPS > 0 && m.MSPerByte > 0 {
		m.BandwidthEfficiency = (8e3 / m.MSPerByte) / nominalBPS
	}
	return m, nil
}

// Prediction is the model's step time for n workers on a network.
type Prediction struct {
	Workers          int     `json:"workers"`
	BitsPerSecond    float64 `json:"bits_per_second"` // 0: the measured network
	ComputeMS        float64 `json:"compute_ms"`
	LatencyMS        float64 `json:"latency_ms"`
	AllReduceMS      float64 `json:"allreduce_ms"` // bandwidth term of the gradient all-reduce
	GatherMS         float64 `json:"gather_ms"`    // bandwidth term of the embedding all-gather
	StepMS           float64 `json:"step_ms"`
	SamplesPerSecond float64 `json:"samples_per_second"`
	Efficiency       float64 `json:"efficiency"` // T(1) / (n·T(n))
}

// msPerByte is β on a link of bps bits per second, derated by the
// bandwidth efficiency measured; bps = 0 is the measured network.
func (m Model) msPerByte(bps float64) float64 {
	if bps <= 0 {
		return m.MSPerByte
	}
	eta := m.BandwidthEfficiency
	if eta <= 0 {
		eta = 1
	}
	return 8e3 / (eta * bps)
}

// Predict evaluates T(n) (see Model) on links of bps bits per second.
func (m Model) Predict(n int, bps float64) Prediction {
	B, N := float64(m.Batch), float64(n)
	b := B / N
	p := Prediction{Workers: n, BitsPerSecond: bps}
	p.ComputeMS = m.FixedMS + m.PerSampleMS*b + m.PerLogitMS*b*B
	beta := m.msPerByte(bps)
	p.LatencyMS = m.HopMS * (N - 1)
	p.AllReduceMS = beta * 2 * (N - 1) / N * m.GradBytes
	p.GatherMS = beta * (N - 1) / N * m.GatherBytes
	p.StepMS = p.ComputeMS + p.LatencyMS + p.AllReduceMS + p.GatherMS
	p.SamplesPerSecond = B / p.StepMS * 1e3
	t1 := m.FixedMS + m.PerSampleMS*B + m.PerLogitMS*B*B
	p.Efficiency = t1 / (N * p.StepMS)
	return p
}

// WriteModel prints the fitted constants and the predictions for the given
// worker counts and link rates.
func (m Model) WriteModel(w io.Writer, workers []int, bps []float64) error {
	fmt.Fprintf(w, "model: T(n) = c0 + cs·B/n + cl·(B/n)·B + λ(n−1) + β[2(n−1)/n·S + (n−1)/n·G]\n")
	fmt.Fprintf(w, "  B=%d d=%d S=%.0f bytes G=%.0f bytes, compute of a %d-thread worker\n", m.Batch, m.Dim, m.GradBytes, m.GatherBytes, m.ThreadsPerWorker)
	fmt.Fprintf(w, "  c0=%.3f ms  cs=%.4f ms/sample  cl=%.3g ms/logit  (from %d run(s))\n", m.FixedMS, m.PerSampleMS, m.PerLogitMS, m.ComputePoints)
	fmt.Fprintf(w, "  λ=%.3f ms/ring step  β=%.3g ms/byte = %.3f Gbit/s effective", m.HopMS, m.MSPerByte, 8e-6/m.MSPerByte)
	if m.NominalBitsPerSecond > 0 {
		fmt.Fprintf(w, " (%.0f%% of the %s limit)", 100*m.BandwidthEfficiency, formatRate(m.NominalBitsPerSecond))
	}
	fmt.Fprintf(w, "  (from %d run(s))\n", m.CommPoints)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workers\tlink\tcompute ms\tlatency ms\tall-reduce ms\tgather ms\tstep ms\tsamples/s\tefficiency\t")
	for _, r := range bps {
		for _, n := range workers {
			p := m.Predict(n, r)
			link := "measured"
			if r > 0 {
				link = formatRate(r)
			}
			fmt.Fprintf(tw, "%d\t%s\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.0f\t%.3f\t\n", n, link, p.ComputeMS, p.LatencyMS, p.AllReduceMS, p.GatherMS, p.StepMS, p.SamplesPerSecond, p.Efficiency)
		}
	}
	return tw.Flush()
}

func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// throughOrigin is the least-squares slope of y = a·x.
func throughOrigin(x, y []float64) float64 {
	var sxy, sxx float64
	for i := range x {
		sxy += x[i] * y[i]
		sxx += x[i] * x[i]
	}
	if sxx == 0 {
		return 0
	}
	return sxy / sxx
}

// nonNegative2 is the least-squares fit of y = a·u + b·v with a, b ≥ 0:
// the normal equations, and a one-variable fit when either comes out
// negative.
func nonNegative2(u, v, y []float64) (a, b float64) {
	var suu, svv, suv, suy, svy float64
	for i := range y {
		suu += u[i] * u[i]
		svv += v[i] * v[i]
		suv += u[i] * v[i]
		suy += u[i] * y[i]
		svy += v[i] * y[i]
	}
	det := suu*svv - suv*suv
	if det > 1e-12*suu*svv {
		a = (suy*svv - svy*suv) / det
		b = (svy*suu - suy*suv) / det
		if a >= 0 && b >= 0 {
			return a, b
		}
	}
	// The better of the two one-variable fits.
	a1 := math.Max(0, throughOrigin(u, y))
	b1 := math.Max(0, throughOrigin(v, y))
	var ea, eb float64
	for i := range y {
		ea += (y[i] - a1*u[i]) * (y[i] - a1*u[i])
		eb += (y[i] - b1*v[i]) * (y[i] - b1*v[i])
	}
	if ea < eb {
		return a1, 0
	}
	return 0, b1
}
