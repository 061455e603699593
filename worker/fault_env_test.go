//go:build faultinject

package worker

import (
	"reflect"
	"testing"
)

// TestFaultsFromEnvReadsVariables: a faultinject build reads the fault
// variables.
func TestFaultsFromEnvReadsVariables(t *testing.T) {
	t.Setenv(EnvFaultNaNSteps, "5,6")
	t.Setenv(EnvFaultKillInAllReduce, "40")
	t.Setenv(EnvDumpGrads, "")
	t.Setenv(EnvSampleLog, "")
	f, err := faultsFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if want := (Faults{NaNSteps: []int64{5, 6}, KillInAllReduce: []int64{40}}); !reflect.DeepEqual(f, want) || !FaultInjectionFromEnv {
		t.Fatalf("got %+v, want %+v", f, want)
	}
}
