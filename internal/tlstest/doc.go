// Package tlstest makes throwaway certificate authorities and certificates
// for tests: ECDSA P-256 keys, valid for an hour, for 127.0.0.1, ::1 and
// localhost, usable by servers and clients alike.
package tlstest
