package link

import (
	"context"
	"fmt"
	"sync"

	"github.com/infonce/infonce/allreduce"
)

// InLink is the receiving half of a network link, from the left
// neighbour.
type InLink interface {
	Recv(ctx context.Context, dst []byte) (tag uint64, n int, err error)
	Close()
}

// Refusal is the Server's decision on an incoming link; Code 0 accepts.
type Refusal struct {
	Code   uint8
	Reason string
}

// Inbound is an incoming link whose handshake has been read.
type Inbound struct {
	Hello    Handshake
	Link     InLink
	decision chan Refusal // buffered; receives exactly one decision
	once     sync.Once
}

// NewInbound is the link in offered with hello.
func NewInbound(hello Handshake, in InLink) *Inbound {
	return &Inbound{Hello: hello, Link: in, decision: make(chan Refusal, 1)}
}

// Decide records the decision on the link; only the first one counts.
func (in *Inbound) Decide(r Refusal) { in.once.Do(func() { in.decision <- r }) }

// Decision is the channel on which the decision arrives.
func (in *Inbound) Decision() <-chan Refusal { return in.decision }

// Offer submits an incoming link to the Server and returns its decision,
// waiting while the link is parked for a generation not yet started.
type Offer func(ctx context.Context, in *Inbound) Refusal

// Reply is the handshake answering hello with decision r.
func Reply(hello Handshake, r Refusal) Handshake {
	h := Handshake{Version: ProtocolVersion, Kind: AcceptKind, Generation: hello.Generation, From: hello.From, To: hello.To, Size: hello.Size, JobID: hello.JobID}
	if r.Code != CodeNone {
		h.Kind, h.Code, h.Reason = RefuseKind, r.Code, r.Reason
	}
	return h
}

// CheckReply decodes a handshake reply and turns a refusal into an error.
func CheckReply(b []byte, addr string) error {
	h, err := DecodeHandshake(b)
	if err != nil {
		return fmt.Errorf("%w: reply from %s: %v", allreduce.ErrHandshake, addr, err)
	}
	switch h.Kind {
	case AcceptKind:
		return nil
	case RefuseKind:
		if h.Code == CodeGeneration {
			return fmt.Errorf("%w: %s refused the link: %s", allreduce.ErrGeneration, addr, h.Reason)
		}
		return fmt.Errorf("%w: %s refused the link: %s", allreduce.ErrHandshake, addr, h.Reason)
	}
	return fmt.Errorf("%w: reply of kind %d from %s", allreduce.ErrHandshake, h.Kind, addr)
}
