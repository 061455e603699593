// Package coordinator is the control plane of infonce: membership,
// rendezvous, generations and checkpoint bookkeeping.
//
// The decision logic is a pure state machine, Rendezvous, with no network
// and no clock: workers join (with their data-plane and gossip addresses and
// a configuration fingerprint), leave or are declared dead, and report step
// boundaries, progress, errors and checkpoints; every membership decision
// stamps a new Generation with a monotonic number, the ring order (survivors
// keep their relative order, newcomers are appended), the action (run, pause
// or stop) and the state the generation starts from (fresh, a checkpoint, or
// a broadcast from the lowest surviving rank).
//
// Server wraps the machine in a gRPC service (package coordinatorpb), drives
// its timeouts with a clock, and listens to memberlist gossip: a node that
// gossip declares dead or left, or whose Watch stream breaks and does not
// come back within WatchGrace, is removed. Client is the worker's side: it
// joins, watches assignments, reports and reconnects with exponential
// back-off. StartGossip runs the memberlist node a worker shares with the
// coordinator.
//
// The package knows nothing of models or tensors: a run's configuration is
// opaque bytes, and its fingerprint is a map of named strings.
//
// # Protocol of a worker
//
//  1. Dial the coordinator and Join; the returned id is also the worker's
//     memberlist node name (StartGossip with the returned seeds).
//  2. NextAssignment (or Watch) for the first generation; act on it:
//     ActionRun trains with the given rank and ring from Start at StartStep,
//     ActionPause holds the state, ActionStop ends (after a checkpoint when
//     CheckpointBeforeStop).
//  3. Report the step boundaries reached as Boundary (the worker does it
//     every second, and at once when the coordinator asks, from a
//     goroutine beside its training loop); when a
//     reply or the control stream names a newer generation, stop before
//     the next step and take the new assignment. This is how waiting
//     workers are admitted without losing a step.
//  4. Report Progress, CommitCheckpoint after each saved checkpoint, Leave
//     at the end.
//
// A worker the coordinator no longer knows (it was declared dead, or the
// coordinator restarted) gets ErrUnknownWorker and joins again, announcing
// in JoinRequest.Held the state it still holds (its step, the newest
// generation it ran, its job); it then enters like any newcomer, at a step
// boundary.
//
// # A restarted coordinator
//
// The coordinator keeps no state on disk: a restarted one rebuilds the run
// from its workers and the checkpoint directory. Workers go on training
// while it is away (the data plane does not need it; the reports they make
// between steps are single attempts under NoRetry), reconnect with
// back-off, learn that their ids are unknown, and join again with their
// held state. Ids carry a tag of the coordinator's start time, so the new
// ids (which are also gossip node names) never collide with the old ones.
// The first generation of the new coordinator is numbered above every
// generation its workers ran (a worker's data plane refuses an older
// generation), and starts by broadcast from the worker holding the most
// advanced state, unless the latest checkpoint (Config.Resume) is newer. A
// worker that finished the training while the coordinator was away keeps
// waiting until the new coordinator acknowledges the end (Finish from a
// stale generation is refused with ErrStaleGeneration).
//
// An error that every rank meets at the same step (too many non-finite
// steps in a row) is reported with Abort: the run stops at once.
//
// # Failure detection
//
// Three signals remove a worker: memberlist declares its node dead or left,
// its Watch stream stays closed for WatchGrace (the server pings idle
// connections every Keepalive, the client every ClientKeepalive, so a
// half-open connection is noticed), or it reports a fatal error. After a
// kill -9 the stream breaks at once, so WatchGrace bounds the detection.
// Whatever the signal, the survivors get the same new generation.
package coordinator
