package deploy

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/infonce/infonce/internal/testcluster"
	"github.com/infonce/infonce/rundir"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testcluster.Cleanup()
	os.Exit(code)
}

func readLossesFile(t testing.TB, path string) map[int64]float64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	l, err := ReadLosses(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return l
}

// checkSummary checks the fields of summary.json a finished run must have.
// workers < 0 accepts any world size.
func checkSummary(t testing.TB, b []byte, steps int64, workers int) {
	t.Helper()
	sum, err := rundir.DecodeSummary[json.RawMessage](b)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		t.Fatalf("summary.json: %v", err)
	}
	var finalLoss *float64
	if raw, ok := fields["final_loss"]; ok && string(raw) != "null" {
		finalLoss = &sum.FinalLoss
	}
	if sum.Steps != steps || finalLoss == nil {
		t.Errorf("summary.json: steps %d, final loss %v; want %d steps and a final loss:\n%s", sum.Steps, finalLoss, steps, b)
	}
	if workers >= 0 && sum.Workers != workers {
		t.Errorf("summary.json: %d workers, want %d", sum.Workers, workers)
	}
}
