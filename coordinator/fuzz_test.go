package coordinator

import (
	"fmt"
	"net"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/infonce/infonce/coordinator/coordinatorpb"
)

// FuzzJoinRequest feeds arbitrary bytes, as a peer could send them, through
// the decoder and into the machine: nothing panics, refusals are errors,
// and an admitted worker is well-formed.
func FuzzJoinRequest(f *testing.F) {
	for _, m := range []*pb.JoinRequest{
		joinToPB(JoinRequest{Name: "a", DataAddr: "127.0.0.1:1", Fingerprint: fpA}),
		{ProtocolVersion: 2, DataAddr: "x"},
		{ProtocolVersion: ProtocolVersion},
		{ProtocolVersion: ProtocolVersion, DataAddr: "0000"}, // not host:port, without a fingerprint
	} {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m pb.JoinRequest
		if err := proto.Unmarshal(b, &m); err != nil {
			return
		}
		req, err := joinFromPB(&m)
		if err != nil {
			return
		}
		r, _ := NewRendezvous(RendezvousConfig{MinWorkers: 1, MaxWorkers: 2, Fingerprint: fpA}, t0)
		id, err := r.Join(t0, req)
		if err != nil {
			return
		}
		// Admitted: a data address of host:port, and the run's
		// fingerprint, or none (the worker then takes the run's).
		if _, _, err := net.SplitHostPort(req.DataAddr); err != nil || len(req.Fingerprint) > 0 && len(fpA.Diff(req.Fingerprint)) != 0 {
			t.Fatalf("admitted %+v", req)
		}
		a, err := r.Assignment(id)
		if err != nil || a.Rank != 0 || a.Peers[0] != req.DataAddr {
			t.Fatalf("assignment %+v %v", a, err)
		}
	})
}

// FuzzAssignment checks the worker-side decoder: whatever a coordinator
// sends, an accepted assignment is internally consistent.
func FuzzAssignment(f *testing.F) {
	good := assignmentToPB(Assignment{Generation: 3, Action: ActionRun, Rank: 1, World: 2,
		Peers: []string{"a:1", "b:2"}, PeerIDs: []string{"w1", "w2"}, Start: State{Kind: StartBroadcast}, StartStep: 9})
	b, _ := proto.Marshal(good)
	f.Add(b)
	b, _ = proto.Marshal(&pb.Assignment{Generation: 1, Action: pb.Action_ACTION_STOP, Rank: -1,
		Start: &pb.StartState{Kind: pb.StartKind_START_KIND_CHECKPOINT, CheckpointPath: "/c"}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var m pb.Assignment
		if err := proto.Unmarshal(b, &m); err != nil {
			return
		}
		a, err := assignmentFromPB(&m)
		if err != nil {
			return
		}
		if a.Generation == 0 || a.World != len(a.Peers) || a.Rank >= a.World || a.Rank < -1 || a.StartStep < 0 {
			t.Fatalf("accepted %+v", a)
		}
		if a.Start.Kind == StartBroadcast && (a.Start.SourceRank < 0 || a.Start.SourceRank >= a.World) {
			t.Fatalf("accepted %+v", a)
		}
		back, err := assignmentFromPB(assignmentToPB(a))
		if err != nil || fmt.Sprint(back) != fmt.Sprint(a) {
			t.Fatalf("round trip %+v -> %+v (%v)", a, back, err)
		}
	})
}

// FuzzRendezvous drives the machine with arbitrary event sequences and
// checks its invariants after every event.
func FuzzRendezvous(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 2, 3, 4, 5, 6, 7})
	f.Add([]byte{0, 0, 0, 0, 0x12, 0x23, 3, 0, 0x45, 5, 5, 5})
	f.Fuzz(func(t *testing.T, ops []byte) {
		cfg := RendezvousConfig{MinWorkers: 2, MaxWorkers: 3, JoinTimeout: 10 * time.Second,
			JoinSettle: time.Second, RendezvousTimeout: 5 * time.Second, Fingerprint: fpA}
		r, _ := NewRendezvous(cfg, t0)
		now := t0
		joined := 0
		var lastGen uint64
		for _, op := range ops {
			who := fmt.Sprintf("w%d", 1+int(op>>4)%(joined+1))
			g, _ := r.Current()
			switch op & 0x7 {
			case 0:
				joined++
				_, _ = r.Join(now, JoinRequest{DataAddr: fmt.Sprintf("h%d:1", joined), Fingerprint: fpA})
			case 1:
				_ = r.Leave(now, who, "")
			case 2:
				_ = r.Dead(now, who, "")
			case 3:
				_ = r.Boundary(now, who, g.Number, int64(op))
			case 4:
				_ = r.Progress(now, who, g.Number, Progress{Step: int64(op)})
			case 5:
				now = now.Add(time.Duration(op) * 50 * time.Millisecond)
				r.Tick(now)
			case 6:
				_ = r.CommitCheckpoint(now, who, g.Number, int64(op), "/c")
			case 7:
				if op > 0xf0 {
					_ = r.Finish(now, who, g.Number, int64(op))
				}
			}
			checkInvariants(t, r, cfg, &lastGen)
		}
	})
}

func checkInvariants(t *testing.T, r *Rendezvous, cfg RendezvousConfig, lastGen *uint64) {
	t.Helper()
	g, ok := r.Current()
	if ok && g.Number < *lastGen {
		t.Fatalf("generation went back from %d to %d", *lastGen, g.Number)
	}
	if ok {
		*lastGen = g.Number
	}
	gens := r.Generations()
	for i := 1; i < len(gens); i++ {
		if gens[i].Number != gens[i-1].Number+1 {
			t.Fatalf("generations %d then %d", gens[i-1].Number, gens[i].Number)
		}
	}
	active, _ := r.Size()
	if active > cfg.MaxWorkers {
		t.Fatalf("%d active workers, MaxWorkers %d", active, cfg.MaxWorkers)
	}
	if r.Phase() == PhaseRunning && (len(g.Members) < cfg.MinWorkers || g.Action != ActionRun) {
		t.Fatalf("running with %+v", g)
	}
	seen := map[string]bool{}
	for i, id := range g.Members {
		if seen[id] {
			t.Fatalf("%s twice in %v", id, g.Members)
		}
		seen[id] = true
		if !r.Present(id) {
			continue // departed after the generation (possible only when stopped)
		}
		a, err := r.Assignment(id)
		if err != nil || a.Rank != i || a.Generation != g.Number {
			t.Fatalf("%s: assignment %+v %v in %+v", id, a, err, g)
		}
	}
	if r.Phase() != PhaseStopped && len(g.Members) != active && ok {
		t.Fatalf("ring %v but %d active", g.Members, active)
	}
	if g.Start.Kind == StartBroadcast && (g.Start.SourceRank < 0 || g.Start.SourceRank >= len(g.Members)) {
		t.Fatalf("broadcast from rank %d of %d", g.Start.SourceRank, len(g.Members))
	}
}
