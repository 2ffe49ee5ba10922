package appliance

import (
	"runtime/debug"
	"time"

	"concierge/appliance/control"
)

// Version is the firmware's version; the build sets it with
// -ldflags "-X concierge/appliance.Version=...". Without it, the module
// version or the VCS revision the binary was built from.
var Version = ""

func version() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v = s.Value[:12]
		}
	}
	if v == "" {
		v = "(devel)"
	}
	return v
}

// counterSource is a service with counters for the status page.
type counterSource interface {
	counters() map[string]uint64
}

// Status describes the running services.
func (s *supervisor) Status() control.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := control.Status{Version: version(), Started: s.started, Uptime: time.Since(s.started).Round(time.Second).String(),
		Generation: s.generation, QueueLength: control.QueueLength(s.env.DataDir), Services: []control.ServiceStatus{}, Memory: memory()}
	for _, svc := range s.services {
		ss := control.ServiceStatus{Name: svc.Name(), Up: true, Listening: svc.Listening()}
		if c, ok := svc.(counterSource); ok {
			ss.Counters = c.counters()
		}
		st.Services = append(st.Services, ss)
	}
	return st
}

// NBTNames is the state of the NetBIOS name service.
func (s *supervisor) NBTNames() control.NBTNames {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, svc := range s.services {
		if n, ok := svc.(*nbtService); ok {
			return n.names()
		}
	}
	return control.NBTNames{}
}

// DHCP is the state of the LAN's DHCP server.
func (s *supervisor) DHCP() control.DHCPStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, svc := range s.services {
		if d, ok := svc.(*dhcpService); ok {
			st, serving := d.Status()
			out := control.DHCPStatus{Enabled: d.enabled(), Serving: serving}
			if serving {
				out.Status = &st
			}
			return out
		}
	}
	return control.DHCPStatus{}
}

// NBT is the NetBIOS session and datagram services.
func (s *supervisor) NBT() control.NBTLive {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, svc := range s.services {
		if n, ok := svc.(*nbtService); ok {
			return nbtLive{n}
		}
	}
	return nil
}

// RecentLog returns the last n log lines.
func (s *supervisor) RecentLog(n int) []control.LogLine { return s.ring.recent(n) }

// Link is the dial-out link service.
func (s *supervisor) Link() control.LinkControl { return s.env.Link }

// Runner is the delivery service's queue runner.
func (s *supervisor) Runner() control.QueueRunner {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, svc := range s.services {
		if d, ok := svc.(*deliveryService); ok && d.runner != nil {
			return d.runner
		}
	}
	return nil
}

func (s *smtpService) counters() map[string]uint64 {
	if s.srv == nil {
		return nil
	}
	return map[string]uint64{
		"accepted": s.srv.Accepted.Load(),
		"rejected": s.srv.Rejected.Load(),
		"messages": s.srv.Messages.Load(),
		"panics":   s.srv.Panics(),
	}
}

func (s *pop3Service) counters() map[string]uint64 {
	if s.srv == nil {
		return nil
	}
	return s.srv.Counters()
}

func (s *nbtService) counters() map[string]uint64 {
	if st := s.names().Status; st != nil {
		return st.Counters
	}
	return nil
}

func (s *deliveryService) counters() map[string]uint64 {
	return map[string]uint64{"queued": uint64(control.QueueLength(s.env.DataDir))}
}
