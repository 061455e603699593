package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
)

// chaosNetns is a network namespace joined to the host by a veth pair on
// a /30 of its own: one worker slot of a chaos run lives in it, so that
// dropping every packet in the namespace cuts that worker off (no reset,
// no ICMP), as a pulled cable would, while the host stays untouched.
type chaosNetns struct {
	Name, HostIP, NSIP, hostLink string
}

// newChaosNetns creates the namespace (needs root, ip and iptables).
func newChaosNetns(ctx context.Context) (*chaosNetns, error) {
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("needs %s", tool)
		}
	}
	id := rand.IntN(1 << 14)
	n := &chaosNetns{
		Name:     fmt.Sprintf("infonce-chaos-%d-%d", os.Getpid(), id),
		HostIP:   fmt.Sprintf("10.232.%d.%d", id>>6, (id&63)*4+1),
		NSIP:     fmt.Sprintf("10.232.%d.%d", id>>6, (id&63)*4+2),
		hostLink: fmt.Sprintf("ich%d", id),
	}
	peer := fmt.Sprintf("icn%d", id)
	steps := [][]string{
		{"netns", "add", n.Name},
		{"link", "add", n.hostLink, "type", "veth", "peer", "name", peer},
		{"link", "set", peer, "netns", n.Name},
		{"addr", "add", n.HostIP + "/30", "dev", n.hostLink},
		{"link", "set", n.hostLink, "up"},
		{"-n", n.Name, "addr", "add", n.NSIP + "/30", "dev", peer},
		{"-n", n.Name, "link", "set", peer, "up"},
		{"-n", n.Name, "link", "set", "lo", "up"},
	}
	for i, args := range steps {
		if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
			if i > 0 {
				n.remove()
			}
			return nil, fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return n, nil
}

func (n *chaosNetns) iptables(ctx context.Context, args ...string) error {
	full := append([]string{"netns", "exec", n.Name, "iptables"}, args...)
	if out, err := exec.CommandContext(ctx, "ip", full...).CombinedOutput(); err != nil {
		return fmt.Errorf("iptables %s in %s: %v: %s", strings.Join(args, " "), n.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// drop drops every packet into and out of the namespace.
func (n *chaosNetns) drop(ctx context.Context) error {
	if err := n.iptables(ctx, "-A", "INPUT", "-j", "DROP"); err != nil {
		return err
	}
	return n.iptables(ctx, "-A", "OUTPUT", "-j", "DROP")
}

// heal removes the namespace's rules.
func (n *chaosNetns) heal(ctx context.Context) error {
	if err := n.iptables(ctx, "-F", "INPUT"); err != nil {
		return err
	}
	return n.iptables(ctx, "-F", "OUTPUT")
}

func (n *chaosNetns) remove() {
	_ = exec.Command("ip", "link", "del", n.hostLink).Run()
	_ = exec.Command("ip", "netns", "del", n.Name).Run()
}
