// Package worker is the training loop of one rank, where the other packages
// meet: it samples the rank's slice of the global batch (dataset), encodes
// it (model), computes the rank's share of the global contrastive loss and
// the exact gradient of its embeddings (contrastive), runs backward,
// sums the gradients over the ranks (a Comm, which is the ring all-reduce
// in a distributed run and a no-op on one process), and takes an identical
// optimizer step (optim).
//
// One step is DESIGN's data flow:
//
//	1 sample   (seed, epoch, step) → global batch → rows R_k of this rank
//	2 encode   u_i = f(x_i), v_i = g(y_i), L2-normalised, i ∈ R_k
//	3 gather   U, V of the global batch
//	4 loss     L on the global batch, dL/du_i, dL/dv_i for i ∈ R_k, dL/dt
//	5 backward into the flat gradient buffer
//	6 reduce   Σ over ranks (each share is normalised by the global B)
//	7 step     the same update on every rank
//
// # Objectives
//
// The loss of step 4 is an Objective: it lists the named views it needs
// (ViewSpec: "image", "image2", "text", with the tower that encodes each
// and the augmentation that builds it) and computes its share of the loss
// and the gradient of the local embeddings through the collective it is
// given. Step builds the views from the samples' fields, runs each tower
// once over the rows of its views, calls Loss, and runs each tower's
// backward pass with the gradient. State of an objective's own (MoCo's
// key encoder and queue) comes through optional interfaces and goes into
// checkpoints. CLIP, SimCLR and MoCo are registered in objective_*.go; a
// new objective is one type and one RegisterObjective call, after which
// --objective accepts its name (objective_test.go registers one of its
// own and trains it on 1 and 3 ranks).
//
// In a ring of more than one rank, step 1 of the next step runs ahead in
// the waits of this one: the input rows are a pure function of (seed,
// step, sample), and the data plane hands its idle polls to
// Trainer.PrefetchSome, which draws a few rows at a time into a spare
// buffer that the next step takes (prefetch.go).
//
// RunMember is one worker of a distributed run. Its decisions across
// generations (which assignment to take, when a generation ends, who saves
// a checkpoint and when, when to report to the coordinator, what to
// announce on a re-join) are the state machine of package membership,
// without I/O; member.go is the loop that feeds it events and does what it
// answers, beside the control plane (member_control.go, member_report.go),
// the start state (member_state.go), the checkpoints (member_checkpoint.go)
// and the parameter checksums (checksum.go). Faults for the reliability
// tests come through Options.Faults and MemberOptions.Faults, or, in a
// binary built with the faultinject tag only, from environment variables
// (fault.go).
//
// The package also evaluates a trained model (zero-shot accuracy, retrieval,
// linear probes, alignment and uniformity) and writes the run's
// metrics.jsonl and summary.json.
package worker
