// Package appliance is the composition root of the box: it loads the
// settings, starts every service (SMTP, POP3, NetBIOS, ...), serves the
// control API (appliance/control) that changes them, hands each new
// configuration to the services live, and stops them on shutdown.
package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"concierge/appliance/config"
	"concierge/appliance/control"
	"concierge/internal/durable"
	"concierge/smtpd/srs"
)

// ShutdownGrace bounds how long in-flight sessions may finish after
// SIGTERM (or a restart) before their connections are closed.
const ShutdownGrace = 20 * time.Second

// MemoryLimit is the Go runtime's soft memory limit for the serve process
// (the GOMEMLIMIT environment variable overrides it). The box has 128 MB;
// near the limit the runtime collects garbage sooner and gives freed
// memory back to the system at once, which keeps the peak low when
// password checks (19 MiB each, see internal/pwhash) come in floods.
const MemoryLimit = 48 << 20

// LogLines is how many recent log lines the server keeps for the status
// page and "concierge log".
const LogLines = 500

// Options are the settings of the serve command itself.
type Options struct {
	DataDir  string
	LogLevel string
	// ApplyNetwork sets the interfaces from the network settings even
	// when network.apply is off (serve -apply-network).
	ApplyNetwork bool
	Stdout       io.Writer
	Stderr       io.Writer
}

// lockFile is held while a server runs on a data directory.
const lockFile = "serve.lock"

// Serve runs every service until ctx is done.
func Serve(ctx context.Context, opt Options) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(opt.LogLevel)); err != nil {
		return fmt.Errorf("-log: %v", err)
	}
	ring := newLogRing(LogLines)
	log := slog.New(teeHandler{slog.NewTextHandler(opt.Stderr, &slog.HandlerOptions{Level: level}), ring.handler(level)})
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
	unlock, err := lockDataDir(dataDir)
	if err != nil {
		return err
	}
	defer unlock()

	store := &config.Store{Dir: dataDir}
	sup := &supervisor{store: store, log: log, ring: ring, ctx: ctx, started: time.Now()}
	sup.env = &Env{DataDir: dataDir, Log: log, Net: &netState{force: opt.ApplyNetwork}}
	sup.env.Control = control.New(control.Options{DataDir: dataDir, Live: sup, Log: log})
	// The socket opens first: from now on the CLI asks this server,
	// whose calls wait for the start below and then see the file as the
	// CLI left it.
	sock, err := control.Listen(dataDir, sup.env.Control)
	if err != nil {
		return err
	}
	defer sock.Close()

	sup.mu.Lock()
	cfg, digest, err := store.LoadDigest()
	if err != nil {
		sup.mu.Unlock()
		return fmt.Errorf("refusing to start; fix the configuration first:\n%w", err)
	}
	if err := sup.startLocked(cfg); err != nil {
		sup.mu.Unlock()
		return err
	}
	fmt.Fprintf(opt.Stdout, "concierge: serving from data directory %s\n", dataDir)
	for _, s := range sup.services {
		for _, l := range s.Listening() {
			fmt.Fprintf(opt.Stdout, "  %s\n", l)
		}
	}
	fmt.Fprintf(opt.Stdout, "  settings: %s (change them with \"concierge -data %s ...\")\n", store.Path(), dataDir)
	sup.markSlotGood(ctx, cfg)
	log.Info("started", "data", dataDir, "hostname", cfg.Hostname, "domains", len(cfg.Domains), "users", len(cfg.Users))
	sup.appliedLocked(digest, cfg)
	sup.mu.Unlock()

	<-ctx.Done()
	log.Info("shutting down")
	sock.Close() // no calls during the stop
	sup.mu.Lock()
	sup.stopLocked()
	sup.mu.Unlock()
	log.Info("stopped")
	return nil
}

// supervisor runs the services and is the control API's Live: every
// change of settings goes through Reload.
type supervisor struct {
	store   *config.Store
	log     *slog.Logger
	ring    *logRing
	ctx     context.Context // the server's
	started time.Time
	env     *Env

	mu         sync.Mutex // held while services start, stop or reconfigure
	services   []Service  // the running ones, in start order
	generation int
}

// startLocked starts a new set of services with cfg and the SRS key;
// when one fails, those started are stopped again.
func (s *supervisor) startLocked(cfg *config.Config) error {
	key, err := srs.LoadKey(filepath.Join(s.env.DataDir, control.SRSKeyFile))
	if err != nil {
		return err
	}
	s.env.SRSKey = key
	if s.env.Users == nil {
		s.env.Users = NewUsers(cfg)
	}
	s.env.Users.set(cfg)
	for _, svc := range newServices(s.env) {
		if err := svc.Start(s.ctx, cfg); err != nil {
			s.stopLocked()
			return fmt.Errorf("%s: %w", svc.Name(), err)
		}
		s.services = append(s.services, svc)
	}
	return nil
}

// stopLocked stops the running services, the last started first.
func (s *supervisor) stopLocked() {
	ctx, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
	defer cancel()
	for i := len(s.services) - 1; i >= 0; i-- {
		if err := s.services[i].Stop(ctx); err != nil {
			s.log.Warn("stop", "service", s.services[i].Name(), "err", err)
		}
	}
	s.services = nil
}

// appliedLocked logs and publishes new settings in force.
func (s *supervisor) appliedLocked(digest string, cfg *config.Config) int {
	s.generation++
	logApplied(s.log, s.generation, digest, cfg)
	s.env.Control.Publish(control.EventSettingsApplied)
	return s.generation
}

// Reload applies the settings file to every running service: the one
// path of every settings change (the control ops, "config reload").
func (s *supervisor) Reload(ctx context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next, digest, err := s.store.LoadDigest()
	if err != nil {
		s.log.Error(SettingsRefused, "sha256", digest, "err", oneLine(err), "running_generation", s.generation)
		return 0, err
	}
	s.env.Users.set(next)
	var errs []error
	for _, svc := range s.services {
		if err := svc.Reconfigure(next); err != nil {
			s.log.Error("reconfigure", "service", svc.Name(), "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", svc.Name(), err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		s.log.Error(SettingsRefused, "sha256", digest, "err", oneLine(err), "running_generation", s.generation)
		return 0, err
	}
	return s.appliedLocked(digest, next), nil
}

// Restart stops every service and starts a new set with the settings
// file and the SRS key.
func (s *supervisor) Restart(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg, digest, err := s.store.LoadDigest()
	if err != nil {
		return err
	}
	s.log.Info("restarting every service")
	s.stopLocked()
	if err := s.startLocked(cfg); err != nil {
		s.log.Error("restart", "err", err)
		return err
	}
	s.appliedLocked(digest, cfg)
	return nil
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// CheckAdmin checks the admin password through the login check of mail
// logins (limiter and bounded hashing).
func (s *supervisor) CheckAdmin(ctx context.Context, hash, password string, ip netip.Addr) error {
	return s.env.Users.CheckHash(ctx, control.AdminLogin, hash, password, ip)
}

// The events the supervisor logs about settings. Each names the SHA-256 of
// the settings file it read (attribute sha256). The control API publishes
// the same events (control.EventSettingsApplied), which is what the CLI
// and tests wait for.
const (
	// SettingsApplied: every service runs with the file's settings;
	// generation counts the settings applied since start (1: at start).
	SettingsApplied = "settings applied"
	// SettingsRefused: the file has errors, or a service refused it; the
	// settings of running_generation stay in force.
	SettingsRefused = "settings refused"
)

func logApplied(log *slog.Logger, generation int, digest string, cfg *config.Config) {
	log.Info(SettingsApplied, "generation", generation, "sha256", digest, "domains", len(cfg.Domains), "users", len(cfg.Users))
}

// lockDataDir makes sure one server runs per data directory (it also
// owns the control socket, which it may then replace when stale).
func lockDataDir(dir string) (func(), error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another concierge is already serving %s", dir)
	}
	return func() { f.Close() }, nil
}
