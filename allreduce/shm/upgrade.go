package shm

import (
	"context"
	"fmt"
	"net"

	"github.com/infonce/infonce/allreduce"
)

// shmOfferBytes is one rank's record in the all-gather of offers: the
// length of the segment's file name, the name, and at shmOfferBytes−16 the
// nonce. A zero record offers nothing.
const shmOfferBytes = 80

// Upgrade moves the links of a new TCP ring whose two ends share a host
// onto shared memory. Every rank creates the segment of its link to the
// right neighbour and offers it in an all-gather; every rank opens the
// segment its left neighbour offered, and an all-gather of the outcomes
// tells both ends of each link whether it moves: a link between two hosts
// (or two containers with their own /dev/shm) stays on TCP. Every rank of
// a TCP ring takes part; a rank that is not enabled (TransportTCP) offers
// and opens nothing, so its links stay on TCP whatever the others chose.
// The segments' files are removed once the all-gathers are over; the
// mappings live until the links close. It fails only when the ring itself
// does.
//
// outConn and inConn are the connections of the rank's TCP links to the
// right and from the left, nil where a link is not plain TCP (they stay
// open beside a moved link, to tell when the other process is gone); offer says whether this rank creates and offers the segment of its
// link to the right, open whether it opens its left neighbour's. It
// returns the shared-memory halves that replace the TCP ones (nil where a
// link stays on TCP).
func Upgrade(ctx context.Context, r *allreduce.Ring, outConn, inConn net.Conn, offer, open bool) (*Out, *In, error) {
	k, rank := r.Size(), r.Rank()
	cfg := r.Config()
	left, right := (rank+k-1)%k, (rank+1)%k
	okOut, okIn := outConn != nil && offer, inConn != nil && offer

	var rec [shmOfferBytes]byte
	var mine *shmSeg
	if okOut && okIn {
		seg, name, nonce, err := createShm(shmDir)
		if err == nil && len(name) < shmOfferBytes-17 {
			mine = seg
			rec[0] = byte(len(name))
			copy(rec[1:], name)
			copy(rec[shmOfferBytes-16:], nonce[:])
		} else if err == nil {
			seg.unlink()
			seg.unmap()
		} else {
			cfg.Logger.Debug("allreduce: no shared-memory segment", "err", err)
		}
	}
	drop := func(s *shmSeg) {
		if s != nil {
			s.unlink()
			s.unmap()
		}
	}
	offers, err := gatherRecords(ctx, r, rec[:])
	if err != nil {
		drop(mine)
		return nil, nil, fmt.Errorf("shared-memory offers: %w", err)
	}
	var theirs *shmSeg
	if name, nonce, ok := parseShmOffer(offers[left*shmOfferBytes : (left+1)*shmOfferBytes]); okIn && open && ok {
		seg, err := openShm(name, nonce)
		if err == nil {
			theirs = seg
		} else {
			cfg.Logger.Debug("allreduce: the left neighbour's segment cannot be opened here; the link stays on TCP", "err", err)
		}
	}
	var opened [1]byte
	if theirs != nil {
		opened[0] = 1
	}
	all, err := gatherRecords(ctx, r, opened[:])
	if mine != nil {
		mine.unlink() // the right neighbour has it mapped, or never will
	}
	if err != nil {
		drop(mine)
		drop(theirs)
		return nil, nil, fmt.Errorf("shared-memory answers: %w", err)
	}
	ownCores := k <= machineCores()
	var out *Out
	var in *In
	if mine != nil && all[right] == 1 {
		out = shmOutLink(mine, outConn, ownCores, cfg.OnWait)
	} else {
		drop(mine)
	}
	if theirs != nil {
		in = shmInLink(theirs, inConn, ownCores, cfg.OnWait)
	}
	cfg.Logger.Debug("allreduce: links", "rank", rank, "out_shm", out != nil, "in_shm", in != nil)
	return out, in, nil
}

// gatherRecords all-gathers one record of len(rec) bytes from every rank:
// rank i's is at [i·len(rec), (i+1)·len(rec)) of the result.
func gatherRecords(ctx context.Context, r *allreduce.Ring, rec []byte) ([]byte, error) {
	counts := make([]int, r.Size())
	for i := range counts {
		counts[i] = len(rec)
	}
	all := make([]byte, r.Size()*len(rec))
	return all, r.AllGather(ctx, rec, all, counts)
}

// parseShmOffer decodes a peer's offer record; ok is false for an empty or
// malformed one. openShm checks the name further.
func parseShmOffer(rec []byte) (name string, nonce [16]byte, ok bool) {
	if len(rec) != shmOfferBytes || rec[0] == 0 || int(rec[0]) > shmOfferBytes-17 {
		return "", nonce, false
	}
	copy(nonce[:], rec[shmOfferBytes-16:])
	return string(rec[1 : 1+rec[0]]), nonce, true
}
