package scaling

import (
	"errors"
	"fmt"
	"image/color"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// PlotFiles are the names WritePlots writes, without the extension; each
// is written as .png and .svg.
var PlotFiles = []string{"throughput", "efficiency", "breakdown"}

// WritePlots draws throughput and efficiency against the number of workers
// and a stacked bar chart of the step-time breakdown, as PNG and SVG files
// in dir.
func (r *Report) WritePlots(dir string) error {
	if len(r.Points) == 0 {
		return errors.New("plot: no points")
	}
	plots := []func() (*plot.Plot, error){r.throughputPlot, r.efficiencyPlot, r.breakdownPlot}
	for i, mk := range plots {
		p, err := mk()
		if err != nil {
			return fmt.Errorf("plot %s: %w", PlotFiles[i], err)
		}
		for _, ext := range []string{".png", ".svg"} {
			path := filepath.Join(dir, PlotFiles[i]+ext)
			if err := p.Save(16*vg.Centimeter, 10*vg.Centimeter, path); err != nil {
				return fmt.Errorf("plot %s: %w", path, err)
			}
		}
	}
	return nil
}

func (r *Report) title(what string) string {
	return fmt.Sprintf("%s\n%s, B=%d, %s; %d-core %s", what, r.Objective, r.Batch, r.Network, r.Machine.Cores, r.Machine.CPU)
}

// workerTicks labels the x axis with the measured worker counts.
func (r *Report) workerTicks() plot.Ticker {
	var ts plot.ConstantTicks
	for _, p := range r.Points {
		label := strconv.Itoa(p.Workers)
		if p.Oversubscribed {
			label += "*"
		}
		ts = append(ts, plot.Tick{Value: float64(p.Workers), Label: label})
	}
	return ts
}

func (r *Report) xLabel() string {
	for _, p := range r.Points {
		if p.Oversubscribed {
			return "workers (* more workers × threads than cores)"
		}
	}
	return "workers"
}

func (r *Report) throughputPlot() (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = r.title("Throughput")
	p.X.Label.Text, p.Y.Label.Text = r.xLabel(), "samples / s"
	p.X.Tick.Marker = r.workerTicks()
	p.Y.Min = 0
	measured, ideal := make(plotter.XYs, len(r.Points)), make(plotter.XYs, len(r.Points))
	errs := make(plotter.XYs, 0, 2*len(r.Points))
	b := r.Points[0]
	for i, pt := range r.Points {
		measured[i] = plotter.XY{X: float64(pt.Workers), Y: pt.SamplesPerSecond}
		ideal[i] = plotter.XY{X: float64(pt.Workers), Y: b.SamplesPerSecond * float64(pt.Workers) / float64(b.Workers)}
		errs = append(errs, plotter.XY{X: float64(pt.Workers), Y: pt.MinSamplesPerSec}, plotter.XY{X: float64(pt.Workers), Y: pt.MaxSamplesPerSec})
	}
	l, s, err := plotter.NewLinePoints(measured)
	if err != nil {
		return nil, err
	}
	l.Color, s.Color = color.RGBA{R: 31, G: 119, B: 180, A: 255}, color.RGBA{R: 31, G: 119, B: 180, A: 255}
	il, err := plotter.NewLine(ideal)
	if err != nil {
		return nil, err
	}
	il.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	il.Color = color.Gray{Y: 120}
	rng, err := plotter.NewScatter(errs)
	if err != nil {
		return nil, err
	}
	rng.GlyphStyle.Shape = draw.BoxGlyph{}
	rng.GlyphStyle.Radius = vg.Points(1.5)
	rng.Color = color.NRGBA{R: 31, G: 119, B: 180, A: 160}
	p.Add(plotter.NewGrid(), il, l, s, rng)
	p.Legend.Add("measured (median)", l, s)
	p.Legend.Add("min, max of repeats", rng)
	p.Legend.Add("linear", il)
	p.Legend.Top, p.Legend.Left = true, true
	return p, nil
}

func (r *Report) efficiencyPlot() (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = r.title("Scaling efficiency")
	p.X.Label.Text = r.xLabel()
	p.Y.Label.Text = "X(n) / (n·X(1))"
	if b := r.Points[0].Workers; b != 1 {
		p.Y.Label.Text = fmt.Sprintf("X(n)·%d / (n·X(%d))", b, b)
	}
	p.X.Tick.Marker = r.workerTicks()
	p.Y.Min, p.Y.Max = 0, 1.1
	xy := make(plotter.XYs, len(r.Points))
	for i, pt := range r.Points {
		xy[i] = plotter.XY{X: float64(pt.Workers), Y: pt.Efficiency}
		p.Y.Max = max(p.Y.Max, pt.Efficiency*1.05)
	}
	l, s, err := plotter.NewLinePoints(xy)
	if err != nil {
		return nil, err
	}
	l.Color, s.Color = color.RGBA{R: 214, G: 39, B: 40, A: 255}, color.RGBA{R: 214, G: 39, B: 40, A: 255}
	one, err := plotter.NewLine(plotter.XYs{{X: float64(r.Points[0].Workers), Y: 1}, {X: float64(r.Points[len(r.Points)-1].Workers), Y: 1}})
	if err != nil {
		return nil, err
	}
	one.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	one.Color = color.Gray{Y: 120}
	p.Add(plotter.NewGrid(), one, l, s)
	return p, nil
}

// phaseColors are the colours of the breakdown's phases, in Phases order.
var phaseColors = []color.Color{
	color.RGBA{R: 148, G: 103, B: 189, A: 255}, // data
	color.RGBA{R: 31, G: 119, B: 180, A: 255},  // forward
	color.RGBA{R: 255, G: 127, B: 14, A: 255},  // gather
	color.RGBA{R: 188, G: 189, B: 34, A: 255},  // loss
	color.RGBA{R: 44, G: 160, B: 44, A: 255},   // backward
	color.RGBA{R: 214, G: 39, B: 40, A: 255},   // all-reduce
	color.RGBA{R: 140, G: 86, B: 75, A: 255},   // optimizer
	color.RGBA{R: 180, G: 180, B: 180, A: 255}, // other
}

func (r *Report) breakdownPlot() (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = r.title("Step time of rank 0")
	p.Y.Label.Text = "ms per step"
	p.X.Label.Text = r.xLabel()
	names := make([]string, len(r.Points))
	for i, pt := range r.Points {
		names[i] = strconv.Itoa(pt.Workers)
		if pt.Oversubscribed {
			names[i] += "*"
		}
	}
	phases := r.Points[0].StepTime.Phases(r.Points[0].StepMS)
	var below *plotter.BarChart
	bars := make([]*plotter.BarChart, len(phases))
	for k := range phases {
		vals := make(plotter.Values, len(r.Points))
		for i, pt := range r.Points {
			vals[i] = pt.StepTime.Phases(pt.StepMS)[k].MS
		}
		bc, err := plotter.NewBarChart(vals, vg.Points(28))
		if err != nil {
			return nil, err
		}
		bc.Color = phaseColors[k%len(phaseColors)]
		bc.LineStyle.Width = 0
		if below != nil {
			bc.StackOn(below)
		}
		below, bars[k] = bc, bc
		p.Add(bc)
	}
	// Legend from the top of the stack down, as the bars read.
	for k := len(phases) - 1; k >= 0; k-- {
		p.Legend.Add(phases[k].Name, bars[k])
	}
	// The legend sits right of the last bar, in room made on the x axis.
	p.Legend.Top = true
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.6, float64(len(names))-0.4+1.6
	p.Y.Min = 0
	return p, nil
}
