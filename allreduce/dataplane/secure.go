package dataplane

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/infonce/infonce/allreduce"
)

// Data-plane admission. When a Server has a token or TLS, every connection
// starts (inside TLS when configured) with a challenge and response before
// the transport's own preface:
//
//	dialer -> listener: "IAUT"
//	listener -> dialer: nonce (32 random bytes)
//	dialer -> listener: HMAC-SHA256(token, authContext || nonce) (32 bytes)
//	listener -> dialer: status u8 (0 admitted, 1 refused)
//
// The token never crosses the wire and a recorded answer is useless for
// another connection. The exchange also confirms a TLS 1.3 handshake in
// both directions (a listener that rejects the dialer's certificate only
// says so after the dialer's handshake has returned).
const (
	authNonceBytes = 32
	authMACBytes   = sha256.Size
	authAdmitted   = 0
	authRefused    = 1
	// admitTimeout bounds a new connection's TLS handshake, admission
	// and preface: a silent client is dropped after it.
	admitTimeout = 10 * time.Second
)

var (
	authMagic   = [4]byte{'I', 'A', 'U', 'T'}
	authContext = []byte("infonce data plane v1")
)

// authMAC is the answer to nonce for token.
func authMAC(token string, nonce []byte) []byte {
	m := hmac.New(sha256.New, []byte(token))
	m.Write(authContext)
	m.Write(nonce)
	return m.Sum(nil)
}

// WithToken makes the server admit only connections that prove they hold
// token (see Config.Token for the dialing side).
func WithToken(token string) ServerOption {
	return func(s *Server) { s.sec.token = token }
}

// WithTLS serves every connection over TLS with cfg (which holds the
// server's certificate; with ClientAuth set to
// tls.RequireAndVerifyClientCert, peers must present a certificate signed
// by cfg.ClientCAs). The plain TCP transport is not served over TLS.
func WithTLS(cfg *tls.Config) ServerOption {
	return func(s *Server) { s.sec.tls = cfg }
}

// serverSecurity is a Server's admission settings.
type serverSecurity struct {
	token string
	tls   *tls.Config
}

func (s serverSecurity) on() bool { return s.token != "" || s.tls != nil }

// admit runs TLS and the token exchange on a new connection and returns it
// (wrapped in TLS when configured) with its first four bytes after
// admission. ok is false when the connection was refused and closed.
func (s *Server) admit(c net.Conn) (conn net.Conn, head [4]byte, ok bool) {
	refuse := func(what string, err error) (net.Conn, [4]byte, bool) {
		s.logger.Warn("allreduce: refused a connection", "remote", c.RemoteAddr().String(), "reason", what, "err", err)
		c.Close()
		return nil, head, false
	}
	c.SetDeadline(time.Now().Add(admitTimeout))
	if s.sec.tls != nil {
		tc := tls.Server(c, s.sec.tls)
		ctx, cancel := context.WithTimeout(context.Background(), admitTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			return refuse("TLS handshake failed", err)
		}
		c = tc
	}
	if _, err := io.ReadFull(c, head[:]); err != nil {
		if s.sec.on() {
			return refuse("no admission request", err)
		}
		c.Close()
		return nil, head, false
	}
	if head == authMagic {
		if err := s.challenge(c); err != nil {
			return refuse("token check", err)
		}
		if _, err := io.ReadFull(c, head[:]); err != nil {
			c.Close()
			return nil, head, false
		}
	} else if s.sec.on() {
		return refuse("no admission request", fmt.Errorf("first bytes %q: the dialer has no token or TLS", head[:]))
	}
	c.SetDeadline(time.Time{})
	return c, head, true
}

// challenge sends a nonce and checks the answer; a server without a token
// admits any answer (the dialer has a token the server does not need).
func (s *Server) challenge(c net.Conn) error {
	var nonce [authNonceBytes]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return fmt.Errorf("nonce: %w", err)
	}
	if _, err := c.Write(nonce[:]); err != nil {
		return fmt.Errorf("send nonce: %w", err)
	}
	var mac [authMACBytes]byte
	if _, err := io.ReadFull(c, mac[:]); err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if s.sec.token != "" && !hmac.Equal(mac[:], authMAC(s.sec.token, nonce[:])) {
		_, _ = c.Write([]byte{authRefused})
		return errors.New("wrong token")
	}
	if _, err := c.Write([]byte{authAdmitted}); err != nil {
		return fmt.Errorf("send status: %w", err)
	}
	return nil
}

// dialConn opens a connection to addr: TCP, TLS when c.TLS is set, and the
// token exchange when c.TLS or c.Token is set. An error wrapping
// allreduce.ErrUnauthenticated means the listener refused this dialer's token or
// certificate (or this dialer refused the listener's); it is not worth a
// retry.
func dialConn(ctx context.Context, c allreduce.Config, addr string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if c.TLS == nil && c.Token == "" {
		return conn, nil
	}
	fail := func(err error) (net.Conn, error) {
		conn.Close()
		return nil, err
	}
	if c.TLS != nil {
		cfg := c.TLS.Clone()
		if cfg.ServerName == "" {
			host, _, _ := net.SplitHostPort(addr)
			cfg.ServerName = host
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail(fmt.Errorf("%w: TLS handshake with %s: %v (check --tls-cert and --tls-ca)", allreduce.ErrUnauthenticated, addr, err))
		}
		conn = tc
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	lost := func(what string, err error) (net.Conn, error) {
		if strings.Contains(err.Error(), "tls:") {
			return fail(fmt.Errorf("%w: %s refused this worker's certificate: %v (check --tls-cert and --tls-ca)", allreduce.ErrUnauthenticated, addr, err))
		}
		if errors.Is(err, io.EOF) {
			return fail(fmt.Errorf("%w: %s closed the connection during admission (it may have a token or TLS setting that differs)", allreduce.ErrPeerLost, addr))
		}
		return fail(fmt.Errorf("%w: %s with %s: %v", allreduce.ErrPeerLost, what, addr, err))
	}
	if _, err := conn.Write(authMagic[:]); err != nil {
		return lost("admission request", err)
	}
	var nonce [authNonceBytes]byte
	if _, err := io.ReadFull(conn, nonce[:]); err != nil {
		return lost("reading the nonce", err)
	}
	if _, err := conn.Write(authMAC(c.Token, nonce[:])); err != nil {
		return lost("sending the answer", err)
	}
	var st [1]byte
	if _, err := io.ReadFull(conn, st[:]); err != nil && !errors.Is(err, io.EOF) {
		return lost("reading the admission", err)
	}
	if st[0] != authAdmitted {
		return fail(fmt.Errorf("%w: %s refused this worker's token: start every worker with the run's --token", allreduce.ErrUnauthenticated, addr))
	}
	if !stop() {
		return fail(fmt.Errorf("%w: connecting to %s: %v", allreduce.ErrDeadline, addr, ctx.Err()))
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}
