package nameservice

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"concierge/nbt/wire"
)

// States of one of the box's own names.
const (
	stateRegistering int32 = iota // broadcast registration in progress: not answered
	stateActive                   // claimed: answered and defended
	stateConflict                 // another node owns it: never answered
	stateReleased                 // given up at shutdown
)

var stateNames = [...]string{"registering", "active", "conflict", "released"}

// ownName is one of the box's names.
type ownName struct {
	name  wire.Name
	group bool
	state atomic.Int32
	// conflictWith is the node that objected, for the status.
	mu           sync.Mutex
	conflictWith string
}

// ownNames lists the names a file server of its workgroup claims
// (NAME<00> workstation, NAME<03> messenger, NAME<20> server; WORKGROUP<00>
// and WORKGROUP<1E> browser election, both group names), then the extra
// unique names that are not among them.
func ownNames(name, workgroup, scope string, extra []wire.Name) ([]*ownName, error) {
	var out []*ownName
	for _, d := range []struct {
		base   string
		suffix byte
		group  bool
	}{{name, 0x00, false}, {name, 0x03, false}, {name, 0x20, false}, {workgroup, 0x00, true}, {workgroup, 0x1e, true}} {
		n, err := wire.MakeName(d.base, d.suffix, scope)
		if err != nil {
			return nil, err
		}
		out = append(out, &ownName{name: n, group: d.group})
	}
	for _, n := range extra {
		if findName(out, n) == nil {
			out = append(out, &ownName{name: n})
		}
	}
	return out, nil
}

// ownList returns the box's names as they are now.
func (s *Server) ownList() []*ownName { return *s.own.Load() }

func findName(list []*ownName, n wire.Name) *ownName {
	for _, o := range list {
		if o.name.Equal(n) {
			return o
		}
	}
	return nil
}

func (o *ownName) flags() uint16 {
	if o.group {
		return wire.NBGroup | wire.NBOntB
	}
	return wire.NBOntB
}

// findOwn returns the box's name equal to n, if any.
func (s *Server) findOwn(n wire.Name) *ownName { return findName(s.ownList(), n) }

// SetNames changes the box's names while the server runs, in its scope
// (RFC 1001 15.1.1): names it holds in both sets are kept as they are,
// without a new claim; new names are claimed by broadcast; dropped ones
// are released. The channel is closed once the new names are claimed or
// in conflict (at once when there are none).
func (s *Server) SetNames(name, workgroup string, extra []wire.Name) (<-chan struct{}, error) {
	next, err := ownNames(name, workgroup, s.cfg.Scope, extra)
	if err != nil {
		return nil, fmt.Errorf("nameservice: %w", err)
	}
	s.setMu.Lock()
	defer s.setMu.Unlock()
	prev := s.ownList()
	var added []*ownName
	for i, o := range next {
		if old := findName(prev, o.name); old != nil && old.group == o.group {
			next[i] = old // kept with its state
		} else {
			added = append(added, o)
		}
	}
	var dropped []*ownName
	for _, o := range prev {
		if findName(next, o.name) == nil {
			dropped = append(dropped, o)
		}
	}
	s.own.Store(&next)
	done := make(chan struct{})
	s.mu.Lock()
	running := s.started && !s.closed
	if running {
		s.wg.Add(1)
	}
	s.mu.Unlock()
	s.log.Info("nbt: names changed", "added", len(added), "released", len(dropped), "kept", len(next)-len(added))
	if !running {
		close(done) // claimAll claims the new list at the start
		return done, nil
	}
	s.releaseOwn(dropped)
	go func() {
		defer s.wg.Done()
		defer close(done)
		s.claimEach(added)
	}()
	return done, nil
}

// claimAll registers every own name by broadcast on every interface
// (RFC 1001 15; RFC 1002 4.2.2, 4.2.3, 4.2.6): BcastRegRetries requests
// BcastRegInterval apart; a negative response from another node puts the
// name in conflict; silence claims it, announced by an overwrite demand.
func (s *Server) claimAll() {
	defer s.wg.Done()
	defer close(s.claimed)
	s.claimEach(s.ownList())
}

// claimEach claims the names of list at once, then logs the readiness
// line tests and admins wait for (Claimed is the same event in process).
func (s *Server) claimEach(list []*ownName) {
	var wg sync.WaitGroup
	for _, o := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.claim(o)
		}()
	}
	wg.Wait()
	if s.ctx.Err() != nil {
		return
	}
	counts := map[int32]int{}
	for _, o := range s.ownList() {
		counts[o.state.Load()]++
	}
	s.log.Info("nbt: names claimed", "active", counts[stateActive], "conflict", counts[stateConflict], "claimed_now", len(list))
}

func (s *Server) claim(o *ownName) {
	ch := make(chan reply, 4)
	id := s.newID(ch)
	defer s.dropID(id)
	s.mu.Lock()
	links := s.links
	s.mu.Unlock()
	ttl := ttlSeconds(s.cfg.NameTTL)
	t := time.NewTimer(0)
	defer t.Stop()
	for try := 0; try <= BcastRegRetries; {
		select {
		case <-s.ctx.Done():
			return
		case r := <-ch:
			if r.p.Kind() != wire.KindNegativeRegistration || s.isOwnAddr(r.src.Addr()) {
				continue
			}
			if !o.state.CompareAndSwap(stateRegistering, stateConflict) {
				return // dropped by SetNames meanwhile
			}
			o.mu.Lock()
			o.conflictWith = r.src.Addr().String()
			o.mu.Unlock()
			s.log.Error("nbt: NetBIOS name conflict: another node owns the name; not claiming it",
				"name", o.name.String(), "owner", r.src.Addr(), "rcode", r.p.Rcode)
			return
		case <-t.C:
			if try == BcastRegRetries {
				try++
				continue
			}
			for _, l := range links {
				p := wire.NewRegistration(id, o.name, ttl, wire.NB{Flags: o.flags(), Addr: l.ifc.Addr}, true)
				s.sendPacket(l, p, netipAddrPort(l.ifc.Broadcast, l.port))
			}
			try++
			t.Reset(BcastRegInterval)
		}
	}
	if !o.state.CompareAndSwap(stateRegistering, stateActive) {
		return // dropped by SetNames meanwhile
	}
	s.log.Info("nbt: name claimed", "name", o.name.String(), "group", o.group)
	for _, l := range links {
		p := wire.NewOverwriteDemand(id, o.name, ttl, wire.NB{Flags: o.flags(), Addr: l.ifc.Addr})
		s.sendPacket(l, p, netipAddrPort(l.ifc.Broadcast, l.port))
	}
}

// releaseAll broadcasts a release of every claimed name (RFC 1002 4.2.9).
func (s *Server) releaseAll() { s.releaseOwn(s.ownList()) }

// releaseOwn gives up the names of list: a broadcast release of those that
// were claimed (RFC 1002 4.2.9); a claim in progress stops.
func (s *Server) releaseOwn(list []*ownName) {
	s.mu.Lock()
	links := s.links
	s.mu.Unlock()
	for _, o := range list {
		if o.state.Swap(stateReleased) != stateActive {
			continue
		}
		id := s.newID(nil)
		for _, l := range links {
			p := wire.NewRelease(id, o.name, wire.NB{Flags: o.flags(), Addr: l.ifc.Addr}, true)
			s.sendPacket(l, p, netipAddrPort(l.ifc.Broadcast, l.port))
		}
		s.dropID(id)
		s.log.Info("nbt: name released", "name", o.name.String())
	}
}

// nodeStatus builds the NBSTAT answer for a link (RFC 1002 4.2.18).
func (s *Server) nodeStatus(l *link) *wire.NodeStatus {
	st := &wire.NodeStatus{}
	for _, o := range s.ownList() {
		f := o.flags()
		switch o.state.Load() {
		case stateActive:
			f |= wire.NameACT
		case stateConflict:
			f |= wire.NameACT | wire.NameCNF
		default:
			continue
		}
		st.Names = append(st.Names, wire.NodeName{Label: o.name.Label, Flags: f})
	}
	copy(st.Stats.UnitID[:], l.ifc.MAC)
	return st
}

func ttlSeconds(d time.Duration) uint32 {
	s := d / time.Second
	if s > 0xffffffff {
		return 0xffffffff
	}
	return uint32(s)
}
