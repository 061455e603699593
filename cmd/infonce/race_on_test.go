//go:build race

package main

// raceEnabled: the race detector's shadow memory inflates every
// process's resident set several times.
const raceEnabled = true
