//go:build race

package worker

// raceEnabled: the race detector empties sync.Pools at random, so the
// pooled packing buffers of the matrix kernel are allocated again and
// allocation counts are not meaningful under it.
const raceEnabled = true
