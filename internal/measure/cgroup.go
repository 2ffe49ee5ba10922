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
	dir   string
	v2    bool
	mount string // the hierarchy NewCPUGroup mounted, if it had to
}

// cgroupRoot is a hierarchy and the file that shows it accounts CPU.
type cgroupRoot struct {
	dir, probe string
	v2         bool
}

func (r cgroupRoot) ok() bool {
	_, err := os.Stat(filepath.Join(r.dir, r.probe))
	return err == nil
}

// NewCPUGroup makes a control group named name (with this process's ID,
// so that runs do not collide). Under "ip netns exec", which mounts a
// sysfs of its own without the cgroup file systems, it mounts the
// hierarchy in a temporary directory (in that command's own mount
// namespace) and Close unmounts it.
func NewCPUGroup(name string) (*CPUGroup, error) {
	name = fmt.Sprintf("concierge-bench-%s-%d", name, os.Getpid())
	for _, r := range []cgroupRoot{
		{"/sys/fs/cgroup", "cgroup.controllers", true},
		{"/sys/fs/cgroup/unified", "cgroup.controllers", true},
		{"/sys/fs/cgroup/cpuacct", "cpuacct.usage", false},
	} {
		if r.ok() {
			return newGroup(r, name, "")
		}
	}
	mnt, err := os.MkdirTemp("", "cgroup-")
	if err != nil {
		return nil, err
	}
	for _, m := range []struct{ fs, opts, probe string }{{"cgroup2", "", "cgroup.controllers"}, {"cgroup", "cpuacct", "cpuacct.usage"}} {
		if syscall.Mount(m.fs, mnt, m.fs, 0, m.opts) == nil {
			return newGroup(cgroupRoot{mnt, m.probe, m.fs == "cgroup2"}, name, mnt)
		}
	}
	os.Remove(mnt)
	return nil, errors.New("no cgroup hierarchy with CPU accounting under /sys/fs/cgroup, and none could be mounted")
}

func newGroup(r cgroupRoot, name, mount string) (*CPUGroup, error) {
	g := &CPUGroup{dir: filepath.Join(r.dir, name), v2: r.v2, mount: mount}
	if err := os.Mkdir(g.dir, 0o755); err != nil {
		g.unmount()
		return nil, err
	}
	return g, nil
}

func (g *CPUGroup) unmount() {
	if g.mount != "" {
		syscall.Unmount(g.mount, 0)
		os.Remove(g.mount)
	}
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
			err := os.Remove(g.dir)
			g.unmount()
			return err
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
