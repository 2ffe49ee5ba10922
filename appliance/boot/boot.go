// Package boot is concierge's PID 1 mode, used when the binary is the
// /init of the firmware's initramfs: it mounts the kernel file systems,
// loads the kernel modules listed in the initramfs (finit_module, in the
// order the image builder resolved from .modinfo), mounts the data
// partition, configures the network, then runs "concierge serve" as a
// child process that it restarts with backoff when it dies, reaps every
// zombie, and on reboot or poweroff stops the child, syncs and unmounts.
package boot

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"concierge/internal/firmware"
)

// Where things are on the running box.
const (
	// ModuleOrder lists the initramfs's modules in load order.
	ModuleOrder = "/lib/modules/load.order"
	// PermDir is where the data partition is mounted.
	PermDir = "/perm"
	// BootDir is where the boot partition (slots A and B) is mounted.
	BootDir = firmware.BootMount
	// DataDir is the data directory of "concierge serve" on the box.
	DataDir = PermDir + "/concierge"
)

// Timeouts and the restart backoff, in one place.
var (
	// DeviceWait bounds the wait for the data partition and the first
	// network interface to appear after their drivers loaded.
	DeviceWait = 10 * time.Second
	// StopGrace bounds the wait for the child to stop on shutdown; it
	// covers the serve process's own ShutdownGrace.
	StopGrace = 30 * time.Second
	// Backoff is the delay before each restart of a child that died; the
	// last entry repeats. A child that ran StableAfter resets it.
	Backoff     = []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second}
	StableAfter = time.Minute
)

// Main runs the box as PID 1 and never returns unless the kernel refuses
// to reboot.
func Main() int {
	mountKernelFS()
	console()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("pid1", true)
	cmdline := readCmdline()
	log.Info("boot: concierge init starting", "version", firmware.Version, "slot", cmdline["concierge.slot"])
	loadModules(log)
	go watchPowerButton(log)
	if err := mountData(log); err != nil {
		log.Error("boot: data partition", "err", err)
	}
	mountBoot(log)
	if err := setupNetwork(log, cmdline); err != nil {
		log.Error("boot: network", "err", err)
	}
	os.Setenv(firmware.SlotEnv, cmdline["concierge.slot"])
	// Ctrl-Alt-Del sends SIGINT to init instead of resetting at once.
	unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF)
	cmd := supervise(log)
	shutdown(log, cmd)
	return 1
}

// mountKernelFS mounts /proc, /sys, /dev, /tmp and /run.
func mountKernelFS() {
	for _, m := range []struct{ fs, dir string }{
		{"proc", "/proc"}, {"sysfs", "/sys"}, {"devtmpfs", "/dev"}, {"tmpfs", "/tmp"}, {"tmpfs", "/run"},
	} {
		os.MkdirAll(m.dir, 0o755)
		unix.Mount(m.fs, m.dir, m.fs, unix.MS_NOSUID, "")
	}
}

// console makes /dev/console the standard streams (the initramfs has no
// device nodes, so the kernel could not open it for init).
func console() {
	f, err := os.OpenFile("/dev/console", os.O_RDWR, 0)
	if err != nil {
		return
	}
	for fd := 0; fd <= 2; fd++ {
		unix.Dup2(int(f.Fd()), fd)
	}
}

func readCmdline() map[string]string {
	b, _ := os.ReadFile("/proc/cmdline")
	m := map[string]string{}
	for _, f := range strings.Fields(string(b)) {
		k, v, _ := strings.Cut(f, "=")
		m[k] = v
	}
	return m
}

// loadModules loads every module of ModuleOrder; a module that fails
// (no such device, already built in) is logged and skipped.
func loadModules(log *slog.Logger) {
	f, err := os.Open(ModuleOrder)
	if err != nil {
		log.Error("boot: modules", "err", err)
		return
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.TrimSpace(sc.Text())
		if p == "" {
			continue
		}
		if err := loadModule(p); err != nil && !errors.Is(err, unix.EEXIST) {
			log.Warn("boot: module", "path", p, "err", err)
			continue
		}
		n++
	}
	log.Info("boot: modules loaded", "count", n)
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.FinitModule(int(f.Fd()), "", 0)
}

// findPartition waits for the block device whose GPT partition name is
// name and returns its /dev path.
func findPartition(name string) (string, error) {
	deadline := time.Now().Add(DeviceWait)
	for {
		ms, _ := filepath.Glob("/sys/class/block/*/uevent")
		for _, m := range ms {
			b, err := os.ReadFile(m)
			if err != nil {
				continue
			}
			if strings.Contains(string(b), "\nPARTNAME="+name+"\n") {
				return "/dev/" + filepath.Base(filepath.Dir(m)), nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no partition named %s after %v", name, DeviceWait)
		}
		time.Sleep(100 * time.Millisecond) // polling sysfs: devices appear asynchronously
	}
}

// mountData mounts the data partition on PermDir, formatting it first
// when it is blank and growing the file system to the partition after.
// Without one (a box booted from the bundle alone), or with one that has
// no ext4 and is not blank, or that does not mount, PermDir stays on the
// initramfs's tmpfs and nothing survives a reboot, which the log says.
func mountData(log *slog.Logger) error {
	os.MkdirAll(PermDir, 0o755)
	dev, err := findPartition(dataPartition)
	if err != nil {
		return fmt.Errorf("%w; settings and mail will not survive a reboot", err)
	}
	growPartition(log, dev)
	// Read before the mount (which sets it again): whether the last
	// boot left the journal to replay. A blank partition is formatted.
	sb, err := prepareData(log, dev, DataTemplate)
	if err != nil {
		return fmt.Errorf("%s: %w; settings and mail will not survive a reboot", dev, err)
	}
	if sb.NeedsRecovery {
		log.Warn("boot: the data partition was not unmounted cleanly; the kernel replays its journal", "dev", dev)
	}
	if err := unix.Mount(dev, PermDir, "ext4", unix.MS_NOATIME|unix.MS_NODEV|unix.MS_NOSUID, "data=ordered"); err != nil {
		return fmt.Errorf("mount %s: %w; settings and mail will not survive a reboot", dev, err)
	}
	log.Info("boot: data partition mounted", "dev", dev, "dir", PermDir, "clean", !sb.NeedsRecovery)
	growData(log, dev, PermDir)
	return os.MkdirAll(DataDir, 0o700)
}

// mountBoot mounts the boot partition, where updates write the inactive
// slot.
func mountBoot(log *slog.Logger) {
	os.MkdirAll(BootDir, 0o755)
	dev, err := findPartition(bootPartition)
	if err != nil {
		log.Warn("boot: boot partition", "err", err)
		return
	}
	if err := unix.Mount(dev, BootDir, "vfat", unix.MS_NOATIME|unix.MS_NODEV|unix.MS_NOSUID|unix.MS_NOEXEC, "codepage=437,iocharset=ascii,shortname=mixed,flush"); err != nil {
		log.Warn("boot: mount boot partition", "dev", dev, "err", err)
		return
	}
	log.Info("boot: boot partition mounted", "dev", dev, "dir", BootDir)
}

// supervise runs "concierge serve" until a shutdown signal, restarting
// it with backoff, and reaps every child. It returns the signal's action.
func supervise(log *slog.Logger) action {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGCHLD, unix.SIGTERM, unix.SIGINT, unix.SIGUSR1, unix.SIGUSR2)
	var child *os.Process
	var started time.Time
	failures := 0
	restart := time.NewTimer(0)
	for {
		select {
		case <-restart.C:
			p, err := os.StartProcess("/proc/self/exe", []string{"concierge", "-data", DataDir, "serve"}, &os.ProcAttr{
				Env:   append(os.Environ(), "PATH=/", "HOME="+DataDir),
				Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
				Sys:   &syscall.SysProcAttr{Setsid: true},
			})
			if err != nil {
				log.Error("boot: start serve", "err", err)
				restart.Reset(backoff(failures))
				failures++
				continue
			}
			child, started = p, time.Now()
			log.Info("boot: serve started", "pid", p.Pid)
		case sig := <-sigs:
			if sig == unix.SIGCHLD {
				if reap(child) {
					ran := time.Since(started)
					child = nil
					if ran > StableAfter {
						failures = 0
					}
					d := backoff(failures)
					failures++
					log.Error("boot: serve exited; restarting", "ran", ran.Round(time.Millisecond), "after", d)
					restart.Reset(d)
				}
				continue
			}
			a := actionOf(sig.(syscall.Signal))
			log.Info("boot: shutting down", "signal", sig, "then", a)
			restart.Stop()
			stopChild(log, child, sigs)
			return a
		}
	}
}

func backoff(failures int) time.Duration {
	return Backoff[min(failures, len(Backoff)-1)]
}

// reap collects every exited child and reports whether child was one.
func reap(child *os.Process) bool {
	found := false
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err != nil || pid <= 0 {
			return found
		}
		if child != nil && pid == child.Pid {
			found = true
		}
	}
}

// stopChild sends SIGTERM to the serve process and waits for it, at most
// StopGrace, then kills it.
func stopChild(log *slog.Logger, child *os.Process, sigs chan os.Signal) {
	if child == nil {
		return
	}
	child.Signal(unix.SIGTERM)
	ctx, cancel := context.WithTimeout(context.Background(), StopGrace)
	defer cancel()
	for {
		select {
		case s := <-sigs:
			if s == unix.SIGCHLD && reap(child) {
				log.Info("boot: serve stopped")
				return
			}
		case <-ctx.Done():
			log.Warn("boot: serve did not stop; killing it")
			child.Kill()
			return
		}
	}
}

// action is what happens after the services stopped.
type action string

const (
	actReboot   action = "reboot"
	actPowerOff action = "poweroff"
)

// powerOffSignal is what a press of the power button sends PID 1.
const powerOffSignal = unix.SIGUSR2

// actionOf maps the signals of busybox's init: SIGTERM and SIGINT
// (Ctrl-Alt-Del) reboot, SIGUSR1 and SIGUSR2 power off.
func actionOf(s syscall.Signal) action {
	if s == unix.SIGUSR1 || s == unix.SIGUSR2 {
		return actPowerOff
	}
	return actReboot
}

// UnmountedLine is logged when the data and boot partitions were
// unmounted before a reboot or power off.
const UnmountedLine = "boot: file systems unmounted cleanly"

// shutdown syncs, unmounts and reboots or powers off.
func shutdown(log *slog.Logger, a action) {
	unix.Sync()
	clean := true
	for _, d := range []string{BootDir, PermDir} {
		if err := unix.Unmount(d, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			log.Warn("boot: unmount", "dir", d, "err", err)
			unix.Mount("", d, "", unix.MS_REMOUNT|unix.MS_RDONLY, "")
			clean = false
		}
	}
	unix.Sync()
	if clean {
		log.Info(UnmountedLine)
	}
	log.Info("boot: " + string(a))
	cmd := unix.LINUX_REBOOT_CMD_RESTART
	if a == actPowerOff {
		cmd = unix.LINUX_REBOOT_CMD_POWER_OFF
	}
	unix.Reboot(cmd)
}
