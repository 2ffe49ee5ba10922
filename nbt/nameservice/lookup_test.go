package nameservice

import (
	"testing"

	"concierge/nbt/wire"
)

// Extra names are claimed and answered like the box's own; Holds and
// Lookup see them, and the WINS table, without asking the network.
func TestExtraNamesHoldsLookup(t *testing.T) {
	gw := wire.MustName("ACCOUNTS", 0x20, "")
	s, srv := startLocal(t, Config{WINS: true, ExtraNames: []wire.Name{gw, wire.MustName("CONCIERGE", 0x20, "")}})
	c := newClient(t, "127.0.0.1:0", srv)
	r := c.roundTrip(wire.NewQuery(7, gw, false, true))
	if r.Kind() != wire.KindPositiveQuery || addrs(t, r)[0] != "127.0.0.1" {
		t.Fatalf("query for the extra name: %s", r)
	}
	if len(s.ownList()) != 6 {
		t.Fatalf("%d own names, the duplicate was not dropped", len(s.ownList()))
	}
	if !s.Holds(gw) || s.Holds(wire.MustName("NOBODY", 0x20, "")) {
		t.Fatal("Holds")
	}
	if a, group, ok := s.Lookup(wire.MustName("WORKGROUP", 0x1e, "")); !ok || !group || len(a) != 1 || a[0].String() != "127.0.0.1" {
		t.Fatalf("Lookup own group: %v %v %v", a, group, ok)
	}
	if _, _, ok := s.Lookup(wire.MustName("NOBODY", 0x20, "")); ok {
		t.Fatal("Lookup of an unknown name")
	}
}
