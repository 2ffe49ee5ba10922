package netif

import (
	"testing"
	"time"

	"concierge/internal/testnet"
)

// Watch, subscribed inside a namespace of the test's, reports an address
// added and an interface taken down there, and closes its channel once
// done is closed.
func TestWatch(t *testing.T) {
	testnet.Require(t, "ip")
	lan := testnet.NewLAN(t, "10.77.31.0/24")
	h := lan.AddHost("box", 1)
	done := make(chan struct{})
	var changed <-chan struct{}
	if err := h.InNS(func() (err error) {
		changed, err = Watch(done)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	wait := func(what string) {
		t.Helper()
		select {
		case _, ok := <-changed:
			if !ok {
				t.Fatalf("the channel closed before %s", what)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no report of %s", what)
		}
	}
	h.Run("ip", "addr", "add", "10.77.32.1/24", "dev", h.IF)
	wait("an address added")
	h.Run("ip", "link", "set", h.IF, "down")
	wait("the interface going down")
	close(done)
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-changed:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("the channel stayed open after done")
		}
	}
}
