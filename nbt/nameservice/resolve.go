package nameservice

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"concierge/nbt/wire"
)

// ErrNameNotFound is returned by Resolve for a name that neither the box,
// its WINS table nor any node on the LAN answered for.
var ErrNameNotFound = errors.New("nameservice: name not found")

// Resolve finds the addresses of n as a B-node that is also the NBNS
// would: from what the box knows (Lookup: its own names and the WINS
// table), else by a broadcast NAME QUERY REQUEST on every interface,
// sent BcastRegRetries times BcastRegInterval apart (RFC 1001 15.1.1,
// RFC 1002 6: BCAST_REQ_RETRY_COUNT and BCAST_REQ_RETRY_TIMEOUT). For a
// unique name the first positive answer is taken; for a group name the
// answers of one interval are gathered.
func (s *Server) Resolve(ctx context.Context, n wire.Name) (addrs []netip.Addr, group bool, err error) {
	if addrs, group, ok := s.Lookup(n); ok {
		return addrs, group, nil
	}
	s.mu.Lock()
	links := slices.Clone(s.links)
	s.mu.Unlock()
	if len(links) == 0 {
		return nil, false, ErrClosed
	}
	ch := make(chan reply, 16)
	id := s.newID(ch)
	defer s.dropID(id)
	q := wire.NewQuery(id, n, true, false)
	for range BcastRegRetries {
		for _, l := range links {
			s.sendPacket(l, q, netipAddrPort(l.ifc.Broadcast, l.port))
		}
		t := time.NewTimer(BcastRegInterval)
	wait:
		for {
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, false, ctx.Err()
			case <-s.ctx.Done():
				t.Stop()
				return nil, false, ErrClosed
			case r := <-ch:
				if r.p.Kind() != wire.KindPositiveQuery {
					continue
				}
				for _, rr := range r.p.Answers {
					es, err := wire.ParseNB(rr.Data)
					if err != nil || !rr.Name.Equal(n) {
						continue
					}
					for _, e := range es {
						group = e.Group()
						if e.Addr.Is4() && !e.Addr.IsUnspecified() && !slices.Contains(addrs, e.Addr) {
							addrs = append(addrs, e.Addr)
						}
					}
				}
				if len(addrs) > 0 && !group {
					t.Stop()
					return addrs, false, nil
				}
			case <-t.C:
				break wait
			}
		}
		if len(addrs) > 0 {
			return addrs, group, nil
		}
	}
	return nil, false, fmt.Errorf("%w: %s", ErrNameNotFound, n)
}

// Members returns the addresses the WINS table holds for the group name n
// (RFC 1001 17.3: the NBDD relays group datagrams to them). The box's own
// membership is not among them.
func (s *Server) Members(n wire.Name) []netip.Addr {
	es, _, ok := s.table.lookup(n, s.cfg.now())
	if !ok || len(es) == 0 || !es[0].Group() {
		return nil
	}
	out := make([]netip.Addr, 0, len(es))
	for _, e := range es {
		out = append(out, e.Addr)
	}
	return out
}

// Nodes returns every address that holds a name in the WINS table, at
// most max of them: where the NBDD relays a BROADCAST datagram. Owners
// that expired within the last second (the housekeeping sweep) may be
// among them.
func (s *Server) Nodes(max int) []netip.Addr {
	t := s.table
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]netip.Addr, 0, min(len(t.owned), max))
	for a := range t.owned {
		if len(out) == max {
			break
		}
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}
