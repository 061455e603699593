//go:build !faultinject

package worker

import (
	"reflect"
	"testing"
)

// TestFaultsFromEnvIgnoresVariables: a build without the faultinject tag
// reads none of the fault variables, malformed ones included.
func TestFaultsFromEnvIgnoresVariables(t *testing.T) {
	t.Setenv(EnvFaultNaNSteps, "5,6")
	t.Setenv(EnvFaultKillInAllReduce, "not a step")
	t.Setenv(EnvDumpGrads, t.TempDir()+":0")
	t.Setenv(EnvSampleLog, t.TempDir()+"/samples.jsonl")
	f, err := faultsFromEnv()
	if err != nil || !reflect.DeepEqual(f, Faults{}) || FaultInjectionFromEnv {
		t.Fatalf("faultsFromEnv() = %+v, %v; want nothing", f, err)
	}
	c, all, err := (Faults{NaNSteps: []int64{3}}).withEnv()
	if err != nil || !reflect.DeepEqual(all, Faults{NaNSteps: []int64{3}}) || len(c.nanSteps) != 1 {
		t.Fatalf("withEnv = %+v, %+v, %v", c, all, err)
	}
}
