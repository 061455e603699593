// Package cputime reads this process's CPU time, for benchmarks that
// report it per operation beside wall time: on a shared machine it varies
// far less.
package cputime
