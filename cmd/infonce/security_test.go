package main

import (
	"crypto/tls"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infonce/infonce/coordinator"
	"github.com/infonce/infonce/internal/tlstest"
)

func TestClusterKeyFlags(t *testing.T) {
	dir := t.TempDir()
	key32 := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	file := filepath.Join(dir, "key")
	if err := os.WriteFile(file, []byte(key32+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		flags     securityFlags
		wantBytes int    // 0: no key
		wantErr   string // "" : no error
	}{
		{"none", securityFlags{}, 0, ""},
		{"flag", securityFlags{clusterKey: key32}, 32, ""},
		{"file", securityFlags{clusterKeyFile: file}, 32, ""},
		{"flag wins over file", securityFlags{clusterKey: base64.StdEncoding.EncodeToString(make([]byte, 16)), clusterKeyFile: file}, 16, ""},
		{"unpadded", securityFlags{clusterKey: strings.TrimRight(base64.StdEncoding.EncodeToString(make([]byte, 16)), "=")}, 16, ""},
		{"not base64", securityFlags{clusterKey: "not base64!"}, 0, "not base64"},
		{"wrong length", securityFlags{clusterKey: base64.StdEncoding.EncodeToString(make([]byte, 20))}, 0, "need 16, 24 or 32"},
		{"missing file", securityFlags{clusterKeyFile: filepath.Join(dir, "nope")}, 0, "--cluster-key-file"},
	}
	for _, tc := range tests {
		key, err := tc.flags.gossipKey()
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || len(key) != tc.wantBytes {
			t.Errorf("%s: key of %d bytes, %v; want %d bytes", tc.name, len(key), err, tc.wantBytes)
		}
	}
}

func TestTLSFlags(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "ca")
	cert, key := ca.Issue(t, "node").WriteFiles(t, dir, "node")
	caFile := ca.WriteFile(t, dir, "ca")
	tests := []struct {
		name    string
		flags   securityFlags
		mtls    bool
		wantErr string
	}{
		{"tls", securityFlags{tlsCert: cert, tlsKey: key}, false, ""},
		{"mtls", securityFlags{tlsCert: cert, tlsKey: key, tlsCA: caFile}, true, ""},
		{"ca alone", securityFlags{tlsCA: caFile}, false, "--tls-cert and --tls-key"},
		{"cert alone", securityFlags{tlsCert: cert}, false, "--tls-cert and --tls-key"},
		{"key is not a key", securityFlags{tlsCert: cert, tlsKey: cert}, false, "--tls-key"},
		{"ca is not PEM", securityFlags{tlsCert: cert, tlsKey: key, tlsCA: filepath.Join(dir, "node.key.missing")}, false, "--tls-ca"},
	}
	for _, tc := range tests {
		srv, cli, err := tc.flags.tlsConfigs()
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || srv == nil || cli == nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := srv.ClientAuth == tls.RequireAndVerifyClientCert && cli.RootCAs != nil; got != tc.mtls {
			t.Errorf("%s: mutual TLS %v, want %v", tc.name, got, tc.mtls)
		}
	}
}

// A local run hands its secrets to the workers through the environment
// and makes a cluster key when none was given.
func TestLocalSecretsStayOffCommandLines(t *testing.T) {
	cc := coordinator.DefaultLocalConfig()
	cc.Token = "tok"
	env, err := localSecrets(&cc, securityFlags{tlsCert: "/c", tlsKey: "/k"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cc.GossipKey) != 32 {
		t.Fatalf("generated cluster key of %d bytes", len(cc.GossipKey))
	}
	joined := strings.Join(env, "\n")
	for _, want := range []string{"INFONCE_CLUSTER_KEY=" + base64.StdEncoding.EncodeToString(cc.GossipKey), "INFONCE_TOKEN=tok", "INFONCE_TLS_CERT=/c", "INFONCE_TLS_KEY=/k"} {
		if !strings.Contains(joined, want) {
			t.Errorf("environment %q lacks %q", env, want)
		}
	}
	other := coordinator.DefaultLocalConfig()
	if _, err := localSecrets(&other, securityFlags{}); err != nil || string(other.GossipKey) == string(cc.GossipKey) {
		t.Errorf("two runs share a cluster key (%v)", err)
	}
}
