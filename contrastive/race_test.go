//go:build race

package contrastive

// raceEnabled: the race detector empties sync.Pools at random, so pooled
// scratch of a matrix kernel is reallocated and allocation counts of the
// default kernel are not meaningful.
const raceEnabled = true
