package nameservice

import (
	"fmt"

	"concierge/nbt/wire"
)

// Status is what "concierge nbt names" shows.
type Status struct {
	Interfaces []IfaceStatus     `json:"interfaces"`
	Names      []NameStatus      `json:"names"`
	WINS       bool              `json:"wins"`
	Table      []WINSName        `json:"wins_table"`
	Counters   map[string]uint64 `json:"counters"`
}

// IfaceStatus is one interface the service runs on.
type IfaceStatus struct {
	Name      string `json:"name"`
	Addr      string `json:"addr"`
	Broadcast string `json:"broadcast"`
	MAC       string `json:"mac"`
}

// NameStatus is one of the box's own names.
type NameStatus struct {
	Name         string `json:"name"`
	Type         string `json:"type"` // "unique" or "group"
	State        string `json:"state"`
	ConflictWith string `json:"conflict_with,omitempty"`
}

// Status returns the names, the WINS table and the counters.
func (s *Server) Status() Status {
	st := Status{WINS: s.cfg.WINS, Counters: map[string]uint64{}}
	s.mu.Lock()
	for _, l := range s.links {
		st.Interfaces = append(st.Interfaces, IfaceStatus{l.ifc.Name, l.ifc.Addr.String(), l.ifc.Broadcast.String(), l.ifc.MAC.String()})
	}
	s.mu.Unlock()
	for _, o := range s.ownList() {
		ns := NameStatus{Name: o.name.String(), Type: "unique", State: stateNames[o.state.Load()]}
		if o.group {
			ns.Type = "group"
		}
		o.mu.Lock()
		ns.ConflictWith = o.conflictWith
		o.mu.Unlock()
		st.Names = append(st.Names, ns)
	}
	st.Table = s.table.snapshot(s.cfg.now())
	c := &s.stats
	for op := range c.rxOpcode {
		if v := c.rxOpcode[op].Load(); v > 0 {
			st.Counters[fmt.Sprintf("rx opcode %d (%s)", op, opcodeName(op))] = v
		}
	}
	for k := range c.rxKind {
		if v := c.rxKind[k].Load(); v > 0 {
			st.Counters["rx "+wire.Kind(k).String()] = v
		}
		if v := c.txKind[k].Load(); v > 0 {
			st.Counters["tx "+wire.Kind(k).String()] = v
		}
	}
	for r := range c.txRcode {
		if v := c.txRcode[r].Load(); v > 0 {
			st.Counters[fmt.Sprintf("tx rcode %d (%s)", r, rcodeName(r))] = v
		}
	}
	for name, v := range map[string]uint64{
		"dropped malformed":                c.malformed.Load(),
		"dropped rate limited":             c.rateLimited.Load(),
		"dropped outside the LAN":          c.remote.Load(),
		"ignored":                          c.ignored.Load(),
		"send errors":                      c.sendErrors.Load(),
		"refused: owner at its name limit": c.ownerFull.Load(),
		"refused: table or group full":     c.tableFull.Load(),
		"granted TTL capped":               c.ttlCapped.Load(),
		"panics recovered":                 c.panics.Load(),
	} {
		if v > 0 {
			st.Counters[name] = v
		}
	}
	return st
}

func opcodeName(op int) string {
	switch op {
	case wire.OpQuery:
		return "query"
	case wire.OpRegistration:
		return "registration"
	case wire.OpRelease:
		return "release"
	case wire.OpWACK:
		return "wack"
	case wire.OpRefresh, wire.OpRefreshAlt:
		return "refresh"
	case wire.OpMultiHomed:
		return "multi-homed registration"
	}
	return "unknown"
}

func rcodeName(r int) string {
	return [...]string{"ok", "FMT_ERR", "SRV_ERR", "NAM_ERR", "IMP_ERR", "RFS_ERR", "ACT_ERR", "CFT_ERR",
		"8", "9", "10", "11", "12", "13", "14", "15"}[r]
}
