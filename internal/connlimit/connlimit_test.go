package connlimit

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
)

func TestLimits(t *testing.T) {
	var p Pool
	p.SetLimits(Limits{Total: 3, PerAddr: 2})
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	if p.Acquire(a) != nil || p.Acquire(a) != nil {
		t.Fatal("first two from a refused")
	}
	if err := p.Acquire(a); !errors.Is(err, ErrPerAddr) {
		t.Errorf("third from a: %v, want ErrPerAddr", err)
	}
	if err := p.Acquire(b); err != nil {
		t.Errorf("b refused: %v", err)
	}
	if err := p.Acquire(b); !errors.Is(err, ErrTotal) {
		t.Errorf("over the total: %v, want ErrTotal", err)
	}
	p.Release(a)
	if err := p.Acquire(b); err != nil {
		t.Errorf("b refused after a released one: %v", err)
	}
	p.Release(a)
	p.Release(b)
	p.Release(b)
	if p.Len() != 0 || len(p.perAddr) != 0 || len(p.perNet) != 0 {
		t.Errorf("counts left: %d %v %v", p.total, p.perAddr, p.perNet)
	}
}

func TestNetwork(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.77":                "192.0.2.0/24",
		"::ffff:198.51.100.9":       "198.51.100.0/24",
		"2001:db8:1:2:aaaa::1":      "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff:ffff::9": "2001:db8:1:2::/64",
		"fe80::1%eth0":              "fe80::/64",
	} {
		if got := Network(netip.MustParseAddr(in)); got.String() != want {
			t.Errorf("Network(%s) = %s, want %s", in, got, want)
		}
	}
	if got := Network(netip.Addr{}); got.IsValid() {
		t.Errorf("Network(zero) = %s", got)
	}
}

// The attack of issue 9 item 8: 20 connections from each of 10 addresses
// of one /24 take at most PerNet slots; another /24 and another /64 are
// still served.
func TestFloodFromOneNetwork(t *testing.T) {
	var p Pool
	p.SetLimits(Defaults())
	accepted, refused := 0, 0
	for host := 1; host <= 10; host++ {
		a := netip.MustParseAddr(fmt.Sprintf("203.0.113.%d", host))
		for range 20 {
			switch err := p.Acquire(a); {
			case err == nil:
				accepted++
			case errors.Is(err, ErrPerNet):
				refused++
			default:
				t.Fatalf("host %d: %v", host, err)
			}
		}
	}
	if accepted != DefaultPerNet || refused != 200-DefaultPerNet {
		t.Errorf("accepted %d, refused %d; want %d and %d", accepted, refused, DefaultPerNet, 200-DefaultPerNet)
	}
	if err := p.Acquire(netip.MustParseAddr("198.51.100.1")); err != nil {
		t.Errorf("another /24 refused: %v", err)
	}
	// One /64 with many addresses is one network.
	for i := range DefaultPerNet {
		if err := p.Acquire(netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", i+1))); err != nil {
			t.Fatalf("v6 %d: %v", i, err)
		}
	}
	if err := p.Acquire(netip.MustParseAddr("2001:db8::ffff:1")); !errors.Is(err, ErrPerNet) {
		t.Errorf("/64 over its limit: %v", err)
	}
	if err := p.Acquire(netip.MustParseAddr("2001:db8:0:1::1")); err != nil {
		t.Errorf("another /64 refused: %v", err)
	}
}

func TestZeroLimitsAreUnbounded(t *testing.T) {
	var p Pool
	a := netip.MustParseAddr("10.0.0.1")
	for i := range 1000 {
		if err := p.Acquire(a); err != nil {
			t.Fatalf("%d: %v", i, err)
		}
	}
}
