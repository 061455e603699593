// Package securitytest holds end-to-end tests of infonce's security layer:
// a coordinator and two workers train in this process on loopback while
// intruders try to join the control plane, connect to the data plane or
// gossip without the cluster's secrets, and while garbage (random bytes,
// an HTTP request, huge length prefixes, a TLS ClientHello, a handshake of
// another protocol version) is sent to every listening port. Every run must
// end with exactly the per-step losses of an undisturbed run.
//
// The package has no code of its own besides its tests.
package securitytest
