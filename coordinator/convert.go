package coordinator

import (
	"fmt"

	pb "github.com/infonce/infonce/coordinator/coordinatorpb"
)

// Limits on what a peer may send, checked before anything is stored.
const (
	maxFingerprintFields = 64
	maxStringLen         = 4096
)

func joinFromPB(m *pb.JoinRequest) (JoinRequest, error) {
	if m.GetProtocolVersion() != ProtocolVersion {
		return JoinRequest{}, fmt.Errorf("%w: worker speaks version %d, coordinator speaks %d: run the same infonce release everywhere",
			ErrProtocolVersion, m.GetProtocolVersion(), ProtocolVersion)
	}
	if len(m.GetFingerprint()) > maxFingerprintFields {
		return JoinRequest{}, fmt.Errorf("%w: fingerprint has %d fields (at most %d)", ErrBadRequest, len(m.GetFingerprint()), maxFingerprintFields)
	}
	for _, s := range []struct{ what, v string }{
		{"name", m.GetName()}, {"data address", m.GetDataAddr()}, {"gossip address", m.GetGossipAddr()},
	} {
		if len(s.v) > maxStringLen {
			return JoinRequest{}, fmt.Errorf("%w: %s is %d bytes long (at most %d)", ErrBadRequest, s.what, len(s.v), maxStringLen)
		}
	}
	var fp Fingerprint
	if len(m.GetFingerprint()) > 0 {
		fp = make(Fingerprint, len(m.GetFingerprint()))
		for k, v := range m.GetFingerprint() {
			if len(k) > maxStringLen || len(v) > maxStringLen {
				return JoinRequest{}, fmt.Errorf("%w: fingerprint field %.40q too long", ErrBadRequest, k)
			}
			fp[k] = v
		}
	}
	req := JoinRequest{Name: m.GetName(), DataAddr: m.GetDataAddr(), GossipAddr: m.GetGossipAddr(), Fingerprint: fp}
	if h := m.GetHeld(); h != nil {
		if len(h.GetJobId()) > maxStringLen {
			return JoinRequest{}, fmt.Errorf("%w: held state's job id is %d bytes long (at most %d)", ErrBadRequest, len(h.GetJobId()), maxStringLen)
		}
		req.Held = &HeldState{Step: h.GetStep(), Generation: h.GetGeneration(), JobID: h.GetJobId()}
	}
	return req, nil
}

func joinToPB(r JoinRequest) *pb.JoinRequest {
	m := &pb.JoinRequest{
		ProtocolVersion: ProtocolVersion,
		Name:            r.Name,
		DataAddr:        r.DataAddr,
		GossipAddr:      r.GossipAddr,
		Fingerprint:     r.Fingerprint,
	}
	if h := r.Held; h != nil {
		m.Held = &pb.HeldState{Step: h.Step, Generation: h.Generation, JobId: h.JobID}
	}
	return m
}

func assignmentToPB(a Assignment) *pb.Assignment {
	return &pb.Assignment{
		Generation:           a.Generation,
		Action:               pb.Action(a.Action),
		Rank:                 int32(a.Rank),
		WorldSize:            int32(a.World),
		Peers:                a.Peers,
		PeerIds:              a.PeerIDs,
		JobId:                a.JobID,
		RunConfig:            a.Config,
		Start:                &pb.StartState{Kind: pb.StartKind(a.Start.Kind), CheckpointPath: a.Start.CheckpointPath, SourceRank: int32(a.Start.SourceRank)},
		StartStep:            a.StartStep,
		Reason:               a.Reason,
		CheckpointBeforeStop: a.CheckpointBeforeStop,
	}
}

// assignmentFromPB checks what a coordinator sent before a worker acts on
// it.
func assignmentFromPB(m *pb.Assignment) (Assignment, error) {
	a := Assignment{
		Generation:           m.GetGeneration(),
		Action:               Action(m.GetAction()),
		Rank:                 int(m.GetRank()),
		World:                int(m.GetWorldSize()),
		Peers:                m.GetPeers(),
		PeerIDs:              m.GetPeerIds(),
		JobID:                m.GetJobId(),
		Config:               m.GetRunConfig(),
		Start:                State{Kind: StartKind(m.GetStart().GetKind()), CheckpointPath: m.GetStart().GetCheckpointPath(), SourceRank: int(m.GetStart().GetSourceRank())},
		StartStep:            m.GetStartStep(),
		Reason:               m.GetReason(),
		CheckpointBeforeStop: m.GetCheckpointBeforeStop(),
	}
	bad := func(format string, args ...any) (Assignment, error) {
		return Assignment{}, fmt.Errorf("invalid assignment for generation %d: %s", a.Generation, fmt.Sprintf(format, args...))
	}
	if a.Generation == 0 {
		return bad("generation 0")
	}
	if a.Action < ActionRun || a.Action > ActionStop {
		return bad("unknown action %d", a.Action)
	}
	if a.World != len(a.Peers) || len(a.PeerIDs) != len(a.Peers) {
		return bad("world size %d with %d peers and %d peer ids", a.World, len(a.Peers), len(a.PeerIDs))
	}
	if a.Rank < -1 || a.Rank >= a.World || (a.Rank == -1 && a.Action != ActionStop) {
		return bad("rank %d in world %d for action %v", a.Rank, a.World, a.Action)
	}
	if a.StartStep < 0 {
		return bad("negative start step %d", a.StartStep)
	}
	switch a.Start.Kind {
	case StartFresh:
	case StartCheckpoint:
		if a.Start.CheckpointPath == "" {
			return bad("checkpoint start without a path")
		}
	case StartBroadcast:
		if a.Start.SourceRank < 0 || a.Start.SourceRank >= a.World {
			return bad("broadcast from rank %d in world %d", a.Start.SourceRank, a.World)
		}
	default:
		return bad("unknown start kind %d", a.Start.Kind)
	}
	return a, nil
}
