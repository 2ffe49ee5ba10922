package nameservice

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"concierge/nbt/wire"
)

// DOMAIN<1C> keeps at most 25 domain controllers, as Windows WINS does:
// each member is refreshed on its own, and when the group is full a new
// member takes the place of the one refreshed longest ago.
func TestWINSDomainControllersGroup(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	tb := newTable(100, 10, time.Minute, time.Hour)
	dc := wire.MustName("OFFICE", suffixDomainControllers, "")
	addr := func(i int) netip.Addr { return netip.MustParseAddr(fmt.Sprintf("10.1.0.%d", i)) }
	for i := 1; i <= maxDomainMembers; i++ {
		// Registered unique by a careless DC: still a group member.
		if res, _ := tb.register(dc, i%2 == 0, addr(i), 0, time.Hour, now.Add(time.Duration(i)*time.Second)); res != regDone {
			t.Fatalf("member %d: %v", i, res)
		}
	}
	// Member 1 refreshes: now member 2 is the oldest.
	later := now.Add(time.Minute)
	if res, _ := tb.register(dc, true, addr(1), 0, time.Hour, later); res != regDone {
		t.Fatalf("refresh: %v", res)
	}
	if res, _ := tb.register(dc, true, addr(26), 0, time.Hour, later); res != regDone {
		t.Fatalf("26th member: %v", res)
	}
	es, _, ok := tb.lookup(dc, later)
	if !ok || len(es) != maxDomainMembers {
		t.Fatalf("members: %d", len(es))
	}
	got := map[netip.Addr]bool{}
	for _, e := range es {
		if !e.Group() {
			t.Errorf("%s answered without the G flag", e.Addr)
		}
		got[e.Addr] = true
	}
	if !got[addr(1)] || got[addr(2)] || !got[addr(26)] {
		t.Errorf("after the 26th: 1 %v, 2 %v, 26 %v; want the refreshed one kept and the oldest replaced", got[addr(1)], got[addr(2)], got[addr(26)])
	}
	if tb.owned[addr(2)] != 0 {
		t.Errorf("the replaced member still counts a name: %d", tb.owned[addr(2)])
	}
	// Members run out one by one: past member 3's expiry (registered at
	// +3s for an hour) members 1 and 26 (refreshed at +1m) remain.
	es, _, _ = tb.lookup(dc, now.Add(time.Hour+30*time.Second))
	if len(es) != 2 {
		t.Errorf("after the first members expired: %d members, want 2", len(es))
	}

	// An ordinary group keeps its larger bound and refuses the next.
	g := wire.MustName("OFFICE", 0x00, "")
	for i := 1; i <= maxGroupMembers; i++ {
		a := netip.AddrFrom4([4]byte{10, 2, byte(i / 200), byte(i % 200)})
		if res, _ := tb.register(g, true, a, wire.NBGroup, time.Hour, now); res != regDone {
			t.Fatalf("group member %d: %v", i, res)
		}
	}
	if res, _ := tb.register(g, true, netip.MustParseAddr("10.3.0.1"), wire.NBGroup, time.Hour, now); res != regFull {
		t.Errorf("member %d of an ordinary group: %v, want regFull", maxGroupMembers+1, res)
	}
}

// DOMAIN<1B> is unique even when registered with the G flag: a second
// address conflicts with the first (and gets challenged) instead of
// joining it, and the answer carries no G flag.
func TestWINSDomainMasterBrowserUnique(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	tb := newTable(100, 10, time.Minute, time.Hour)
	dmb := wire.MustName("OFFICE", suffixDomainMaster, "")
	a, b := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.1.0.2")
	if res, _ := tb.register(dmb, true, a, wire.NBGroup, time.Hour, now); res != regDone {
		t.Fatalf("first: %v", res)
	}
	res, cur := tb.register(dmb, true, b, wire.NBGroup, time.Hour, now)
	if res != regConflict || cur != a {
		t.Fatalf("second address: %v %s, want a conflict with %s", res, cur, a)
	}
	es, _, _ := tb.lookup(dmb, now)
	if len(es) != 1 || es[0].Group() || es[0].Addr != a {
		t.Errorf("answer: %+v", es)
	}
	// A state file written with <1B> as a group of two loads as unique,
	// and one with 30 members of <1C> loads 25.
	path := filepath.Join(t.TempDir(), "wins.json")
	old := newTable(100, 10, time.Minute, time.Hour)
	old.m[key(dmb)] = &entry{name: dmb, group: true, owners: []owner{{a, wire.NBGroup, now.Add(time.Hour)}, {b, wire.NBGroup, now.Add(time.Hour)}}}
	dc := wire.MustName("OFFICE", suffixDomainControllers, "")
	e := &entry{name: dc, group: true}
	for i := range 30 {
		e.owners = append(e.owners, owner{netip.AddrFrom4([4]byte{10, 4, 0, byte(i + 1)}), wire.NBGroup, now.Add(time.Hour)})
	}
	old.m[key(dc)] = e
	old.dirty = true
	if _, _, err := old.save(path, now, true, 0); err != nil {
		t.Fatal(err)
	}
	nt := newTable(100, 10, time.Minute, time.Hour)
	if _, err := nt.load(path, now); err != nil {
		t.Fatal(err)
	}
	if es, _, _ := nt.lookup(dmb, now); len(es) != 1 || es[0].Group() {
		t.Errorf("loaded <1B>: %+v", es)
	}
	if es, _, _ := nt.lookup(dc, now); len(es) != maxDomainMembers {
		t.Errorf("loaded <1C>: %d members", len(es))
	}
}
