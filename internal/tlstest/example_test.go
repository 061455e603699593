package tlstest_test

import (
	"crypto/x509"
	"fmt"
	"testing"

	"github.com/infonce/infonce/internal/tlstest"
)

// A certificate issued by a CA verifies against that CA's pool and not
// against another's.
func Example() {
	t := &testing.T{}
	ca, other := tlstest.NewCA(t, "run CA"), tlstest.NewCA(t, "other CA")
	leaf, err := x509.ParseCertificate(ca.Issue(t, "node").TLS.Certificate[0])
	if err != nil {
		fmt.Println(err)
		return
	}
	_, errRun := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool, DNSName: "localhost", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	_, errOther := leaf.Verify(x509.VerifyOptions{Roots: other.Pool, DNSName: "localhost"})
	fmt.Println(errRun == nil, errOther == nil)
	// Output: true false
}
