package dataplane

// Where package shm keeps its files (its shmDir and vecPrefix), for the
// tests that check that none is left behind.
const (
	shmDir    = "/dev/shm"
	vecPrefix = "infonce-vec-"
)
