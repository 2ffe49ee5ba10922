package appliance

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"concierge/appliance/config"
	"concierge/appliance/control"
	"concierge/appliance/netif"
)

// netState is the box's network as the control API sees it: whether
// settings reach the interfaces, and the change on trial. It lives as
// long as the server (a restart of the services keeps a trial going).
type netState struct {
	force bool // serve -apply-network
	trial netif.Trial
}

func (n *netState) Applies(cfg *config.Config) bool { return n.force || cfg.Network.Apply }
func (n *netState) Links() ([]netif.Link, error)    { return netif.Links() }
func (n *netState) Trial() *netif.Trial             { return &n.trial }

// Network is the control API's view of the network.
func (s *supervisor) Network() control.Network { return s.env.Net }

// networkService sets the interfaces from the settings. It starts first
// and is reconfigured first, so the services after it (NetBIOS, the
// listeners) find the addresses in place.
type networkService struct {
	env *Env

	mu  sync.Mutex
	set []string // what it applied, for Listening
}

func newNetworkService(env *Env) Service { return &networkService{env: env} }

func (s *networkService) Name() string { return "network" }

func (s *networkService) Start(ctx context.Context, cfg *config.Config) error {
	return s.Reconfigure(cfg)
}

// Reconfigure brings every interface with a setting to it, keeping the
// old address of a change on trial beside the new one.
func (s *networkService) Reconfigure(cfg *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.set = nil
	if !s.env.Net.Applies(cfg) {
		return nil
	}
	var errs []error
	for _, ifc := range cfg.Network.Interfaces {
		want := netif.Want{Link: ifc.Name, Prefix: ifc.Prefix(), Gateway: ifc.GatewayAddr(), Keep: s.env.Net.trial.Keep(ifc.Name)}
		steps, err := netif.Apply(want)
		for _, st := range steps {
			s.env.Log.Info("network: "+st.String(), "interface", ifc.Name)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		line := fmt.Sprintf("%-12s %s %s", "network", ifc.Name, ifc.Address)
		if ifc.Gateway != "" {
			line += " via " + ifc.Gateway
		}
		for _, k := range want.Keep {
			line += " (and " + k.String() + " until the change is confirmed)"
		}
		s.set = append(s.set, line)
	}
	return errors.Join(errs...)
}

// Stop leaves the addresses as they are: mail and the setup page stay
// reachable while the server restarts.
func (s *networkService) Stop(ctx context.Context) error { return nil }

func (s *networkService) Listening() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.set...)
}
