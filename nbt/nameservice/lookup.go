package nameservice

import (
	"net/netip"

	"concierge/nbt/wire"
)

// Holds reports whether the box holds n: one of its own names (or an
// ExtraNames entry) that is claimed. The session and datagram services
// ask this to choose between "not listening" and "not present".
func (s *Server) Holds(n wire.Name) bool {
	o := s.findOwn(n)
	return o != nil && o.state.Load() == stateActive
}

// Lookup resolves n from what the box knows without asking the network:
// its own claimed names (the addresses of its interfaces) and the WINS
// table. group says whether n is a group name.
func (s *Server) Lookup(n wire.Name) (addrs []netip.Addr, group bool, ok bool) {
	if o := s.findOwn(n); o != nil && o.state.Load() == stateActive {
		s.mu.Lock()
		for _, l := range s.links {
			addrs = append(addrs, l.ifc.Addr)
		}
		s.mu.Unlock()
		return addrs, o.group, true
	}
	es, _, ok := s.table.lookup(n, s.cfg.now())
	for _, e := range es {
		addrs = append(addrs, e.Addr)
		group = e.Group()
	}
	return addrs, group, ok
}
