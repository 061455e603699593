//go:build faultinject

package worker

import "os"

// FaultInjectionFromEnv reports whether this build reads the fault
// variables (EnvFaultNaNSteps and the others): only a build with the tag
// faultinject does, for the end-to-end reliability tests.
const FaultInjectionFromEnv = true

// faultsFromEnv reads the fault variables of the process.
func faultsFromEnv() (Faults, error) { return parseFaults(os.Getenv) }
