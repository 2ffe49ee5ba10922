package nameservice

import (
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
// and WORKGROUP<1E> browser election, both group names).
func ownNames(name, workgroup, scope string) ([]*ownName, error) {
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
	return out, nil
}

func (o *ownName) flags() uint16 {
	if o.group {
		return wire.NBGroup | wire.NBOntB
	}
	return wire.NBOntB
}

// findOwn returns the box's name equal to n, if any.
func (s *Server) findOwn(n wire.Name) *ownName {
	for _, o := range s.own {
		if o.name.Equal(n) {
			return o
		}
	}
	return nil
}

// claimAll registers every own name by broadcast on every interface
// (RFC 1001 15; RFC 1002 4.2.2, 4.2.3, 4.2.6): BcastRegRetries requests
// BcastRegInterval apart; a negative response from another node puts the
// name in conflict; silence claims it, announced by an overwrite demand.
func (s *Server) claimAll() {
	defer s.wg.Done()
	defer close(s.claimed)
	var wg sync.WaitGroup
	for _, o := range s.own {
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
	// The readiness line tests and admins wait for (Claimed is the same
	// event in process).
	counts := map[int32]int{}
	for _, o := range s.own {
		counts[o.state.Load()]++
	}
	s.log.Info("nbt: names claimed", "active", counts[stateActive], "conflict", counts[stateConflict])
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
			o.mu.Lock()
			o.conflictWith = r.src.Addr().String()
			o.mu.Unlock()
			o.state.Store(stateConflict)
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
	o.state.Store(stateActive)
	s.log.Info("nbt: name claimed", "name", o.name.String(), "group", o.group)
	for _, l := range links {
		p := wire.NewOverwriteDemand(id, o.name, ttl, wire.NB{Flags: o.flags(), Addr: l.ifc.Addr})
		s.sendPacket(l, p, netipAddrPort(l.ifc.Broadcast, l.port))
	}
}

// releaseAll broadcasts a release of every claimed name (RFC 1002 4.2.9).
func (s *Server) releaseAll() {
	s.mu.Lock()
	links := s.links
	s.mu.Unlock()
	for _, o := range s.own {
		if !o.state.CompareAndSwap(stateActive, stateReleased) {
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
	for _, o := range s.own {
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
