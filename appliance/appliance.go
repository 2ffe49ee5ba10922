// Package appliance is the composition root of the box: it loads the
// settings, starts every service (SMTP, POP3, NetBIOS, ...), hands them
// each new configuration live, and stops them on shutdown.
package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"concierge/appliance/config"
	"concierge/internal/durable"
	"concierge/smtpd/srs"
)

// Timing of the supervisor.
const (
	// ReloadPoll is how often the configuration file is checked for
	// changes (the CLI also sends SIGHUP for an immediate reload).
	ReloadPoll = time.Second
	// ShutdownGrace bounds how long in-flight sessions may finish after
	// SIGTERM before their connections are closed.
	ShutdownGrace = 20 * time.Second
)

// MemoryLimit is the Go runtime's soft memory limit for the serve process
// (the GOMEMLIMIT environment variable overrides it). The box has 128 MB;
// near the limit the runtime collects garbage sooner and gives freed
// memory back to the system at once, which keeps the peak low when
// password checks (19 MiB each, see internal/pwhash) come in floods.
const MemoryLimit = 48 << 20

// Options are the settings of the serve command itself.
type Options struct {
	DataDir  string
	LogLevel string
	Stdout   io.Writer
	Stderr   io.Writer
}

const (
	pidFile    = "concierge.pid"
	srsKeyFile = "srs.key" // see smtpd/srs
)

// Serve runs every service until ctx is done.
func Serve(ctx context.Context, opt Options) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(opt.LogLevel)); err != nil {
		return fmt.Errorf("-log: %v", err)
	}
	log := slog.New(slog.NewTextHandler(opt.Stderr, &slog.HandlerOptions{Level: level}))
	dataDir, err := filepath.Abs(opt.DataDir)
	if err != nil {
		return err
	}
	if err := durable.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(MemoryLimit)
	}
	store := &config.Store{Dir: dataDir}
	stamp := fileStamp(store.Path()) // before reading: a change meanwhile is seen
	cfg, digest, err := store.LoadDigest()
	if err != nil {
		return fmt.Errorf("refusing to start; fix the configuration first:\n%w", err)
	}
	unlock, err := lockPidFile(dataDir)
	if err != nil {
		return err
	}
	defer unlock()

	srsKey, err := srs.LoadKey(filepath.Join(dataDir, srsKeyFile))
	if err != nil {
		return err
	}
	env := &Env{DataDir: dataDir, Log: log, Users: NewUsers(cfg), SRSKey: srsKey}
	services := newServices(env)
	var started []Service
	stopAll := func() {
		sctx, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
		defer cancel()
		for i := len(started) - 1; i >= 0; i-- {
			if err := started[i].Stop(sctx); err != nil {
				log.Warn("stop", "service", started[i].Name(), "err", err)
			}
		}
	}
	for _, s := range services {
		if err := s.Start(ctx, cfg); err != nil {
			stopAll()
			return fmt.Errorf("%s: %w", s.Name(), err)
		}
		started = append(started, s)
	}
	fmt.Fprintf(opt.Stdout, "concierge: serving from data directory %s\n", dataDir)
	for _, s := range services {
		for _, l := range s.Listening() {
			fmt.Fprintf(opt.Stdout, "  %s\n", l)
		}
	}
	fmt.Fprintf(opt.Stdout, "  settings: %s (change them with \"concierge -data %s ...\"; the web setup page is not in this build yet)\n", store.Path(), dataDir)
	log.Info("started", "data", dataDir, "hostname", cfg.Hostname, "domains", len(cfg.Domains), "users", len(cfg.Users))
	generation := 1
	logApplied(log, generation, digest, cfg)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	tick := time.NewTicker(ReloadPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down")
			stopAll()
			log.Info("stopped")
			return nil
		case <-hup:
		case <-tick.C:
			if s := fileStamp(store.Path()); s == stamp {
				continue
			}
		}
		stamp = fileStamp(store.Path())
		next, digest, err := store.LoadDigest()
		if err != nil {
			log.Error(SettingsRefused, "sha256", digest, "err", strings.ReplaceAll(err.Error(), "\n", "; "), "running_generation", generation)
			continue
		}
		env.Users.set(next)
		for _, s := range started {
			if err := s.Reconfigure(next); err != nil {
				log.Error("reconfigure", "service", s.Name(), "err", err)
			}
		}
		generation++
		logApplied(log, generation, digest, next)
	}
}

// The events the supervisor logs about settings. Each names the SHA-256 of
// the settings file it read (attribute sha256), so whoever changed the
// file (a test, a tool) can wait for its own edit to be in force.
const (
	// SettingsApplied: every service runs with the file's settings;
	// generation counts the settings applied since start (1: at start).
	SettingsApplied = "settings applied"
	// SettingsRefused: the file has errors; the settings of
	// running_generation stay in force.
	SettingsRefused = "settings refused"
)

func logApplied(log *slog.Logger, generation int, digest string, cfg *config.Config) {
	log.Info(SettingsApplied, "generation", generation, "sha256", digest, "domains", len(cfg.Domains), "users", len(cfg.Users))
}

func fileStamp(path string) string {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return ""
	}
	return fmt.Sprint(st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec)
}

// lockPidFile makes sure one server runs per data directory and records
// its PID for NotifyReload.
func lockPidFile(dir string) (func(), error) {
	path := filepath.Join(dir, pidFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another concierge is already serving %s", dir)
	}
	f.Truncate(0)
	f.WriteString(strconv.Itoa(os.Getpid()) + "\n")
	return func() { os.Remove(path); f.Close() }, nil
}

// NotifyReload asks a server running on the data directory, if any, to
// reload its configuration now.
func NotifyReload(dir string) {
	path := filepath.Join(dir, pidFile)
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
		return // nobody holds it: no server running
	} else if !errors.Is(err, unix.EWOULDBLOCK) {
		return
	}
	b, _ := io.ReadAll(f)
	if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
		syscall.Kill(pid, syscall.SIGHUP)
	}
}
