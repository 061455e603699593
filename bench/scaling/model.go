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
	LinkBPS        float64 // rate limit of each worker's link, 0 for none (loopback)
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
// On a link of R bit/s, β = 8/(η·R) with η the share of the link the
// collectives achieve.
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
	MSPerByte   float64 `json:"ms_per_byte"`   // β of the measured network (loopback when unlimited)

	// NominalBitsPerSecond is the rate limit of the measured network (0 on
	// loopback); BandwidthEfficiency η is the share of it the collectives
	// achieved, 1 when there was no limit.
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
//
// The compute constants come from the observations whose workers had a
// core each (not oversubscribed): c0 is the mean of optimizer and other
// time, cs and cl are slopes through the origin.
//
// The communication constants come from the observations with two or more
// workers on rate-limited links when there are any, else from those on
// loopback; among them, from the ones with a core per worker when those
// alone determine both λ and β (two different n, or two different link
// rates), else from all of them. On limited links the fit is
// gather + all-reduce = λ(n−1) + (1/η)·8·bytes/R, on loopback
// λ(n−1) + β·bytes; when only one kind of point is there, λ = 0.
func Fit(m Model, obs []Observation) (Model, error) {
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

	limited := false
	for _, o := range obs {
		limited = limited || (o.Workers > 1 && o.LinkBPS > 0)
	}
	// hop, x, y: the regressors λ·hop + k·x = y, with k = 1/η on limited
	// links and k = β on loopback.
	collect := func(dedicated bool) (hop, x, y []float64, rates []float64) {
		for _, o := range obs {
			if o.Workers < 2 || (o.LinkBPS > 0) != limited || (dedicated && o.Oversubscribed) {
				continue
			}
			n := float64(o.Workers)
			bytes := 2*(n-1)/n*m.GradBytes + (n-1)/n*m.GatherBytes
			if limited {
				bytes *= 8e3 / o.LinkBPS // ms at the nominal rate
				rates = append(rates, o.LinkBPS)
			}
			hop, x, y = append(hop, n-1), append(x, bytes), append(y, o.StepTime.GatherMS+o.StepTime.ReduceMS)
		}
		return hop, x, y, rates
	}
	hop, x, y, rates := collect(true)
	if !identifiable(hop, x) {
		hop, x, y, rates = collect(false)
	}
	m.CommPoints = len(y)
	if len(y) == 0 {
		return m, errors.New("fit: no observation with two or more workers to fit the communication constants")
	}
	var k float64
	if identifiable(hop, x) {
		m.HopMS, k = nonNegative2(hop, x, y)
	} else {
		m.HopMS, k = 0, throughOrigin(x, y)
	}
	m.NominalBitsPerSecond, m.BandwidthEfficiency, m.MSPerByte = 0, 1, k
	if limited && k > 0 {
		m.BandwidthEfficiency = 1 / k
		// The measured network is the slowest limit seen.
		m.NominalBitsPerSecond = rates[0]
		for _, r := range rates {
			m.NominalBitsPerSecond = math.Min(m.NominalBitsPerSecond, r)
		}
		m.MSPerByte = m.msPerByte(m.NominalBitsPerSecond)
	}
	return m, nil
}

// identifiable reports whether the regressors u and v are not collinear,
// so that both coefficients of y = a·u + b·v can be fitted.
func identifiable(u, v []float64) bool {
	var suu, svv, suv float64
	for i := range u {
		suu += u[i] * u[i]
		svv += v[i] * v[i]
		suv += u[i] * v[i]
	}
	return suu > 0 && svv > 0 && suu*svv-suv*suv > 1e-9*suu*svv
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
