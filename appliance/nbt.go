package appliance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	"concierge/appliance/config"
	"concierge/nbt/nameservice"
)

// nbtStatusSocket is the unix socket in the data directory where the
// running NetBIOS service hands its status to "concierge nbt names": one
// JSON document per connection. A socket rather than a status file, so
// nothing is written to the flash to keep it current.
const nbtStatusSocket = "nbt.sock"

// nbtWatch is how often the service looks at the LAN interfaces: it starts
// once one is up (none at boot does not fail the box) and restarts when
// their addresses change (a new DHCP lease, a cable moved).
const nbtWatch = 5 * time.Second

// nbtService runs the NetBIOS name service (nbt/nameservice).
type nbtService struct {
	env *Env

	mu      sync.Mutex
	cur     config.NBT
	srv     *nameservice.Server
	ifaces  string // the interfaces srv was started on, as compared by watch
	sock    net.Listener
	stopped chan struct{} // closed by Stop; ends the watch loop
}

func newNBTService(env *Env) Service {
	return &nbtService{env: env, stopped: make(chan struct{})}
}

func (s *nbtService) Name() string { return "nbt" }

func (s *nbtService) settings(c config.NBT) nameservice.Config {
	return nameservice.Config{
		Name:             c.Name,
		Workgroup:        c.Workgroup,
		Scope:            c.Scope,
		Interfaces:       c.Interfaces,
		WINS:             c.WINSServer,
		AllowRemote:      c.AllowRemote,
		NameTTL:          c.NameTTL.D(),
		WINSMinTTL:       c.WINSMinTTL.D(),
		WINSMaxTTL:       c.WINSMaxTTL.D(),
		MaxNamesPerOwner: c.WINSMaxNamesPerOwner,
		StateFile:        filepath.Join(s.env.DataDir, c.StateFile),
		SaveInterval:     c.SaveInterval.D(),
		RateLimit:        c.RateLimit,
		RateBurst:        c.RateBurst,
		ChallengeTimeout: c.ChallengeTimeout.D(),
		Log:              s.env.Log.With("service", "nbt"),
	}
}

func (s *nbtService) Start(ctx context.Context, cfg *config.Config) error {
	if err := s.openStatus(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur = cfg.NBT
	if err := s.startLocked(); err != nil {
		s.sock.Close()
		s.sock = nil
		return err
	}
	go s.watch()
	return nil
}

// ifaceKey describes the interfaces the service would run on now.
func ifaceKey(names []string) (string, error) {
	ifs, err := nameservice.Interfaces(names)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, i := range ifs {
		fmt.Fprintf(&b, "%s %s %v %s;", i.Name, i.Addr, i.Prefixes, i.MAC)
	}
	return b.String(), nil
}

// startLocked starts the server for s.cur. With no LAN interface up yet
// it leaves the start to watch instead of failing the whole box.
func (s *nbtService) startLocked() error {
	if !s.cur.Enabled {
		return nil
	}
	key, err := ifaceKey(s.cur.Interfaces)
	if errors.Is(err, nameservice.ErrNoInterface) {
		s.env.Log.Warn("nbt: no LAN interface with a broadcast address yet; waiting for one")
		return nil
	}
	srv, err := nameservice.New(s.settings(s.cur))
	if err != nil {
		return fmt.Errorf("nbt: %w", err)
	}
	if err := srv.ListenAndServe(); err != nil {
		srv.Close()
		return fmt.Errorf("nbt: %w", err)
	}
	s.srv, s.ifaces = srv, key
	return nil
}

// watch starts the server when an interface comes up and restarts it
// when the interfaces change.
func (s *nbtService) watch() {
	t := time.NewTicker(nbtWatch)
	defer t.Stop()
	for {
		select {
		case <-s.stopped:
			return
		case <-t.C:
		}
		s.mu.Lock()
		if s.cur.Enabled {
			key, err := ifaceKey(s.cur.Interfaces)
			switch {
			case s.srv == nil && err == nil:
				if err := s.startLocked(); err != nil {
					s.env.Log.Error("nbt: start", "err", err)
				}
			case s.srv != nil && key != s.ifaces:
				s.env.Log.Info("nbt: LAN interfaces changed; restarting the name service", "was", s.ifaces, "now", key, "err", err)
				s.stopLocked(context.Background())
				if err := s.startLocked(); err != nil {
					s.env.Log.Error("nbt: start", "err", err)
				}
			}
		}
		s.mu.Unlock()
	}
}

func (s *nbtService) Reconfigure(cfg *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if reflect.DeepEqual(s.cur, cfg.NBT) {
		return nil
	}
	// Names, interfaces and limits all live in the server: restart it.
	// Releasing the old names first lets the new ones be claimed.
	s.stopLocked(context.Background())
	s.cur = cfg.NBT
	return s.startLocked()
}

func (s *nbtService) stopLocked(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	s.srv, s.ifaces = nil, ""
	return err
}

func (s *nbtService) Stop(ctx context.Context) error {
	s.mu.Lock()
	select {
	case <-s.stopped:
	default:
		close(s.stopped)
	}
	err := s.stopLocked(ctx)
	sock := s.sock
	s.sock = nil
	s.mu.Unlock()
	if sock != nil {
		sock.Close()
		os.Remove(filepath.Join(s.env.DataDir, nbtStatusSocket))
	}
	return err
}

func (s *nbtService) Listening() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return nil
	}
	var out []string
	for _, i := range s.srv.Status().Interfaces {
		out = append(out, fmt.Sprintf("%-12s %s:137 udp+tcp (%s)", "nbt", i.Addr, i.Name))
	}
	return out
}

// nbtStatusDoc is what the status socket sends.
type nbtStatusDoc struct {
	Enabled bool                `json:"enabled"`
	Status  *nameservice.Status `json:"status,omitempty"`
}

// openStatus listens on the status socket, replacing a stale one.
func (s *nbtService) openStatus() error {
	path := filepath.Join(s.env.DataDir, nbtStatusSocket)
	os.Remove(path) // the pid file lock guarantees no other server owns it
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("nbt: status socket: %w", err)
	}
	os.Chmod(path, 0o600)
	s.mu.Lock()
	s.sock = l
	s.mu.Unlock()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			doc := nbtStatusDoc{Enabled: s.cur.Enabled}
			if s.srv != nil {
				st := s.srv.Status()
				doc.Status = &st
			}
			s.mu.Unlock()
			c.SetDeadline(time.Now().Add(2 * time.Second))
			json.NewEncoder(c).Encode(doc)
			c.Close()
		}
	}()
	return nil
}
