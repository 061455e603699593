// Package affinity pins processes to CPU cores: a worker process started
// on given cores (its every thread inherits the set), or this process's
// threads moved onto them. Scaling measurements use it to give each worker
// of a job a core of its own. It works on Linux; elsewhere it reports
// ErrUnsupported.
package affinity
