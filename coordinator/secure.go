package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// Bounds of the control plane. Its messages are small (the largest is an
// assignment carrying the run configuration), so a peer that sends more
// is broken or hostile.
const (
	// MaxMessageBytes bounds every gRPC message the coordinator receives
	// or sends.
	MaxMessageBytes = 4 << 20
	// maxStreams bounds the concurrent calls on one connection.
	maxStreams = 64
)

// ErrTLS reports a TLS handshake the coordinator or this client refused:
// a certificate not signed by the expected CA, a missing client
// certificate, or TLS on one side only. Retrying does not help.
var ErrTLS = errors.New("TLS handshake with the coordinator failed")

// hardening returns the server options that bound messages and add TLS.
func hardening(cfg Config) []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxMessageBytes),
		grpc.MaxSendMsgSize(MaxMessageBytes),
		grpc.MaxConcurrentStreams(maxStreams),
	}
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.TLS)))
	}
	return opts
}

// tlsRefusal returns an ErrTLS error when err, an Unavailable status, comes
// from a TLS handshake that either side refused rather than from an
// unreachable coordinator. A handshake that merely timed out or lost its
// connection is not a refusal: it is retried like any unavailability.
func tlsRefusal(err error) error {
	msg := status.Convert(err).Message()
	for _, sign := range []string{"tls: ", "x509: "} {
		if strings.Contains(msg, sign) {
			return fmt.Errorf("%w: %s (check --tls-cert, --tls-key and --tls-ca on both sides)", ErrTLS, msg)
		}
	}
	return nil
}

// WithTLS makes the client speak TLS with cfg (its certificate, and the CA
// it trusts for the coordinator's).
//
// Under TLS 1.3 the client's side of the handshake ends before the
// coordinator has checked the client's certificate. A coordinator that
// refuses it sends its alert and closes, and the client, already writing,
// may see only a broken pipe or a reset: an unreachable coordinator as far
// as it can tell, which it retries until its context ends. So the
// handshake here also waits for the coordinator's first bytes (a gRPC
// server sends its settings as soon as its handshake succeeded) and reads
// the alert instead when there is one, so that a refused certificate
// fails the call at once with ErrTLS.
func WithTLS(cfg *tls.Config) ClientOption {
	return WithDialOptions(grpc.WithTransportCredentials(confirmedTLS{credentials.NewTLS(cfg)}))
}

// confirmTimeout bounds the wait for the coordinator's first bytes when the
// handshake's context has no deadline.
const confirmTimeout = 20 * time.Second

// confirmedTLS is TLS whose client handshake ends once the server has
// accepted it (WithTLS).
type confirmedTLS struct {
	credentials.TransportCredentials
}

// ClientHandshake runs the TLS handshake, then reads until the server's
// first bytes arrive; they are handed to gRPC by the returned connection.
func (c confirmedTLS) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, raw)
	if err != nil {
		return nil, nil, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(confirmTimeout)
	}
	first := make([]byte, 512)
	n, err := readBefore(conn, deadline, first)
	if n == 0 {
		conn.Close()
		return nil, nil, fmt.Errorf("waiting for the coordinator's first bytes after the TLS handshake: %w", err)
	}
	return &prefixConn{Conn: conn, prefix: first[:n]}, info, nil
}

// readBefore reads into b with a deadline, which it clears again.
func readBefore(conn net.Conn, deadline time.Time, b []byte) (int, error) {
	if err := conn.SetReadDeadline(deadline); err != nil {
		return 0, err
	}
	n, err := conn.Read(b)
	if derr := conn.SetReadDeadline(time.Time{}); err == nil {
		err = derr
	}
	return n, err
}

// Clone returns a copy.
func (c confirmedTLS) Clone() credentials.TransportCredentials {
	return confirmedTLS{c.TransportCredentials.Clone()}
}

// prefixConn is a connection whose first reads return prefix, bytes
// already read from it.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}
