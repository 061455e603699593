// Package coordinatorpb holds the protocol buffer messages and the gRPC
// service of the infonce control plane, generated from coordinator.proto.
//
// Only package coordinator uses these types; workers use the plain Go types
// of package coordinator.
//
// Regenerate with `go generate` after changing coordinator.proto; it needs
// protoc and the protoc-gen-go and protoc-gen-go-grpc plugins on PATH (the
// committed code was made with protoc 3.21.12, protoc-gen-go v1.36.12 and
// protoc-gen-go-grpc 1.6.2).
package coordinatorpb

//go:generate protoc --proto_path=. --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative coordinator.proto
