// Package membership is the generation logic of one worker, as a state
// machine without I/O: which assignment of the coordinator to take, when a
// generation ends (a newer one exists, a collective failed, a stop was
// asked), which rank saves a checkpoint and when, how many non-finite steps
// in a row end the run, how many failed saves in a row (which rank 0 shares
// with every rank after each periodic save) end it, when the worker reports its progress and its step
// boundaries, and what it announces when it joins the run again.
//
// The worker's I/O loop (package worker) feeds the Machine events (an
// assignment arrived, the start state is loaded, a step completed, a
// generation ended) and executes the Actions it returns: it builds the
// ring, runs the steps, writes checkpoints and talks to the coordinator.
// The machine reads no clock (every event that needs the time carries it)
// and touches no socket or file, so that every corner (a membership change
// in the middle of a step, a dead neighbour, a coordinator that is down for
// a while, a stop request, a generation that skips numbers, a joiner
// admitted at a step boundary, a non-finite step, the moments a checkpoint
// is written) is tested deterministically by scenario scripts.
package membership
