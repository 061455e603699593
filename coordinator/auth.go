package coordinator

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TokenAuth checks that every call carries the shared token as
// "authorization: Bearer <token>". The comparison takes the same time
// whatever the token sent (both sides are hashed, then compared in
// constant time). An empty token turns the check off.
type TokenAuth struct {
	want [sha256.Size]byte
	on   bool
}

// NewTokenAuth returns the check for token.
func NewTokenAuth(token string) *TokenAuth {
	return &TokenAuth{want: sha256.Sum256([]byte(token)), on: token != ""}
}

// Check returns an Unauthenticated status error unless ctx's incoming
// metadata carries the token.
func (a *TokenAuth) Check(ctx context.Context) error {
	if !a.on {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) != 1 {
		return status.Error(codes.Unauthenticated, "missing bearer token: start the worker with the run's token")
	}
	tok, ok := strings.CutPrefix(vals[0], "Bearer ")
	got := sha256.Sum256([]byte(tok))
	if subtle.ConstantTimeCompare(got[:], a.want[:]) != 1 || !ok {
		return status.Error(codes.Unauthenticated, "wrong bearer token: start the worker with the run's token")
	}
	return nil
}

// UnaryInterceptor checks unary calls.
func (a *TokenAuth) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if err := a.Check(ctx); err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
}

// StreamInterceptor checks streaming calls.
func (a *TokenAuth) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if err := a.Check(ss.Context()); err != nil {
			return err
		}
		return h(srv, ss)
	}
}

// bearer adds the token to every outgoing call.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity is false: the token also guards plain-text
// loopback and private networks; TLS, when configured, protects it on the
// wire.
func (b bearer) RequireTransportSecurity() bool { return false }
