package measure

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"concierge/internal/testnet"
)

// InNamespace runs the benchmark inside a network namespace of its own: it
// makes a work directory (mode perm), builds the static concierge binary
// into it as work/concierge, creates the namespace with its loopback up,
// and runs this program again in it with innerEnv set to the work
// directory. The namespace (and, unless keep, the work directory) is
// removed afterwards, also on SIGINT or SIGTERM.
func InNamespace(prefix, innerEnv string, keep bool, perm os.FileMode) error {
	work, err := os.MkdirTemp("/tmp", prefix+"-")
	if err != nil {
		return err
	}
	os.Chmod(work, perm)
	if !keep {
		defer os.RemoveAll(work)
	}
	if err := BuildConcierge(filepath.Join(work, "concierge")); err != nil {
		return err
	}
	ns := fmt.Sprintf("%s%d", prefix, os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add: %v %s", err, out)
	}
	cleanup := func() { testnet.DeleteNamespaces(ns) }
	defer cleanup()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { <-sig; cleanup(); os.RemoveAll(work); os.Exit(1) }()
	exec.Command("ip", "-n", ns, "link", "set", "lo", "up").Run()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, self}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), innerEnv+"="+work)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}

// BuildConcierge builds the static concierge binary at path.
func BuildConcierge(path string) error {
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return fmt.Errorf("go list -m: %v", err)
	}
	build := exec.Command("go", "build", "-o", path, "./cmd/concierge")
	build.Dir = strings.TrimSpace(string(root))
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	return nil
}
