// Package grpc is the gRPC transport of the data plane: one long-lived
// bidirectional Link stream (allreducepb/ring.proto) per ring edge, whose
// messages go through a raw codec that neither protobuf-encodes nor
// allocates per message (an 8-byte tag and the payload, large payloads
// handed to gRPC by reference). It is the transport that carries TLS.
//
// Out is the sending half of a link (Dial), In the receiving half, served
// by a Server on connections the shared data-plane listener hands over
// (allreduce/dataplane). The ring algorithms are package allreduce's; this
// package only moves tagged messages.
package grpc
