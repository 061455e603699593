//go:build !faultinject

package worker

// FaultInjectionFromEnv reports whether this build reads the fault
// variables (EnvFaultNaNSteps and the others): only a build with the tag
// faultinject does, for the end-to-end reliability tests.
const FaultInjectionFromEnv = false

// faultsFromEnv injects nothing: a production binary ignores the fault
// variables. Tests in the process give faults through Options.Faults and
// MemberOptions.Faults.
func faultsFromEnv() (Faults, error) { return Faults{}, nil }
