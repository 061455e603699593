package worker

import (
	"errors"
	"fmt"
	"io/fs"
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
// worker writes it), symbolic links resolved, so that a link inside root
// cannot lead a write outside it. A worker given --out never uses it.
func checkNetworkOut(out, root string) error {
	if err := checkNetworkPath(out); err != nil {
		return fmt.Errorf("run directory %q from the coordinator: %w; start the worker with its own --out", out, err)
	}
	if root == "" {
		return nil
	}
	in, err := within(out, root)
	if err != nil {
		return fmt.Errorf("run directory %q from the coordinator: %w; start the worker with its own --out", out, err)
	}
	if !in {
		return fmt.Errorf("run directory %q from the coordinator is outside --out-root %s (symbolic links followed); start the worker with its own --out, or another --out-root", out, root)
	}
	return nil
}

// checkCheckpointPath checks the checkpoint directory an assignment names
// (it is only read): a clean path, and with root (--out-root) set, inside
// root with symbolic links resolved.
func checkCheckpointPath(path, root string) error {
	if err := checkNetworkPath(path); err != nil {
		return fmt.Errorf("checkpoint path %q from the coordinator: %w", path, err)
	}
	if root == "" {
		return nil
	}
	in, err := within(path, root)
	if err != nil {
		return fmt.Errorf("checkpoint path %q from the coordinator: %w", path, err)
	}
	if !in {
		return fmt.Errorf("checkpoint path %q from the coordinator is outside --out-root %s (symbolic links followed)", path, root)
	}
	return nil
}

// checkNetworkData checks the data set and class file paths of a run
// configuration from the coordinator (they are only read) as the run
// directory is checked: clean, without "..", not a root. A named data set
// without a path (mnist) passes.
func checkNetworkData(data, classes string) error {
	if _, p, ok := strings.Cut(data, ":"); ok {
		if err := checkNetworkPath(p); err != nil {
			return fmt.Errorf("data set %q from the coordinator: %w; start the worker with its own --data", data, err)
		}
	}
	if classes != "" {
		if err := checkNetworkPath(classes); err != nil {
			return fmt.Errorf("class file %q from the coordinator: %w; start the worker with its own --classes", classes, err)
		}
	}
	return nil
}

// within reports whether path lies inside root once both are absolute and
// their symbolic links resolved (of path, the part that exists).
func within(path, root string) (bool, error) {
	p, err1 := resolve(path)
	r, err2 := resolve(root)
	if err := errors.Join(err1, err2); err != nil {
		return false, err
	}
	rel, err := filepath.Rel(r, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)), nil
}

// resolve makes p absolute and resolves the symbolic links of its longest
// existing prefix; the part that does not exist yet is kept as written.
func resolve(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	rest := ""
	for cur := abs; ; {
		r, err := filepath.EvalSymlinks(cur)
		if err == nil {
			return filepath.Join(r, rest), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
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
