package appliance

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	"concierge/appliance/config"
	"concierge/appliance/control"
	"concierge/nbt/nameservice"
)

// nbtService runs the NetBIOS name service (nbt/nameservice).
type nbtService struct {
	env *Env

	mu      sync.Mutex
	cur     config.NBT
	srv     *nameservice.Server
	extra   *nbtExtra     // session and datagram services beside srv
	mailbox nbtMailbox    // datagrams to NAME<03>, across restarts
	ifaces  string        // the interfaces srv was started on, as compared by watch
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
		ExtraNames:       gatewayNames(c),
		Log:              s.env.Log.With("service", "nbt"),
	}
}

func (s *nbtService) Start(ctx context.Context, cfg *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur = cfg.NBT
	if err := s.startLocked(); err != nil {
		return err
	}
	go watchInterfaces(s.stopped, s.env.Log.With("service", "nbt"), s.look)
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
	extra, err := s.startExtra(srv, srv.Claimed())
	if err != nil {
		srv.Close()
		return err
	}
	s.srv, s.ifaces, s.extra = srv, key, extra
	go s.announce(srv, srv.Claimed())
	return nil
}

// announce publishes the names-claimed event once claimed is closed (srv
// holds its names), unless the service was stopped first.
func (s *nbtService) announce(srv *nameservice.Server, claimed <-chan struct{}) {
	select {
	case <-claimed:
	case <-s.stopped:
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == srv && s.env.Control != nil {
		s.env.Control.Publish(control.EventNamesClaimed)
	}
}

// look starts the server when an interface has come up and restarts it
// when the interfaces changed (watchInterfaces calls it).
func (s *nbtService) look() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.lookLocked(); err != nil {
		s.env.Log.Error("nbt: start", "err", err)
	}
}

func (s *nbtService) lookLocked() error {
	if !s.cur.Enabled {
		return nil
	}
	key, err := ifaceKey(s.cur.Interfaces)
	switch {
	case s.srv == nil && err == nil:
		return s.startLocked()
	case s.srv != nil && key != s.ifaces:
		s.env.Log.Info("nbt: LAN interfaces changed; restarting the name service", "was", s.ifaces, "now", key, "err", err)
		s.stopLocked(context.Background())
		return s.startLocked()
	}
	return nil
}

func (s *nbtService) Reconfigure(cfg *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if reflect.DeepEqual(s.cur, cfg.NBT) {
		// The settings are the same, but the addresses may have changed
		// (the network service, reconfigured first, set a new one).
		return s.lookLocked()
	}
	if s.srv != nil && namesOnly(s.cur, cfg.NBT) {
		if key, _ := ifaceKey(s.cur.Interfaces); key == s.ifaces {
			return s.renameLocked(cfg.NBT)
		}
	}
	// Interfaces, scope and limits live in the server: restart it.
	// Releasing the old names first lets the new ones be claimed.
	s.stopLocked(context.Background())
	s.cur = cfg.NBT
	return s.startLocked()
}

// namesOnly reports whether a and b differ at most in what the running
// name service takes live (its names) and the session, datagram and
// browse services beside it.
func namesOnly(a, b config.NBT) bool {
	clear := func(c config.NBT) config.NBT {
		c.Name, c.Workgroup, c.Comment = "", "", ""
		c.NBTSessions, c.NBTBrowse, c.NBTDatagram = config.NBTSessions{}, config.NBTBrowse{}, config.NBTDatagram{}
		return c
	}
	return a.Enabled && b.Enabled && reflect.DeepEqual(clear(a), clear(b))
}

// renameLocked applies c to the running name service without a restart:
// names it keeps are not claimed again, new ones are, dropped ones are
// released; the session and datagram services, cheap to start, restart
// with the new names.
func (s *nbtService) renameLocked(c config.NBT) error {
	claimed, err := s.srv.SetNames(c.Name, c.Workgroup, gatewayNames(c))
	if err != nil {
		return fmt.Errorf("nbt: %w", err)
	}
	s.cur = c
	s.extra.close()
	s.extra = nil
	extra, err := s.startExtra(s.srv, claimed)
	if err != nil {
		// Without the session and datagram services the box still
		// answers names; say so and let a restart bring them back.
		s.env.Log.Error("nbt: session and datagram services", "err", err)
		s.stopLocked(context.Background())
		return err
	}
	s.extra = extra
	go s.announce(s.srv, claimed)
	return nil
}

func (s *nbtService) stopLocked(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if s.extra != nil {
		s.extra.close()
	}
	err := s.srv.Shutdown(ctx)
	s.srv, s.ifaces, s.extra = nil, "", nil
	return err
}

func (s *nbtService) Stop(ctx context.Context) error {
	s.mu.Lock()
	select {
	case <-s.stopped:
	default:
		close(s.stopped)
	}
	defer s.mu.Unlock()
	return s.stopLocked(ctx)
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
		if s.extra != nil {
			out = append(out, fmt.Sprintf("%-12s %s:139 tcp (%s)", "nbt-session", i.Addr, i.Name))
		}
	}
	if s.extra != nil {
		out = append(out, fmt.Sprintf("%-12s 0.0.0.0:138 udp", "nbt-datagram"))
	}
	return out
}

// names is the state of the service for the control API.
func (s *nbtService) names() control.NBTNames {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := control.NBTNames{Enabled: s.cur.Enabled}
	if s.srv != nil {
		st := s.srv.Status()
		n.Status = &st
	}
	return n
}
