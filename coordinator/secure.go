package coordinator

import (
	"errors"
	"fmt"
	"strings"

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
// from a failed TLS handshake rather than from an unreachable coordinator.
func tlsRefusal(err error) error {
	msg := status.Convert(err).Message()
	for _, sign := range []string{"authentication handshake failed", "tls: ", "first record does not look like a TLS handshake"} {
		if strings.Contains(msg, sign) {
			return fmt.Errorf("%w: %s (check --tls-cert, --tls-key and --tls-ca on both sides)", ErrTLS, msg)
		}
	}
	return nil
}
