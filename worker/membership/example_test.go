package membership_test

import (
	"fmt"
	"time"

	"github.com/infonce/infonce/coordinator"
	"github.com/infonce/infonce/worker/membership"
)

// A worker takes its first generation as rank 0 of two, runs a step, and
// learns at the next boundary that a newer generation exists (a joiner was
// admitted there): the generation ends before the step starts.
func Example() {
	m := membership.New(membership.DefaultConfig())
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	fmt.Println(m.Assigned(coordinator.Assignment{Generation: 1, Action: coordinator.ActionRun, Rank: 0, World: 2}))
	m.Configured(&membership.Schedule{TotalSteps: 100, MaxBadSteps: 3, CheckpointEvery: 1})
	m.Started(0, 2, 0, 0)
	fmt.Println(m.Boundary(1, false))
	fmt.Println(m.StepDone(now, 0, membership.StepResult{}))
	fmt.Println(m.Boundary(2, false))
	fmt.Println(m.GenerationEnded(membership.Newer), m.Phase())
	// Output:
	// [start g1]
	// run 0
	// [record 0 progress 1 save 1 retry share-save 1 failed=0]
	// end newer g2
	// [] waiting
}
