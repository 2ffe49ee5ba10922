package control

import (
	"context"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"strings"
	"time"

	"concierge/appliance/config"
	"concierge/appliance/netif"
)

// The network ops.
const (
	OpNetworkShow = "network.show" // → NetworkShow
	// OpNetworkSet sets an interface's static address: {interface,
	// address, gateway, dns, via} → NetworkChange. via is the box's
	// address the request came in on (the setup page gives it): when
	// the change takes that address away, it runs on trial.
	OpNetworkSet = "network.set"
	// OpNetworkConfirm makes the change on trial final: {via} →
	// NetworkChange. From the setup page it must come in on the new
	// address.
	OpNetworkConfirm = "network.confirm"
)

// Network is what the network ops need of the running server.
type Network interface {
	// Applies says whether settings reach the interfaces (network.apply,
	// or serve -apply-network).
	Applies(cfg *config.Config) bool
	// Links reads the interfaces live.
	Links() ([]netif.Link, error)
	// Trial holds the change waiting for confirmation.
	Trial() *netif.Trial
}

// NetworkShow is the network settings with the interfaces' live state.
type NetworkShow struct {
	// Apply is true when settings reach the interfaces; else they are
	// kept and shown only.
	Apply         bool               `json:"apply"`
	RollbackAfter string             `json:"rollback_after"`
	Interfaces    []config.Interface `json:"interfaces"`
	Links         []netif.Link       `json:"links"`
	LinksError    string             `json:"links_error,omitempty"`
	// Trial is the change waiting for confirmation (server only).
	Trial *netif.Change `json:"trial,omitempty"`
	// Live is true when a running server answered.
	Live bool `json:"live"`
}

// NetworkChange is the result of network.set and network.confirm.
type NetworkChange struct {
	Applied
	// Apply is false when the settings were only saved (network.apply
	// is off).
	Apply bool `json:"apply"`
	// Trial is the change on trial: the admin must confirm it from the
	// new address before the deadline.
	Trial *netif.Change `json:"trial,omitempty"`
	// Moved are the listen settings that followed the address.
	Moved []string `json:"moved,omitempty"`
}

// RollbackTimeout bounds the undoing of an unconfirmed change.
const RollbackTimeout = 30 * time.Second

func init() {
	register(map[string]opDef{
		OpNetworkShow: {run: (*Service).networkShow},
		OpNetworkSet: {args: []string{"interface", "address", "gateway", "dns", "via"}, run: (*Service).networkSet,
			fields: map[string]string{"interface": "interface", "address": "address", "gateway": "gateway", "dns": "dns", "*": "address"}},
		OpNetworkConfirm: {args: []string{"via"}, live: true, run: (*Service).networkConfirm},
	})
}

func (s *Service) network() Network {
	if s.opt.Live == nil {
		return nil
	}
	return s.opt.Live.Network()
}

func (s *Service) networkShow(ctx context.Context, a Args) (any, error) {
	cfg, err := s.load()
	if err != nil {
		return nil, err
	}
	r := NetworkShow{Apply: cfg.Network.Apply, RollbackAfter: cfg.Network.RollbackAfter.String(), Interfaces: cfg.Network.Interfaces}
	links := netif.Links
	if n := s.network(); n != nil {
		r.Live, r.Apply, links = true, n.Applies(cfg), n.Links
		if c, ok := n.Trial().Pending(); ok {
			r.Trial = &c
		}
	}
	if r.Links, err = links(); err != nil {
		r.LinksError = err.Error()
	}
	return r, nil
}

func parseVia(v string) (netip.Addr, error) {
	if v == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return a, invalid("via", "%q is not an IP address", v)
	}
	return a.Unmap().WithZone(""), nil
}

func (s *Service) networkSet(ctx context.Context, a Args) (any, error) {
	name := strings.TrimSpace(a["interface"])
	via, err := parseVia(a["via"])
	if err != nil {
		return nil, err
	}
	s.edit.Lock()
	defer s.edit.Unlock()
	n := s.network()
	var link netif.Link // the interface as it is now
	if n != nil {
		if c, ok := n.Trial().Pending(); ok {
			return nil, invalid("address", "the change of %s to %s waits for confirmation until %s; confirm it from %s or let it be undone first",
				c.Link, c.New, c.Deadline.Format(time.TimeOnly), c.New.Addr())
		}
		links, _ := n.Links()
		for _, l := range links {
			if l.Name == name {
				link = l
			}
		}
	}
	prev, err := os.ReadFile(s.store.Path())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var (
		before  *config.Interface // the setting it replaces
		applies bool
		newP    netip.Prefix
		moved   []string
	)
	cfg, err := s.store.Update(func(c *config.Config) error {
		if cur := c.Network.Interface(name); cur != nil {
			b := *cur
			before = &b
		}
		if err := c.SetInterface(name, strings.TrimSpace(a["address"]), strings.TrimSpace(a["gateway"]), a["dns"]); err != nil {
			return err
		}
		newP = c.Network.Interface(name).Prefix()
		applies = n != nil && n.Applies(c)
		if !applies {
			return nil
		}
		// The listeners bound to the address it had follow it.
		old := netip.Prefix{}
		if before != nil {
			old = before.Prefix()
		} else if v4 := link.IPv4(); len(v4) > 0 {
			old = v4[0]
		}
		if old.IsValid() && old.Addr() != newP.Addr() {
			moved = c.MoveListeners(old.Addr(), newP.Addr())
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	r := NetworkChange{Apply: applies, Moved: moved}
	// A change that takes away the address the request came in on cuts
	// the admin off: it runs on trial, keeping that address until it is
	// confirmed from the new one.
	var cut netip.Prefix
	for _, p := range link.IPv4() {
		if applies && via.IsValid() && p.Addr() == via && via != newP.Addr() {
			cut = p
		}
	}
	if cut.IsValid() {
		gw := link.Gateway
		c, err := n.Trial().Begin(netif.Change{Link: name, Old: cut, New: newP}, cfg.Network.RollbackAfter.D(), func(c netif.Change) {
			s.networkRollback(c, before, gw)
		})
		if err != nil {
			s.putBack(prev)
			return nil, invalid("address", "%v", err)
		}
		r.Trial = &c
		s.opt.Log.Info("network: change on trial", "interface", name, "new", newP, "old", cut, "deadline", c.Deadline)
	}
	r.Applied, err = s.apply(ctx, prev)
	if err != nil {
		if r.Trial != nil {
			n.Trial().Cancel()
		}
		return nil, err
	}
	return r, nil
}

// networkRollback undoes a change that was not confirmed in time: the
// interface's setting as it was (or, when it had none, the address that
// was cut off), and the listeners back on the old address.
func (s *Service) networkRollback(c netif.Change, before *config.Interface, gw netip.Addr) {
	ctx, cancel := context.WithTimeout(context.Background(), RollbackTimeout)
	defer cancel()
	s.opt.Log.Warn("network: the change was not confirmed in time; undoing it", "interface", c.Link, "new", c.New, "back_to", c.Old)
	_, err := s.update(ctx, func(cfg *config.Config) error {
		if before != nil {
			if err := cfg.SetInterface(before.Name, before.Address, before.Gateway, strings.Join(before.DNS, ",")); err != nil {
				return err
			}
		} else {
			err := errors.New("no gateway")
			if gw.IsValid() && c.Old.Contains(gw) {
				err = cfg.SetInterface(c.Link, c.Old.String(), gw.String(), "")
			}
			if err != nil {
				if err := cfg.SetInterface(c.Link, c.Old.String(), "", ""); err != nil {
					return err
				}
			}
		}
		cfg.MoveListeners(c.New.Addr(), c.Old.Addr())
		return nil
	})
	if err != nil {
		s.opt.Log.Error("network: undoing the change failed", "interface", c.Link, "err", err)
		return
	}
	s.opt.Log.Info(NetworkRolledBack, "interface", c.Link, "address", c.Old)
}

// NetworkRolledBack is logged when a change on trial was undone.
const NetworkRolledBack = "network change undone"

func (s *Service) networkConfirm(ctx context.Context, a Args) (any, error) {
	via, err := parseVia(a["via"])
	if err != nil {
		return nil, err
	}
	s.edit.Lock()
	defer s.edit.Unlock()
	c, err := s.network().Trial().Confirm(via)
	switch {
	case errors.Is(err, netif.ErrNoTrial):
		return nil, &Error{Code: CodeNotFound, Message: "no network change waits for confirmation (it may have been undone already)"}
	case errors.Is(err, netif.ErrWrongAddress):
		return nil, &Error{Code: CodeInvalid, Message: "confirm from the new address " + c.New.Addr().String() + ": that proves the office reaches the box there"}
	case err != nil:
		return nil, err
	}
	s.opt.Log.Info("network: change confirmed", "interface", c.Link, "address", c.New)
	// The old address, kept for the trial, goes.
	gen, err := s.opt.Live.Reload(ctx)
	if err != nil {
		return nil, err
	}
	return NetworkChange{Applied: Applied{Live: true, Generation: gen}, Apply: true, Trial: &c}, nil
}
