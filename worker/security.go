package worker

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/infonce/infonce/allreduce/dataplane"
	"github.com/infonce/infonce/coordinator"
)

// securityOptions returns the data-plane listener's token and TLS options.
func (o *MemberOptions) securityOptions() []dataplane.ServerOption {
	var opts []dataplane.ServerOption
	if o.Token != "" {
		opts = append(opts, dataplane.WithToken(o.Token))
	}
	if o.TLSServer != nil {
		opts = append(opts, dataplane.WithTLS(o.TLSServer))
	}
	return opts
}

// dialSecurity returns the coordinator client's TLS option, if any.
func (o *MemberOptions) dialSecurity() []coordinator.ClientOption {
	if o.TLSClient == nil {
		return nil
	}
	return []coordinator.ClientOption{coordinator.WithTLS(o.TLSClient)}
}

// checkNetworkOut checks the run directory a worker without its own --out
// takes from the coordinator's run configuration. It must be a clean path
// without ".." elements and not a file-system root, so that no name
// received from the network lands a write somewhere it does not plainly
// say; with root (--out-root) set, it must also lie inside root (a
// relative path is taken from the worker's working directory, as the
// worker writes it). A worker given --out never uses it.
func checkNetworkOut(out, root string) error {
	if err := checkNetworkPath(out); err != nil {
		return fmt.Errorf("run directory %q from the coordinator: %w; start the worker with its own --out", out, err)
	}
	if root == "" {
		return nil
	}
	absOut, err1 := filepath.Abs(out)
	absRoot, err2 := filepath.Abs(root)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("run directory %q from the coordinator: %w", out, err)
	}
	rel, err := filepath.Rel(absRoot, absOut)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return fmt.Errorf("run directory %q from the coordinator is outside --out-root %s; start the worker with its own --out, or another --out-root", out, root)
	}
	return nil
}

// checkCheckpointPath checks the checkpoint directory an assignment names
// (it is only read).
func checkCheckpointPath(path string) error {
	if err := checkNetworkPath(path); err != nil {
		return fmt.Errorf("checkpoint path %q from the coordinator: %w", path, err)
	}
	return nil
}

func checkNetworkPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty")
	case strings.ContainsFunc(p, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return fmt.Errorf("holds control characters")
	case filepath.Clean(p) != p:
		return fmt.Errorf("is not clean (want %q)", filepath.Clean(p))
	case slices.Contains(strings.Split(filepath.ToSlash(p), "/"), ".."):
		return fmt.Errorf("climbs out with \"..\"")
	case filepath.Dir(p) == p:
		return fmt.Errorf("is a file-system root")
	}
	return nil
}
