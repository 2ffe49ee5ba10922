package connlimit

import (
	"net/netip"
	"testing"
)

func TestLimits(t *testing.T) {
	var c Counter
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	if !c.Acquire(a, 3, 2) || !c.Acquire(a, 3, 2) {
		t.Fatal("first two from a refused")
	}
	if c.Acquire(a, 3, 2) {
		t.Error("third from a accepted over the per-address limit")
	}
	if !c.Acquire(b, 3, 2) {
		t.Error("b refused")
	}
	if c.Acquire(b, 3, 2) {
		t.Error("accepted over the total limit")
	}
	c.Release(a)
	if !c.Acquire(b, 3, 2) {
		t.Error("b refused after a released one")
	}
	c.Release(a)
	c.Release(b)
	c.Release(b)
	if c.total != 0 || len(c.perIP) != 0 {
		t.Errorf("counts left: %d %v", c.total, c.perIP)
	}
}
