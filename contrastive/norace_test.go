//go:build !race

package contrastive

const raceEnabled = false
