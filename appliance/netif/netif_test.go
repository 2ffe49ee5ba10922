package netif

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestPlan(t *testing.T) {
	old, nw, other := pfx("10.77.0.1/24"), pfx("10.77.0.5/24"), pfx("10.9.0.1/16")
	v6 := pfx("fe80::1/64")
	gw := netip.MustParseAddr("10.77.0.254")
	tests := []struct {
		name string
		have Link
		want Want
		plan string
	}{
		{"nothing to do", Link{Up: true, Addrs: []netip.Prefix{nw, v6}}, Want{Prefix: nw}, ""},
		{"link down", Link{Addrs: []netip.Prefix{nw}}, Want{Prefix: nw}, "link up"},
		{"no address yet", Link{Up: true}, Want{Prefix: nw, Gateway: gw},
			"add address 10.77.0.5/24; default route via 10.77.0.254"},
		{"new address replaces the old; IPv6 left alone", Link{Up: true, Addrs: []netip.Prefix{old, v6}}, Want{Prefix: nw},
			"delete address 10.77.0.1/24; add address 10.77.0.5/24"},
		{"prefix length change", Link{Up: true, Addrs: []netip.Prefix{pfx("10.77.0.5/16")}}, Want{Prefix: nw},
			"delete address 10.77.0.5/16; add address 10.77.0.5/24"},
		{"trial: the old one comes back after the new one", Link{Up: true, Addrs: []netip.Prefix{old}}, Want{Prefix: nw, Keep: []netip.Prefix{old}},
			"delete address 10.77.0.1/24; add address 10.77.0.5/24; add address 10.77.0.1/24"},
		{"trial in force", Link{Up: true, Addrs: []netip.Prefix{nw, old}}, Want{Prefix: nw, Keep: []netip.Prefix{old}}, ""},
		{"confirmed: the old one goes", Link{Up: true, Addrs: []netip.Prefix{nw, old}}, Want{Prefix: nw}, "delete address 10.77.0.1/24"},
		{"rolled back: the new one goes", Link{Up: true, Addrs: []netip.Prefix{nw, old}}, Want{Prefix: old}, "delete address 10.77.0.5/24"},
		{"stray address", Link{Up: true, Addrs: []netip.Prefix{nw, other}}, Want{Prefix: nw}, "delete address 10.9.0.1/16"},
		{"same gateway", Link{Up: true, Addrs: []netip.Prefix{nw}, Gateway: gw}, Want{Prefix: nw, Gateway: gw}, ""},
		{"no gateway wanted: routes left alone", Link{Up: true, Addrs: []netip.Prefix{nw}, Gateway: gw}, Want{Prefix: nw}, ""},
	}
	for _, tt := range tests {
		var got []string
		for _, s := range Plan(tt.have, tt.want) {
			got = append(got, s.String())
		}
		if g := strings.Join(got, "; "); g != tt.plan {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, g, tt.plan)
		}
	}
}

func TestBroadcast(t *testing.T) {
	for in, want := range map[string]string{"10.77.0.5/24": "10.77.0.255", "10.77.1.9/23": "10.77.1.255", "172.16.4.1/12": "172.31.255.255"} {
		if got := Broadcast(pfx(in)).String(); got != want {
			t.Errorf("Broadcast(%s) = %s, want %s", in, got, want)
		}
	}
}

// fakeClock fires its timers when advanced.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at      time.Time
	f       func()
	stopped bool
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	tm := &fakeTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, tm)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !tm.stopped
		tm.stopped = true
		return was
	}
}

// advance moves the clock and runs the timers that are due (in this
// goroutine, so the test sees their effects at once).
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimer
	for _, tm := range c.timers {
		if !tm.stopped && !tm.at.After(c.now) {
			tm.stopped = true
			due = append(due, tm)
		}
	}
	c.mu.Unlock()
	sort.Slice(due, func(i, j int) bool { return due[i].at.Before(due[j].at) })
	for _, tm := range due {
		tm.f()
	}
}

func TestTrialRollsBackWhenNotConfirmed(t *testing.T) {
	clk := &fakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	tr := &Trial{Clock: clk}
	var rolled []string
	rollback := func(c Change) { rolled = append(rolled, fmt.Sprint(c.Link, " ", c.Old, "<-", c.New)) }
	c, err := tr.Begin(Change{Link: "eth0", Old: pfx("10.77.0.1/24"), New: pfx("10.77.0.5/24")}, DefaultRollbackAfter, rollback)
	if err != nil {
		t.Fatal(err)
	}
	if want := clk.now.Add(time.Minute); !c.Deadline.Equal(want) {
		t.Errorf("deadline %v, want %v", c.Deadline, want)
	}
	if k := tr.Keep("eth0"); len(k) != 1 || k[0] != pfx("10.77.0.1/24") {
		t.Errorf("Keep(eth0) = %v during the trial", k)
	}
	if k := tr.Keep("eth1"); k != nil {
		t.Errorf("Keep(eth1) = %v", k)
	}
	if _, err := tr.Begin(Change{Link: "eth1"}, time.Second, rollback); err != ErrTrialPending {
		t.Errorf("a second trial: %v, want ErrTrialPending", err)
	}
	clk.advance(59 * time.Second)
	if len(rolled) != 0 {
		t.Fatalf("rolled back after 59s: %v", rolled)
	}
	if _, err := tr.Confirm(netip.MustParseAddr("10.77.0.1")); err != ErrWrongAddress {
		t.Errorf("confirm from the old address: %v, want ErrWrongAddress", err)
	}
	clk.advance(time.Second)
	if fmt.Sprint(rolled) != "[eth0 10.77.0.1/24<-10.77.0.5/24]" {
		t.Fatalf("after 60s: rolled back %v", rolled)
	}
	if _, ok := tr.Pending(); ok {
		t.Error("still pending after the rollback")
	}
	if tr.Keep("eth0") != nil {
		t.Error("still keeps the old address after the rollback")
	}
	if _, err := tr.Confirm(netip.Addr{}); err != ErrNoTrial {
		t.Errorf("confirm after the rollback: %v, want ErrNoTrial", err)
	}
	clk.advance(time.Hour)
	if len(rolled) != 1 {
		t.Errorf("rolled back %d times", len(rolled))
	}
}

func TestTrialConfirmed(t *testing.T) {
	clk := &fakeClock{now: time.Unix(0, 0)}
	tr := &Trial{Clock: clk}
	rolled := 0
	if _, err := tr.Begin(Change{Link: "eth0", Old: pfx("10.77.0.1/24"), New: pfx("10.77.0.5/24")}, 5*time.Second, func(Change) { rolled++ }); err != nil {
		t.Fatal(err)
	}
	clk.advance(4 * time.Second)
	c, err := tr.Confirm(netip.MustParseAddr("::ffff:10.77.0.5"))
	if err != nil || c.New != pfx("10.77.0.5/24") {
		t.Fatalf("confirm from the new address: %v %v", c, err)
	}
	clk.advance(time.Minute)
	if rolled != 0 {
		t.Errorf("a confirmed change was rolled back")
	}
	if _, ok := tr.Pending(); ok || tr.Keep("eth0") != nil {
		t.Error("a confirmed change is still pending")
	}
	// The next change may start; Cancel ends it without a rollback.
	if _, err := tr.Begin(Change{Link: "eth0", Old: pfx("10.77.0.5/24"), New: pfx("10.77.0.6/24")}, time.Second, func(Change) { rolled++ }); err != nil {
		t.Fatal(err)
	}
	tr.Cancel()
	clk.advance(time.Minute)
	if rolled != 0 {
		t.Errorf("a cancelled change was rolled back")
	}
}
