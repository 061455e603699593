package deploy

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/infonce/infonce/rundir"
)

// The run of the compose tests: small enough for two cores, long enough
// (about fifteen seconds with three workers, ten on a quiet machine) to
// lose a worker in the middle. Runs on different numbers of workers round their gradient sums
// differently; with ReLU a pre-activation within rounding of zero can then
// send them on different paths after a few hundred steps, so the run uses
// GELU, which has no kink (see docs/RELIABILITY.md), and stays short.
var composeRun = map[string]string{
	"INFONCE_ACTIVATION": "gelu",
	"INFONCE_STEPS":      "400",
	"INFONCE_BATCH":      "1024",
	"INFONCE_HIDDEN":     "128",
	"INFONCE_SEED":       "1",
	"INFONCE_LOG_EVERY":  "1",
	"INFONCE_NO_EVAL":    "true",
	"INFONCE_LOG_FORMAT": "text",
}

const composeSteps = 400

// runVolume is where docker-compose.yml mounts the run directory (INFONCE_OUT)
// in the coordinator and the workers.
const runVolume = "/run/infonce"

// lossTolerance is the largest relative difference allowed between the
// loss of a step in a distributed run and in one process: the global
// batch is the same, only the order of the float32 sums differs.
const lossTolerance = 1e-4

// withEnv returns os.Environ() without any INFONCE_ variable, plus kv.
func withEnv(kv map[string]string, extra ...string) []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "INFONCE_") {
			env = append(env, e)
		}
	}
	for k, v := range kv {
		env = append(env, k+"="+v)
	}
	return append(env, extra...)
}

// TestCompose brings docker-compose.yml up with three workers, once
// losing a worker in the middle of the run and once stopping the whole
// stack and resuming it, and checks both runs against one process
// training the same job on the host.
func TestCompose(t *testing.T) {
	needDocker(t)
	compose := composeCommand(t)
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	tag, bin := buildImage(t, ctx)

	// The reference: the same binary, one process, the same global batch.
	refDir := t.TempDir()
	run(t, ctx, withEnv(composeRun, "INFONCE_OUT="+refDir), refDir, bin, "train")
	want := readLossesFile(t, rundir.MetricsPath(refDir))
	if len(want) != composeSteps {
		t.Fatalf("reference run logged %d steps, want %d", len(want), composeSteps)
	}

	t.Run("kill-worker", func(t *testing.T) {
		s := upStack(t, ctx, compose, tag, 3)
		coord := s.only("coordinator")
		s.waitStep(coord, 60)
		// Kill the worker that is rank 0: it writes metrics.jsonl and the
		// checkpoints, so its loss is the hardest one to recover from.
		// Docker does not restart a container it was told to kill (a
		// manual stop for its restart policy): the run goes on with two.
		victim := s.rankZero(coord)
		t.Logf("docker kill %.12s (rank 0)", victim)
		killAt := time.Now()
		run(t, ctx, nil, "", "docker", "kill", victim)
		s.waitLog(coord, `action=run world=2 `, 1)
		// Gossip declares the worker dead, well before the control
		// stream's grace (15 s with --lan) would.
		dead := s.logTime(coord, deadRE)
		detect := dead.Sub(killAt)
		resumed := s.firstStepOfWorld(coord, 2)
		recovery := resumed.Sub(killAt)
		why := deadRE.FindStringSubmatch(s.logs(coord))[2]
		t.Logf("FIGURE compose kill: declared dead %v after docker kill (%s), next step of the 2 survivors %v after the kill",
			detect.Round(time.Millisecond), why, recovery.Round(time.Millisecond))
		if detect > 2*time.Second {
			t.Errorf("the killed worker was declared dead %v after docker kill, want at most 2s", detect)
		}
		if !strings.Contains(why, "gossip") {
			t.Errorf("the killed worker was not declared dead by gossip but by %q", why)
		}
		// By now Docker's health check (infonce health against /healthz)
		// has run a few times.
		s.waitHealthy(coord)
		s.waitAllExit(map[string]int{victim: 137})
		s.checkRun(coord, want, 2)
	})

	t.Run("down-up-resume", func(t *testing.T) {
		s := upStack(t, ctx, compose, tag, 3)
		coord := s.only("coordinator")
		s.waitStep(coord, 60)
		// down stops the workers first: they finish the step, rank 0
		// saves a checkpoint; the volume keeps it, and the coordinator's
		// default --resume auto starts from it.
		s.compose("down", "-t", "30")
		s.compose("up", "-d", "--scale", "worker=3")
		coord = s.only("coordinator")
		s.waitAllExit(nil)
		s.checkRun(coord, want, 3)
		logs := s.logs(coord)
		m := resumedRE.FindStringSubmatch(logs)
		if m == nil {
			t.Fatalf("the second `up` did not start from a checkpoint; coordinator log:\n%s", tail(logs, 3000))
		}
		if step, _ := strconv.Atoi(m[1]); step <= 0 || step >= composeSteps {
			t.Errorf("the second `up` resumed at step %s, want one inside the run (0, %d)", m[1], composeSteps)
		}
	})
}

// stack is one compose project brought up for a test.
type stack struct {
	t       *testing.T
	ctx     context.Context
	cmd     []string
	env     []string
	project string
	file    string
}

// upStack starts docker-compose.yml under a project name of its own, on
// a subnet of its own, with n workers. The project and its volume are
// removed when the test ends, whatever happens.
func upStack(t *testing.T, ctx context.Context, compose []string, image string, n int) *stack {
	t.Helper()
	octet := 16 + rand.IntN(224)
	s := &stack{
		t: t, ctx: ctx, cmd: compose,
		project: fmt.Sprintf("infoncetest%d%d", os.Getpid(), rand.IntN(1_000_000)),
		file:    filepath.Join(repoRoot(t), "docker-compose.yml"),
	}
	s.env = withEnv(composeRun,
		"INFONCE_IMAGE="+image,
		fmt.Sprintf("INFONCE_SUBNET=10.214.%d.0/24", octet),
		fmt.Sprintf("INFONCE_COORDINATOR_IP=10.214.%d.2", octet),
	)
	t.Cleanup(s.down)
	s.compose("up", "-d", "--scale", "worker="+strconv.Itoa(n))
	return s
}

func (s *stack) compose(args ...string) string {
	s.t.Helper()
	full := append(append(s.cmd[1:len(s.cmd):len(s.cmd)], "-f", s.file, "-p", s.project), args...)
	return run(s.t, s.ctx, s.env, filepath.Dir(s.file), s.cmd[0], full...)
}

// down removes the project's containers, network and volume; on a failed
// test it first logs the end of every container's output.
func (s *stack) down() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append(s.cmd[1:len(s.cmd):len(s.cmd)], "-f", s.file, "-p", s.project)
	if s.t.Failed() {
		out, _ := tryRun(ctx, s.env, filepath.Dir(s.file), s.cmd[0], append(args, "logs", "--no-color", "--tail", "40")...)
		s.t.Logf("logs of %s:\n%s", s.project, tail(out, 12000))
	}
	if out, err := tryRun(ctx, s.env, filepath.Dir(s.file), s.cmd[0], append(args, "down", "-v", "--remove-orphans", "-t", "5")...); err != nil {
		s.t.Errorf("compose down %s: %v\n%s", s.project, err, tail(out, 2000))
	}
}

// ids returns the containers of a service, stopped ones included.
func (s *stack) ids(service string) []string {
	s.t.Helper()
	return strings.Fields(s.compose("ps", "-a", "-q", service))
}

func (s *stack) only(service string) string {
	s.t.Helper()
	ids := s.ids(service)
	if len(ids) != 1 {
		s.t.Fatalf("service %s has %d containers, want 1", service, len(ids))
	}
	return ids[0]
}

func (s *stack) logs(container string) string {
	out, _ := tryRun(s.ctx, nil, "", "docker", "logs", container)
	return out
}

// poll calls ok every half second until it holds, failing the test after
// limit.
func (s *stack) poll(what string, limit time.Duration, ok func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) || s.ctx.Err() != nil {
			s.t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitStep waits until metrics.jsonl on the run volume has reached step.
func (s *stack) waitStep(container string, step int64) {
	s.t.Helper()
	s.poll(fmt.Sprintf("step %d in metrics.jsonl", step), 3*time.Minute, func() bool {
		b, err := copyFromContainer(s.ctx, container, runVolume+"/"+rundir.MetricsFile)
		if err != nil {
			return false
		}
		l, err := ReadLosses(bytes.NewReader(b))
		if err != nil {
			return false
		}
		_, ok := l[step]
		return ok
	})
}

// waitHealthy waits until Docker's health check (infonce health against
// the container's /healthz) reports the container healthy.
func (s *stack) waitHealthy(container string) {
	s.t.Helper()
	s.poll(fmt.Sprintf("container %.12s to be healthy", container), 2*time.Minute, func() bool {
		out, err := tryRun(s.ctx, nil, "", "docker", "inspect", "--format", "{{.State.Health.Status}}", container)
		return err == nil && strings.TrimSpace(out) == "healthy"
	})
}

// waitLog waits until the container's log holds pattern at least n times.
func (s *stack) waitLog(container, pattern string, n int) {
	s.t.Helper()
	re := regexp.MustCompile(pattern)
	s.poll(fmt.Sprintf("%d× %q in the log of %.12s", n, pattern, container), 3*time.Minute, func() bool {
		return len(re.FindAllStringIndex(s.logs(container), -1)) >= n
	})
}

var (
	deadRE       = regexp.MustCompile(`time=(\S+) level=WARN msg="worker declared dead" .*reason="([^"]*)"`)
	resumedRE    = regexp.MustCompile(`msg=generation .*action=run .*start="checkpoint [^"]*" start_step=(\d+)`)
	generationRE = regexp.MustCompile(`msg=generation .*action=run world=\d+ members="\[([^\]]*)\]"`)
	joinedRE     = regexp.MustCompile(`msg=joined worker=(\S+)`)
)

// logTime returns the time of the first line of the container's log that
// re matches (its slog time= field, the first submatch).
func (s *stack) logTime(container string, re *regexp.Regexp) time.Time {
	s.t.Helper()
	m := re.FindStringSubmatch(s.logs(container))
	if m == nil {
		s.t.Fatalf("no %q in the log of %.12s", re, container)
	}
	at, err := time.Parse(time.RFC3339Nano, m[1])
	if err != nil {
		s.t.Fatalf("log time %q: %v", m[1], err)
	}
	return at
}

// firstStepOfWorld returns the time of the first metrics line of a
// generation of world workers.
func (s *stack) firstStepOfWorld(container string, world int) time.Time {
	s.t.Helper()
	var at time.Time
	s.poll(fmt.Sprintf("a step of %d workers in metrics.jsonl", world), time.Minute, func() bool {
		b, err := copyFromContainer(s.ctx, container, runVolume+"/"+rundir.MetricsFile)
		if err != nil {
			return false
		}
		ms, _, err := rundir.DecodeMetricsSkipping(bytes.NewReader(b))
		if err != nil {
			return false
		}
		for _, m := range ms {
			if m.Workers == world {
				at = time.Unix(0, int64(m.Time*1e9))
				return true
			}
		}
		return false
	})
	return at
}

// rankZero returns the worker container that holds rank 0 of the latest
// running generation.
func (s *stack) rankZero(coord string) string {
	s.t.Helper()
	gens := generationRE.FindAllStringSubmatch(s.logs(coord), -1)
	if len(gens) == 0 {
		s.t.Fatal("no running generation in the coordinator's log")
	}
	first := strings.Fields(gens[len(gens)-1][1])[0]
	for _, id := range s.ids("worker") {
		for _, m := range joinedRE.FindAllStringSubmatch(s.logs(id), -1) {
			if m[1] == first {
				return id
			}
		}
	}
	s.t.Fatalf("no worker container joined as %s", first)
	return ""
}

// waitAllExit waits for every container of the project to exit and checks
// each exit status: 0, or the one given for a container in special.
func (s *stack) waitAllExit(special map[string]int) {
	s.t.Helper()
	for _, svc := range []string{"coordinator", "worker"} {
		for _, id := range s.ids(svc) {
			out := strings.TrimSpace(run(s.t, s.ctx, nil, "", "docker", "wait", id))
			want := special[id]
			if out != strconv.Itoa(want) {
				s.t.Errorf("%s container %.12s exited with %s, want %d; its log ends:\n%s", svc, id, out, want, tail(s.logs(id), 2000))
			}
		}
	}
}

// checkRun reads metrics.jsonl and summary.json off the run volume and
// compares the losses with the reference.
func (s *stack) checkRun(coord string, want map[int64]float64, workers int) {
	s.t.Helper()
	b, err := copyFromContainer(s.ctx, coord, runVolume+"/"+rundir.MetricsFile)
	if err != nil {
		s.t.Fatal(err)
	}
	got, err := ReadLosses(bytes.NewReader(b))
	if err != nil {
		s.t.Fatal(err)
	}
	d, err := CompareLosses(got, want)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Logf("%d steps: max relative loss difference %.3g at step %d (%.7f vs %.7f)", d.Steps, d.MaxRel, d.WorstAt, d.Got, d.Want)
	if d.MaxRel > lossTolerance {
		s.t.Errorf("loss of step %d is %.7f, one process has %.7f: relative difference %.3g over %g",
			d.WorstAt, d.Got, d.Want, d.MaxRel, lossTolerance)
	}
	sum, err := copyFromContainer(s.ctx, coord, runVolume+"/"+rundir.SummaryFile)
	if err != nil {
		s.t.Fatalf("summary.json: %v", err)
	}
	checkSummary(s.t, sum, composeSteps, workers)
}
