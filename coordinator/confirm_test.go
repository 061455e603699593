package coordinator

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/infonce/infonce/internal/tlstest"
)

// TestConfirmedTLSHandshake: the client handshake of WithTLS ends with the
// server's first bytes, which the connection then returns in order; a
// server that refuses the client's certificate after the client's half of
// a TLS 1.3 handshake fails it with the server's alert, a refusal; a
// server that accepts but stays silent fails it at the deadline, which is
// not a refusal and is retried.
func TestConfirmedTLSHandshake(t *testing.T) {
	defer checkNoLeaks(t)()
	ca, other := tlstest.NewCA(t, "run CA"), tlstest.NewCA(t, "other CA")
	srvCfg := tlstest.ServerConfig(ca.Issue(t, "coordinator"), ca)
	srvCfg.MinVersion = tls.VersionTLS13
	srvCfg.NextProtos = []string{"h2"} // gRPC clients insist on ALPN
	greeting := []byte("settings frame")
	for _, tc := range []struct {
		name    string
		client  tlstest.Pair
		greet   bool // the server writes greeting after its handshake
		timeout time.Duration
		wantErr bool
		refusal bool // the error is a TLS refusal (ErrTLS)
	}{
		{name: "accepted", client: ca.Issue(t, "w"), greet: true, timeout: 10 * time.Second},
		{name: "certificate of another CA", client: other.Issue(t, "x"), greet: true, timeout: 10 * time.Second, wantErr: true, refusal: true},
		{name: "silent server", client: ca.Issue(t, "w"), timeout: 300 * time.Millisecond, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			served := make(chan error, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					served <- err
					return
				}
				sc := tls.Server(c, srvCfg)
				defer sc.Close()
				if err := sc.Handshake(); err != nil {
					served <- nil // the refusal: its alert went out
					return
				}
				if tc.greet {
					if _, err := sc.Write(greeting); err != nil {
						served <- err
						return
					}
				}
				_, err = io.Copy(io.Discard, sc) // until the client closes
				served <- err
			}()

			raw, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			creds := confirmedTLS{credentials.NewTLS(tlstest.ClientConfig(tc.client, ca))}
			conn, _, err := creds.ClientHandshake(ctx, ln.Addr().String(), raw)
			if tc.wantErr {
				raw.Close()
				if err == nil {
					conn.Close()
					t.Fatal("the handshake succeeded")
				}
				// gRPC reports a failed handshake as Unavailable, with
				// this prefix before the error.
				st := status.Error(codes.Unavailable, "connection error: desc = \"transport: authentication handshake failed: "+err.Error()+"\"")
				if got := errors.Is(tlsRefusal(st), ErrTLS); got != tc.refusal {
					t.Errorf("handshake error %q: taken as a TLS refusal: %v, want %v", err, got, tc.refusal)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				// Read in pieces smaller than what the handshake read ahead.
				var got bytes.Buffer
				piece := make([]byte, 3)
				for got.Len() < len(greeting) {
					n, err := conn.Read(piece)
					got.Write(piece[:n])
					if err != nil {
						t.Fatal(err)
					}
				}
				if !bytes.Equal(got.Bytes(), greeting) {
					t.Errorf("read %q after the handshake, want %q", got.Bytes(), greeting)
				}
				conn.Close()
			}
			if err := <-served; err != nil && !strings.Contains(err.Error(), "closed") && !errors.Is(err, io.EOF) {
				t.Errorf("server: %v", err)
			}
		})
	}
}
