package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/infonce/infonce/dataset"
)

// Defaults of the action view.
const (
	DefaultActionHorizon = 8
)

// actionTable holds every sample's action of a source, with its episode
// and step, and the per-dimension quantiles that normalise them: what the
// action view of a sample (a chunk of the actions of the next H steps of
// its episode) is built from without decoding the other samples' images.
// With the robot's state (S > 0), it holds each sample's state too, and
// its quantiles, normalised as the actions are.
type actionTable struct {
	A, H     int
	act      []float32 // N×A, the action of each sample's own step
	episode  []int64   // −1: no episode (a bad sample: its chunk is empty)
	step     []int
	q01, q99 []float32 // the 1st and 99th percentiles of each dimension, as OpenVLA normalises

	S          int       // state dimensions (0: no state in the view)
	state      []float32 // N×S, the state at each sample's step
	sq01, sq99 []float32 // the state's quantiles
}

// newActionTable reads the actions of every sample of src (decoding them
// once) and their quantiles; and with withState the states and theirs.
func newActionTable(src dataset.Source, horizon int, withState bool, log func(error)) (*actionTable, error) {
	return readTable(src, horizon, true, withState, log)
}

// quantiles returns the 1st and 99th percentiles of each of the w columns
// of vals (N×w), over the samples with an episode.
func (t *actionTable) quantiles(vals []float32, w int) (q01, q99 []float32) {
	n := len(t.episode)
	q01, q99 = make([]float32, w), make([]float32, w)
	col := make([]float64, 0, n)
	for d := range w {
		col = col[:0]
		for i := range n {
			if t.episode[i] >= 0 {
				col = append(col, float64(vals[i*w+d]))
			}
		}
		slices.Sort(col)
		q01[d], q99[d] = float32(quantile(col, 0.01)), float32(quantile(col, 0.99))
	}
	return q01, q99
}

// readEpisodes reads the episode and step of every sample of src, and
// their actions when withActions (which a source must then have).
func readEpisodes(src dataset.Source, horizon int, withActions bool, log func(error)) (*actionTable, error) {
	return readTable(src, horizon, withActions, false, log)
}

// readTable is readEpisodes, reading also the states when withState (with
// withActions): a sample without a state is then a bad sample (its chunk
// is empty), and a source without any state an error.
func readTable(src dataset.Source, horizon int, withActions, withState bool, log func(error)) (*actionTable, error) {
	if withState && !slices.Contains(src.Fields(), dataset.FieldState) {
		return nil, fmt.Errorf("--action-state: %s has no state field (observation/state in RLDS, state.npy in wds)", src.Name())
	}
	n := src.Len()
	t := &actionTable{H: horizon, episode: make([]int64, n), step: make([]int, n)}
	var s dataset.Sample
	for i := range n {
		err := src.Sample(context.Background(), i, &s)
		if err != nil && !errors.Is(err, dataset.ErrBadSample) {
			return nil, fmt.Errorf("actions: sample %d: %w", i, err)
		}
		if err == nil && !withActions {
			t.episode[i], t.step[i] = s.Episode, s.Step
			if s.Episode < 0 {
				t.episode[i], t.step[i] = int64(i), 0
			}
			continue
		}
		if err == nil && withState && len(s.State) == 0 && len(s.Action) > 0 {
			err = &dataset.BadSample{Reason: "missing-state", Key: s.Key}
		}
		if err != nil || len(s.Action) == 0 {
			if err == nil {
				err = &dataset.BadSample{Reason: "missing-action", Key: s.Key}
			}
			log(err)
			t.episode[i] = -1
			if t.A > 0 {
				t.act = append(t.act, make([]float32, t.A)...)
			}
			if t.S > 0 {
				t.state = append(t.state, make([]float32, t.S)...)
			}
			continue
		}
		if withState {
			if t.S == 0 {
				t.S = len(s.State)
				t.state = make([]float32, i*t.S, n*t.S) // the bad samples before
			}
			if len(s.State) != t.S {
				return nil, fmt.Errorf("states: sample %d (%s) has %d dimensions, the first had %d", i, s.Key, len(s.State), t.S)
			}
			t.state = append(t.state, s.State...)
		}
		a := s.Action
		if len(s.ActionShape) == 2 { // a chunk: its first row is this step's
			a = a[:s.ActionShape[1]]
		}
		if t.A == 0 {
			t.A = len(a)
			t.act = make([]float32, i*t.A, n*t.A) // the bad samples before
		}
		if len(a) != t.A {
			return nil, fmt.Errorf("actions: sample %d (%s) has %d dimensions, the first had %d", i, s.Key, len(a), t.A)
		}
		t.act = append(t.act, a...)
		t.episode[i], t.step[i] = s.Episode, s.Step
		if s.Episode < 0 { // no episodes: every sample its own
			t.episode[i], t.step[i] = int64(i), 0
		}
	}
	if !withActions {
		return t, nil
	}
	if t.A == 0 {
		return nil, fmt.Errorf("actions: %s has no sample with an action", src.Name())
	}
	if withState && t.S == 0 {
		return nil, fmt.Errorf("--action-state: %s has no sample with an action and a state (observation/state in RLDS, state.npy in wds)", src.Name())
	}
	if t.S > 0 {
		t.sq01, t.sq99 = t.quantiles(t.state, t.S)
	}
	t.q01, t.q99 = t.quantiles(t.act, t.A)
	return t, nil
}

// quantile is the q-quantile of sorted xs, linearly interpolated (as
// NumPy's default).
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	p := q * float64(len(xs)-1)
	lo := int(math.Floor(p))
	hi := min(lo+1, len(xs)-1)
	return xs[lo] + (p-float64(lo))*(xs[hi]-xs[lo])
}

// rowLen is the width of an action view's row: H steps of A normalised
// dimensions, then H mask values, then the S normalised values of the
// state.
func (t *actionTable) rowLen() int { return t.H*(t.A+1) + t.S }

// fill writes the action view of sample i into row: for k < H, the
// normalised action of step k of the chunk that starts at i, when sample
// i+k is that step of the same episode (else zeros), and the mask 1 or 0;
// then the normalised state of sample i. A chunk never runs into the next
// episode. The normalisation maps [q01, q99] onto [−1, 1] and clips.
func (t *actionTable) fill(i int, row []float32) {
	A, n := t.A, len(t.episode)
	clear(row)
	mask := row[t.H*A : t.H*(A+1)]
	ep := t.episode[i]
	if ep < 0 {
		return
	}
	for d, v := range t.state[i*t.S : (i+1)*t.S] {
		row[t.H*(A+1)+d] = normalise(v, t.sq01[d], t.sq99[d])
	}
	for k := range t.H {
		j := i + k
		if j >= n || t.episode[j] != ep || t.step[j] != t.step[i]+k {
			break
		}
		mask[k] = 1
		for d := range A {
			row[k*A+d] = normalise(t.act[j*A+d], t.q01[d], t.q99[d])
		}
	}
}

// normalise maps x from [lo, hi] onto [−1, 1] and clips (0 when hi ≤ lo).
func normalise(x, lo, hi float32) float32 {
	v := float32(0)
	if hi > lo {
		v = 2*(x-lo)/(hi-lo) - 1
	}
	return min(max(v, -1), 1)
}

// extraActionStats is the manifest's Extra key of the action quantiles.
const extraActionStats = "action_stats"

type actionStats struct {
	Q01      []float32 `json:"q01"`
	Q99      []float32 `json:"q99"`
	StateQ01 []float32 `json:"state_q01,omitempty"`
	StateQ99 []float32 `json:"state_q99,omitempty"`
}

func (t *actionTable) statsJSON() string {
	b, _ := json.Marshal(actionStats{t.q01, t.q99, t.sq01, t.sq99})
	return string(b)
}

// useStats makes t normalise with the quantiles of o (the training
// data's, for validation data).
func (t *actionTable) useStats(o *actionTable) {
	t.q01, t.q99, t.sq01, t.sq99 = o.q01, o.q99, o.sq01, o.sq99
}

// restoreStats takes the quantiles a checkpoint was trained with.
func (t *actionTable) restoreStats(s string) error {
	var st actionStats
	if err := json.Unmarshal([]byte(s), &st); err != nil {
		return fmt.Errorf("action statistics: %w", err)
	}
	if len(st.Q01) != t.A || len(st.Q99) != t.A {
		return fmt.Errorf("action statistics of %d dimensions, the data has %d", len(st.Q01), t.A)
	}
	if len(st.StateQ01) != t.S || len(st.StateQ99) != t.S {
		return fmt.Errorf("state statistics of %d dimensions, the view has %d", len(st.StateQ01), t.S)
	}
	t.q01, t.q99 = st.Q01, st.Q99
	if t.S > 0 {
		t.sq01, t.sq99 = st.StateQ01, st.StateQ99
	}
	return nil
}

// domainNearby keeps the draws of nearby frames apart from other streams.
const domainNearby uint64 = 0x6e6561726279 // "nearby"

// nearby returns the sample of another step of sample i's episode, at most
// window steps later (or earlier, near the episode's end), drawn from
// (seed, epoch, i): the positive of a time-contrastive loss. A sample
// without neighbours within its episode is its own.
func (t *actionTable) nearby(seed uint64, epoch, i, window int) int {
	return t.nearbyDir(seed, epoch, i, window, false)
}

// nearbyDir is nearby, restricted to later frames when later.
func (t *actionTable) nearbyDir(seed uint64, epoch, i, window int, later bool) int {
	ep, n := t.episode[i], len(t.episode)
	if ep < 0 || window < 1 {
		return i
	}
	h := splitmix(seed ^ domainNearby ^ splitmix(uint64(epoch)<<32^uint64(i)))
	d := 1 + int(h%uint64(window))
	for _, j := range []int{i + d, i - d} {
		if later && j < i {
			break
		}
		if j >= 0 && j < n && t.episode[j] == ep && t.step[j] == t.step[i]+(j-i) {
			return j
		}
	}
	return i
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}
