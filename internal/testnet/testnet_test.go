package testnet

import (
	"strings"
	"testing"
)

func TestLANHostsReachEachOther(t *testing.T) {
	Require(t, "ping")
	lan := NewLAN(t, "10.77.9.0/24")
	a := lan.AddHost("a", 1)
	b := lan.AddHost("b", 2)
	out := a.Run("ping", "-c", "1", "-W", "2", b.Addr.String())
	if !strings.Contains(out, "1 received") {
		t.Fatalf("ping a→b: %s", out)
	}
	if got := lan.Broadcast().String(); got != "10.77.9.255" {
		t.Fatalf("broadcast = %s", got)
	}
	if len(b.MAC()) != 17 {
		t.Fatalf("MAC %q", b.MAC())
	}
}
