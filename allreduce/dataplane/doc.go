// Package dataplane connects a worker to its ring neighbours over the
// network: Listen starts the worker's data-plane Server, which lives as
// long as the worker, and NewRing builds each generation's allreduce.Ring
// over it.
//
// One TCP port serves every transport: the Server admits a connection
// (TLS and a token challenge when configured, WithTLS and WithToken), then
// tells the transports apart by their first bytes ("IRNG" for plain TCP,
// the HTTP/2 preface for gRPC) and hands the connection to allreduce/tcp
// or allreduce/grpc. Every link opens with a handshake carrying the
// protocol version, job id, generation and ranks; the Server refuses a
// mismatch with a reason, parks a link whose generation is not started
// yet, and breaks the rings of older generations when a newer one is
// built.
//
// NewRing dials the right neighbour with the transport of
// Config.Transport and waits for the left one. A TCP ring then offers its
// links to shared memory (allreduce/shm) and, when every rank is on this
// machine with a shm.SharedVector, hands the ring the in-place sum; a ring
// whose two links are plain TCP runs each pass as the event loop of
// allreduce/tcp. The algorithms stay package allreduce's: this package
// only chooses and joins the links.
package dataplane
