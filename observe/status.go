package observe

import (
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"

	"github.com/infonce/infonce/coordinator"
)

// Snapshot is the status page's data, also served as /status.json.
type Snapshot struct {
	JobID       string          `json:"job_id"`
	Phase       string          `json:"phase"`
	Generation  uint64          `json:"generation"`
	World       int             `json:"world"`
	Addr        string          `json:"addr"`
	Progress    Point           `json:"progress"`
	Checkpoint  *CheckpointRow  `json:"checkpoint,omitempty"`
	Members     []MemberRow     `json:"members"`
	Generations []GenerationRow `json:"generations"` // newest first
	Points      []Point         `json:"points"`      // oldest first
	StartedAt   time.Time       `json:"started_at"`
	At          time.Time       `json:"at"`
}

// MemberRow is one row of the members table.
type MemberRow struct {
	ID            string    `json:"id"`
	Name          string    `json:"name"`
	State         string    `json:"state"`
	Rank          int       `json:"rank"` // -1: no rank
	Step          int64     `json:"step"`
	Loss          float64   `json:"loss"`
	SamplesPerSec float64   `json:"samples_per_second"`
	DataAddr      string    `json:"data_addr"`
	JoinedAt      time.Time `json:"joined_at"`
	ReportedAt    time.Time `json:"reported_at"`
	Note          string    `json:"note,omitempty"` // the last error, or why it left
}

// GenerationRow is one row of the generation history.
type GenerationRow struct {
	Number    uint64    `json:"number"`
	Action    string    `json:"action"`
	Members   []string  `json:"members"`
	Start     string    `json:"start"`
	StartStep int64     `json:"start_step"`
	Reason    string    `json:"reason"`
	At        time.Time `json:"at"`
}

// CheckpointRow is the newest committed checkpoint.
type CheckpointRow struct {
	Step       int64     `json:"step"`
	Path       string    `json:"path"`
	Generation uint64    `json:"generation"`
	By         string    `json:"by"`
	At         time.Time `json:"at"`
}

// Snapshot reads the coordinator's status and the sampled history.
func (c *Coordinator) Snapshot() Snapshot {
	st := c.src.Status()
	c.record(st)
	return snapshotOf(st, c.Points())
}

func snapshotOf(st coordinator.Status, pts []Point) Snapshot {
	a := st.Progress
	s := Snapshot{
		JobID: st.JobID, Phase: st.Phase.String(), Generation: st.Current.Number, World: len(st.Current.Members),
		Addr: st.Addr, StartedAt: st.StartedAt, At: st.At, Points: pts,
		Progress: Point{At: a.At, Generation: a.Generation, Workers: a.Workers, Step: a.MaxStep, Loss: a.Loss, SamplesPerSec: a.SamplesPerSec},
		Members:  []MemberRow{}, Generations: []GenerationRow{},
	}
	if s.Points == nil {
		s.Points = []Point{}
	}
	if l := st.Latest; l != nil {
		s.Checkpoint = &CheckpointRow{Step: l.Step, Path: l.Path, Generation: l.Generation, By: l.By, At: l.At}
	}
	for _, m := range st.Members {
		note := m.LastError
		if note == "" {
			note = m.Reason
		}
		s.Members = append(s.Members, MemberRow{
			ID: m.ID, Name: m.Name, State: m.State.String(), Rank: m.Rank, Step: m.Step,
			Loss: m.Progress.Loss, SamplesPerSec: m.Progress.SamplesPerSec, DataAddr: m.DataAddr,
			JoinedAt: m.JoinedAt, ReportedAt: m.ProgressAt, Note: note,
		})
	}
	for i := len(st.History) - 1; i >= 0; i-- {
		g := st.History[i]
		s.Generations = append(s.Generations, GenerationRow{
			Number: g.Number, Action: g.Action.String(), Members: g.Members, Start: g.Start.String(),
			StartStep: g.StartStep, Reason: g.Reason, At: g.At,
		})
	}
	return s
}

// WritePage writes the status page: the run's headline figures, the loss
// and throughput curves as inline SVG, the members table and the
// generation history.
func (c *Coordinator) WritePage(w io.Writer) error {
	s := c.Snapshot()
	v := pageView{Snapshot: s, RefreshSeconds: int(c.o.Refresh / time.Second)}
	v.LossChart, v.RateChart = curves(s, c.o.Batch)
	if err := pageTemplate.Execute(w, v); err != nil {
		return fmt.Errorf("observe: status page: %w", err)
	}
	return nil
}

// pageView is what the page template reads.
type pageView struct {
	Snapshot
	RefreshSeconds       int
	LossChart, RateChart template.HTML
}

// curves draws the loss against the step and the throughput against the
// time since the coordinator started; a dashed line marks where each
// generation that ran started. With the global batch B known, the
// throughput is also measured from the progress itself, B·Δstep/Δt over
// the last rateWindow of one generation, which is steadier than the sum of
// the workers' own latest rates.
func curves(s Snapshot, batch int) (loss, rate template.HTML) {
	n := len(s.Points)
	step, l := make([]float64, n), make([]float64, n)
	t, r := make([]float64, n), make([]float64, n)
	start := s.StartedAt
	if start.IsZero() && n > 0 {
		start = s.Points[0].At
	}
	span := 0.0
	if n > 0 {
		span = s.Points[n-1].At.Sub(start).Seconds()
	}
	unit, div := "seconds since the coordinator started", 1.0
	if span > 600 {
		unit, div = "minutes since the coordinator started", 60
	}
	for i, p := range s.Points {
		step[i], l[i] = float64(p.Step), p.Loss
		t[i], r[i] = p.At.Sub(start).Seconds()/div, p.SamplesPerSec
	}
	var stepMarks, timeMarks []mark
	for _, g := range s.Generations {
		if g.Action != coordinator.ActionRun.String() {
			continue
		}
		label := fmt.Sprintf("g%d·%d", g.Number, len(g.Members))
		stepMarks = append(stepMarks, mark{x: float64(g.StartStep), label: label})
		timeMarks = append(timeMarks, mark{x: g.At.Sub(start).Seconds() / div, label: label})
	}
	rateSeries := []series{{name: "workers' rates", color: "#c2571a", x: t, y: r}}
	if batch > 0 && n > 1 {
		var dx, dy []float64
		first := 0 // the first point of the current generation
		for i := 1; i < n; i++ {
			q := s.Points[i]
			if q.Generation != s.Points[i-1].Generation || q.Step < s.Points[i-1].Step {
				first = i
				continue
			}
			j := first
			for k := i - 1; k > first; k-- {
				if q.At.Sub(s.Points[k].At) >= rateWindow {
					j = k
					break
				}
			}
			p := s.Points[j]
			if dt := q.At.Sub(p.At).Seconds(); dt > 0 {
				dx = append(dx, t[i])
				dy = append(dy, float64(q.Step-p.Step)*float64(batch)/dt)
			}
		}
		rateSeries = []series{{name: "B·Δstep/Δt", color: "#1b8a5a", x: dx, y: dy}, {name: "workers' rates", color: "#e0a27a", x: t, y: r}}
	}
	loss = chart{id: "loss-chart", title: "Loss (mean of the workers' latest)", xLabel: "step", yLabel: "loss",
		series: []series{{name: "loss", color: "#1f6fb2", x: step, y: l}}, marks: stepMarks}.svg()
	rate = chart{id: "throughput-chart", title: "Throughput (samples/s)", xLabel: unit, yLabel: "samples/s",
		series: rateSeries, marks: timeMarks}.svg()
	return loss, rate
}

// rateWindow is the span over which the status page measures throughput
// from the progress.
const rateWindow = 3 * time.Second

// ago formats the time since t, relative to now.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "now"
	case d < time.Minute:
		return fmt.Sprintf("%.0fs ago", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%.0fm ago", d.Minutes())
	}
	return fmt.Sprintf("%.1fh ago", d.Hours())
}

var pageTemplate = template.Must(template.New("status").Funcs(template.FuncMap{
	"ago":  ago,
	"join": func(s []string) string { return strings.Join(s, ", ") },
	"rank": func(r int) string {
		if r < 0 {
			return "–"
		}
		return fmt.Sprint(r)
	},
	"f4":   func(v float64) string { return fmt.Sprintf("%.4f", v) },
	"rate": func(v float64) string { return fmt.Sprintf("%.0f", v) },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{{if gt .RefreshSeconds 0}}<meta http-equiv="refresh" content="{{.RefreshSeconds}}">{{end}}
<title>infonce · {{.JobID}} · {{.Phase}}</title>
<style>
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 20px 28px; color: #1d232a; background: #fafbfc; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 15px; margin: 22px 0 8px; }
.sub { color: #5b6670; margin-bottom: 14px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { background: #fff; border: 1px solid #dde2e7; border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.card .k { color: #5b6670; font-size: 12px; }
.card .v { font-size: 18px; font-variant-numeric: tabular-nums; }
.charts { display: flex; flex-wrap: wrap; gap: 14px; }
svg.chart { background: #fff; border: 1px solid #dde2e7; border-radius: 6px; font-size: 11px; }
svg.chart .title { font-size: 13px; font-weight: 600; fill: #1d232a; }
svg.chart .frame { fill: none; stroke: #9aa4ad; }
svg.chart .grid { stroke: #eceff2; }
svg.chart .tick, svg.chart .legend { fill: #5b6670; }
svg.chart .label { fill: #3b444c; font-size: 12px; }
svg.chart .mark { stroke: #8a56c2; stroke-dasharray: 4 3; }
svg.chart .mark-label { fill: #8a56c2; font-size: 10px; }
svg.chart .empty { fill: #9aa4ad; font-size: 13px; }
table { border-collapse: collapse; background: #fff; border: 1px solid #dde2e7; }
th, td { padding: 4px 10px; border-bottom: 1px solid #eceff2; text-align: left; white-space: nowrap; }
th { background: #f1f3f5; font-weight: 600; font-size: 12px; color: #3b444c; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.note { white-space: normal; max-width: 420px; color: #5b6670; }
.state { padding: 1px 7px; border-radius: 9px; font-size: 12px; }
.state-active { background: #dcf3e3; color: #16672f; }
.state-pending { background: #fff3d6; color: #7a5300; }
.state-left { background: #e9ecef; color: #495057; }
.state-dead { background: #fde0e0; color: #a11d1d; }
</style>
</head>
<body>
<h1>infonce · {{.JobID}}</h1>
<div class="sub">coordinator {{.Addr}} · phase <b id="phase">{{.Phase}}</b> · snapshot {{.At.UTC.Format "2006-01-02 15:04:05"}} UTC{{if gt .RefreshSeconds 0}} · refreshes every {{.RefreshSeconds}} s{{end}}</div>
<div class="cards">
<div class="card"><div class="k">generation</div><div class="v" id="generation">{{.Generation}}</div></div>
<div class="card"><div class="k">workers (ranks)</div><div class="v">{{.World}}</div></div>
<div class="card"><div class="k">step</div><div class="v">{{.Progress.Step}}</div></div>
<div class="card"><div class="k">loss</div><div class="v">{{if .Progress.Workers}}{{f4 .Progress.Loss}}{{else}}–{{end}}</div></div>
<div class="card"><div class="k">samples/s</div><div class="v">{{if .Progress.Workers}}{{rate .Progress.SamplesPerSec}}{{else}}–{{end}}</div></div>
<div class="card"><div class="k">last checkpoint</div><div class="v">{{with .Checkpoint}}step {{.Step}} · {{ago $.At .At}}{{else}}none{{end}}</div></div>
</div>
<h2>Curves</h2>
<div class="charts">{{.LossChart}}{{.RateChart}}</div>
<h2>Members</h2>
<table id="members">
<thead><tr><th>rank</th><th>id</th><th>name</th><th>state</th><th>step</th><th>loss</th><th>samples/s</th><th>data plane</th><th>joined</th><th>last report</th><th>note</th></tr></thead>
<tbody>
{{range .Members}}<tr class="member"><td class="num">{{rank .Rank}}</td><td>{{.ID}}</td><td>{{.Name}}</td><td><span class="state state-{{.State}}">{{.State}}</span></td><td class="num">{{.Step}}</td><td class="num">{{if not .ReportedAt.IsZero}}{{f4 .Loss}}{{else}}–{{end}}</td><td class="num">{{if not .ReportedAt.IsZero}}{{rate .SamplesPerSec}}{{else}}–{{end}}</td><td>{{.DataAddr}}</td><td>{{ago $.At .JoinedAt}}</td><td>{{ago $.At .ReportedAt}}</td><td class="note">{{.Note}}</td></tr>
{{else}}<tr><td colspan="11">no workers yet</td></tr>
{{end}}</tbody>
</table>
<h2>Generations</h2>
<table id="generations">
<thead><tr><th>#</th><th>action</th><th>ranks</th><th>members (ring order)</th><th>start</th><th>start step</th><th>when</th><th>reason</th></tr></thead>
<tbody>
{{range .Generations}}<tr class="generation"><td class="num">{{.Number}}</td><td>{{.Action}}</td><td class="num">{{len .Members}}</td><td>{{join .Members}}</td><td>{{.Start}}</td><td class="num">{{.StartStep}}</td><td>{{ago $.At .At}}</td><td class="note">{{.Reason}}</td></tr>
{{else}}<tr><td colspan="8">no generation yet</td></tr>
{{end}}</tbody>
</table>
</body>
</html>
`))
