// Package link holds what the network transports of the data plane
// (allreduce/tcp, allreduce/grpc) and the Server of allreduce/dataplane
// share: the handshake that opens every link, the frame header of byte
// streams, and the contract by which a transport's listening side hands
// an incoming link to the Server for admission.
package link
