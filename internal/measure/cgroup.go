package measure

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CPUGroup is a control group that accounts the CPU time of a server and
// of every process it starts, living or gone: a server that forks a
// process per session (Dovecot) is measured as fully as one that serves
// every session in its own threads (concierge). It uses the cgroup v2
// hierarchy (cpu.stat) where there is one, else v1's cpuacct.
type CPUGroup struct {
	dir string
	v2  bool
}

// NewCPUGroup makes a control group named name (with this process's ID,
// so that runs do not collide). Under "ip netns exec", which mounts a
// sysfs of its own without the cgroup file systems, it mounts the
// hierarchy in a temporary directory (in that command's own mount
// namespace, so nothing is left mounted outside).
func NewCPUGroup(name string) (*CPUGroup, error) {
	name = fmt.Sprintf("concierge-bench-%s-%d", name, os.Getpid())
	type root struct {
		dir, probe string
		v2         bool
	}
	roots := []root{
		{"/sys/fs/cgroup", "cgroup.controllers", true},
		{"/sys/fs/cgroup/unified", "cgroup.controllers", true},
		{"/sys/fs/cgroup/cpuacct", "cpuacct.usage", false},
	}
	if mnt, err := os.MkdirTemp("", "cgroup-"); err == nil {
		if syscall.Mount("cgroup2", mnt, "cgroup2", 0, "") == nil {
			roots = append(roots, root{mnt, "cgroup.controllers", true})
		} else if syscall.Mount("cgroup", mnt, "cgroup", 0, "cpuacct") == nil {
			roots = append(roots, root{mnt, "cpuacct.usage", false})
		}
	}
	for _, r := range roots {
		if _, err := os.Stat(filepath.Join(r.dir, r.probe)); err != nil {
			continue
		}
		dir := filepath.Join(r.dir, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, err
		}
		return &CPUGroup{dir: dir, v2: r.v2}, nil
	}
	return nil, errors.New("no cgroup hierarchy with CPU accounting under /sys/fs/cgroup, and none could be mounted")
}

// Command returns cmd started inside the group: a shell moves itself in
// and then runs cmd in its place, so that every process cmd starts is in
// the group from the beginning.
func (g *CPUGroup) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("/bin/sh", append([]string{"-c", `echo $$ > "$0" && exec "$@"`, filepath.Join(g.dir, "cgroup.procs"), name}, args...)...)
}

// Usage returns the CPU time (user and system) the group's processes have
// used so far.
func (g *CPUGroup) Usage() (time.Duration, error) {
	if !g.v2 {
		b, err := os.ReadFile(filepath.Join(g.dir, "cpuacct.usage"))
		if err != nil {
			return 0, err
		}
		ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return time.Duration(ns), err
	}
	b, err := os.ReadFile(filepath.Join(g.dir, "cpu.stat"))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "usage_usec" {
			us, err := strconv.ParseInt(f[1], 10, 64)
			return time.Duration(us) * time.Microsecond, err
		}
	}
	return 0, fmt.Errorf("no usage_usec in %s/cpu.stat", g.dir)
}

// Close kills the group's processes, waits until they have left it and
// removes it.
func (g *CPUGroup) Close() error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(g.dir, "cgroup.procs"))
		if err != nil {
			return err
		}
		pids := strings.Fields(string(b))
		if len(pids) == 0 {
			return os.Remove(g.dir)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: processes %v did not end", g.dir, pids)
		}
		for _, p := range pids {
			if pid, err := strconv.Atoi(p); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(10 * time.Millisecond) // a poll: the kernel sends no event when a group empties under v1
	}
}
