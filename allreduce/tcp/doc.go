// Package tcp is the plain TCP transport of the data plane: a connection
// starts with the preface "IRNG" and a handshake, then carries frames of
// tag u64 | length u32 | payload, written straight from the caller's
// buffer with one writev(2) and read straight into the destination.
//
// On Linux the transport runs each collective's whole pass as one event
// loop in the caller's goroutine (RunPass, behind allreduce.Passer):
// non-blocking sendmsg(2) of header and chunk, non-blocking recvmsg(2)
// into the destination or into a scratch chunk that is added at once,
// while it is still in the cache, and one ppoll(2) on both sockets when
// neither can progress, with SO_RCVLOWAT set so that the kernel wakes the
// loop once per chunk. The message plan, the bfloat16 encoding and the
// sums stay package allreduce's (allreduce.Pass); this package moves the
// bytes.
//
// Out is the sending half of a link (Dial), In the receiving half (Serve,
// on connections the shared data-plane listener hands over).
package tcp
