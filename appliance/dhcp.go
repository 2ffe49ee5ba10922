package appliance

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"time"

	"concierge/appliance/config"
	"concierge/dhcpd"
)

// dhcpLeaseFile is the lease file of the DHCP server in the data directory.
const dhcpLeaseFile = "dhcp-leases.json"

// dhcpService runs the LAN's DHCP server (dhcpd) when dhcp.enabled is set.
type dhcpService struct {
	env *Env

	mu    sync.Mutex
	cur   config.DHCP
	scope string // the NetBIOS scope, sent as option 47
	// ifaces are the network settings the server's address came from:
	// when they change (network.set), the server reads its interface's
	// address again (its server identifier, default WINS and pool).
	ifaces  []config.Interface
	srv     *dhcpd.Server
	stopped chan struct{}
}

func newDHCPService(env *Env) Service {
	return &dhcpService{env: env, stopped: make(chan struct{})}
}

func (s *dhcpService) Name() string { return "dhcp" }

// settings copies the configuration onto the server's settings. The
// configuration was validated, so the addresses parse.
func (s *dhcpService) settings(c config.DHCP, scope string) dhcpd.Config {
	addrs := func(list []string) []netip.Addr {
		var out []netip.Addr
		for _, a := range list {
			if ip, err := netip.ParseAddr(a); err == nil {
				out = append(out, ip)
			}
		}
		return out
	}
	d := dhcpd.Config{
		Interface:    c.Interface,
		LeaseTime:    c.LeaseTime.D(),
		DNS:          addrs(c.DNSServers),
		Domain:       c.Domain,
		WINS:         addrs(c.WINS),
		NetBIOSScope: scope,
		LeaseFile:    filepath.Join(s.env.DataDir, dhcpLeaseFile),
		ProbeTimeout: c.ProbeTimeout.D(),
		Log:          s.env.Log.With("service", "dhcp"),
	}
	if d.ProbeTimeout == 0 {
		d.ProbeTimeout = -1 // off
	}
	if c.RangeStart != "" {
		d.RangeStart, _ = netip.ParseAddr(c.RangeStart)
		d.RangeEnd, _ = netip.ParseAddr(c.RangeEnd)
	}
	if c.Router != "" {
		d.Routers = addrs([]string{c.Router})
	}
	for _, r := range c.Reservations {
		if mac, ip, err := config.ParseReservation(r); err == nil {
			d.Reservations = append(d.Reservations, dhcpd.Reservation{MAC: mac, IP: ip})
		}
	}
	return d
}

func (s *dhcpService) Start(ctx context.Context, cfg *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur, s.scope, s.ifaces = cfg.DHCP, cfg.NBT.Scope, slices.Clone(cfg.Network.Interfaces)
	go watchInterfaces(s.stopped, s.env.Log.With("service", "dhcp"), s.look)
	return s.startLocked()
}

// startLocked starts the server for s.cur. A LAN interface without an
// address yet leaves the start to watch; other errors (a range outside
// the subnet) are reported.
func (s *dhcpService) startLocked() error {
	if !s.cur.Enabled || s.srv != nil {
		return nil
	}
	srv, err := dhcpd.New(s.settings(s.cur, s.scope))
	if errors.Is(err, dhcpd.ErrNoInterface) {
		s.env.Log.Warn("dhcp: LAN interface not ready; waiting for it", "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("dhcp: %w", err)
	}
	if err := srv.ListenAndServe(); err != nil {
		srv.Close()
		return fmt.Errorf("dhcp: %w", err)
	}
	s.srv = srv
	return nil
}

// look starts an enabled server whose interface was not ready, and
// moves a running one to its interface's address when that changed
// outside the settings (an "ip addr" from a shell, another program);
// watchInterfaces calls it on the kernel's reports.
func (s *dhcpService) look() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.cur.Enabled {
		return
	}
	if s.srv == nil {
		if err := s.startLocked(); err != nil {
			s.env.Log.Error("dhcp: start", "err", err)
		}
		return
	}
	name, was := s.srv.Addr()
	_, now, err := dhcpd.InterfaceAddr(name)
	if err != nil || now == was {
		// An interface without an address keeps its server (and leases)
		// on the last one until an address comes back.
		return
	}
	s.env.Log.Info("dhcp: the LAN interface's address changed; serving from the new one", "interface", name, "was", was, "now", now)
	if err := s.srv.Reconfigure(s.settings(s.cur, s.scope)); err != nil {
		s.env.Log.Error("dhcp: following the interface's address", "err", err)
	}
}

func (s *dhcpService) Reconfigure(cfg *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if reflect.DeepEqual(s.cur, cfg.DHCP) && s.scope == cfg.NBT.Scope && reflect.DeepEqual(s.ifaces, cfg.Network.Interfaces) {
		return nil
	}
	s.cur, s.scope, s.ifaces = cfg.DHCP, cfg.NBT.Scope, slices.Clone(cfg.Network.Interfaces)
	if !s.cur.Enabled {
		return s.stopLocked(context.Background())
	}
	if s.srv == nil {
		return s.startLocked() // enabling: checks for other servers
	}
	// Options, pool and reservations change in place, keeping the
	// leases; another interface needs a new server.
	err := s.srv.Reconfigure(s.settings(s.cur, s.scope))
	if errors.Is(err, dhcpd.ErrRestart) {
		s.stopLocked(context.Background())
		return s.startLocked()
	}
	if err != nil {
		return fmt.Errorf("dhcp: %w", err)
	}
	return nil
}

func (s *dhcpService) stopLocked(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	s.srv = nil
	return err
}

func (s *dhcpService) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.stopped:
	default:
		close(s.stopped)
	}
	return s.stopLocked(ctx)
}

func (s *dhcpService) Listening() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return nil
	}
	st := s.srv.Status()
	return []string{fmt.Sprintf("%-12s 0.0.0.0:67 udp (%s, %s, pool %s)", "dhcp", st.Interface, st.Addr, st.Range)}
}

// enabled reports whether the settings turn the server on.
func (s *dhcpService) enabled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur.Enabled
}

// Status returns the DHCP server's leases, counters and the other servers
// it saw, for the status page and the control API; false when it is off.
func (s *dhcpService) Status() (dhcpd.Status, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return dhcpd.Status{}, false
	}
	return s.srv.Status(), true
}
