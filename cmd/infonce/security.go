package main

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/infonce/infonce/coordinator"
	"github.com/infonce/infonce/worker"
)

// securityFlags binds the flags shared by train, coordinator and worker:
// the gossip cluster key and the TLS files.
type securityFlags struct {
	clusterKey     string
	clusterKeyFile string
	tlsCert        string
	tlsKey         string
	tlsCA          string
}

func (s *securityFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&s.clusterKey, "cluster-key", "", "base64 key (16, 24 or 32 bytes) that encrypts gossip; nodes without it are not admitted (prefer --cluster-key-file or INFONCE_CLUSTER_KEY: a command line is visible to other users)")
	fs.StringVar(&s.clusterKeyFile, "cluster-key-file", "", "file holding the base64 cluster key (read when --cluster-key is empty)")
	fs.StringVar(&s.tlsCert, "tls-cert", "", "PEM certificate of this process: served by the coordinator and by each worker's data plane, and presented to peers for mutual TLS")
	fs.StringVar(&s.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&s.tlsCA, "tls-ca", "", "PEM CA certificate(s): peers must present a certificate signed by them (mutual TLS); also verifies the servers (default: the system's roots)")
}

// gossipKey returns the cluster key (nil for none).
func (s *securityFlags) gossipKey() ([]byte, error) {
	text, from := s.clusterKey, "--cluster-key"
	if text == "" && s.clusterKeyFile != "" {
		b, err := os.ReadFile(s.clusterKeyFile)
		if err != nil {
			return nil, usageError{fmt.Errorf("--cluster-key-file: %w", err)}
		}
		text, from = string(b), "--cluster-key-file "+s.clusterKeyFile
	}
	text = strings.TrimSpace(text)
	if text == "" {
		return nil, nil
	}
	key, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		if key, err = base64.RawStdEncoding.DecodeString(text); err != nil {
			return nil, usageError{fmt.Errorf("%s: not base64: %w", from, err)}
		}
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	}
	return nil, usageError{fmt.Errorf("%s: key of %d bytes: need 16, 24 or 32 (make one with: head -c 32 /dev/urandom | base64)", from, len(key))}
}

// tlsConfigs loads the TLS files: server serves this process's
// certificate (requiring client certificates signed by --tls-ca when it is
// set); client verifies servers with --tls-ca and presents the
// certificate. Both are nil without TLS flags.
func (s *securityFlags) tlsConfigs() (server, client *tls.Config, err error) {
	if s.tlsCert == "" && s.tlsKey == "" && s.tlsCA == "" {
		return nil, nil, nil
	}
	if s.tlsCert == "" || s.tlsKey == "" {
		return nil, nil, usageError{errors.New("--tls-cert and --tls-key go together, and --tls-ca needs them: every coordinator and worker serves TLS with its own certificate")}
	}
	pair, err := tls.LoadX509KeyPair(s.tlsCert, s.tlsKey)
	if err != nil {
		return nil, nil, usageError{fmt.Errorf("--tls-cert %s, --tls-key %s: %w", s.tlsCert, s.tlsKey, err)}
	}
	server = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	client = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if s.tlsCA != "" {
		pem, err := os.ReadFile(s.tlsCA)
		if err != nil {
			return nil, nil, usageError{fmt.Errorf("--tls-ca: %w", err)}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, usageError{fmt.Errorf("--tls-ca %s: no PEM certificate in it", s.tlsCA)}
		}
		server.ClientCAs, server.ClientAuth = pool, tls.RequireAndVerifyClientCert
		client.RootCAs = pool
	}
	return server, client, nil
}

// applyCoordinator sets the coordinator's gossip key and TLS.
func (s *securityFlags) applyCoordinator(cc *coordinator.Config) error {
	key, err := s.gossipKey()
	if err != nil {
		return err
	}
	cc.GossipKey = key
	cc.TLS, _, err = s.tlsConfigs()
	return err
}

// applyWorker sets a worker's gossip key and TLS.
func (s *securityFlags) applyWorker(o *worker.MemberOptions) error {
	key, err := s.gossipKey()
	if err != nil {
		return err
	}
	o.GossipKey = key
	o.TLSServer, o.TLSClient, err = s.tlsConfigs()
	return err
}

// localSecrets prepares the secrets of a run on this machine: a random
// cluster key when none was given (set into cc), and the environment that
// hands the key, the token and the TLS files to the worker processes. No
// secret goes on a command line, where other users of the machine could
// read it.
func localSecrets(cc *coordinator.Config, s securityFlags) ([]string, error) {
	if len(cc.GossipKey) == 0 && !cc.DisableGossip {
		cc.GossipKey = make([]byte, 32)
		if _, err := rand.Read(cc.GossipKey); err != nil {
			return nil, fmt.Errorf("cluster key: %w", err)
		}
	}
	var env []string
	if len(cc.GossipKey) > 0 {
		env = append(env, envName("cluster-key")+"="+base64.StdEncoding.EncodeToString(cc.GossipKey))
	}
	if cc.Token != "" {
		env = append(env, envName("token")+"="+cc.Token)
	}
	for name, v := range map[string]string{"tls-cert": s.tlsCert, "tls-key": s.tlsKey, "tls-ca": s.tlsCA} {
		if v != "" {
			env = append(env, envName(name)+"="+v)
		}
	}
	return env, nil
}
