package nameservice

import (
	"strings"
	"testing"
	"time"

	"concierge/nbt/wire"
)

// A new name for the box takes effect at once: the old names are
// released, the new ones claimed, and the names in both sets (the
// workgroup's) are kept without a new claim.
func TestSetNamesKeepsUnchangedNames(t *testing.T) {
	var log logBuffer
	s, srv := startLocal(t, Config{WINS: true, Log: log.logger()})
	c := newClient(t, "127.0.0.1:0", srv)
	gw := wire.MustName("ACCOUNTS", 0x20, "")
	done, err := s.SetNames("NEWBOX", "WORKGROUP", []wire.Name{gw})
	if err != nil {
		t.Fatal(err)
	}
	// The old name is gone at once (the WINS server answers negatively
	// for a name nobody holds).
	if r := c.roundTrip(wire.NewQuery(1, wire.MustName("CONCIERGE", 0x20, ""), false, true)); r.Kind() != wire.KindNegativeQuery {
		t.Errorf("old name after the change: %s", r)
	}
	// The kept group name is answered throughout.
	if r := c.roundTrip(wire.NewQuery(2, wire.MustName("WORKGROUP", 0x1e, ""), false, true)); r.Kind() != wire.KindPositiveQuery {
		t.Errorf("kept name during the claim: %s", r)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("new names not claimed")
	}
	for i, n := range []wire.Name{wire.MustName("NEWBOX", 0x20, ""), wire.MustName("NEWBOX", 0x00, ""), gw} {
		if r := c.roundTrip(wire.NewQuery(uint16(10+i), n, false, true)); r.Kind() != wire.KindPositiveQuery {
			t.Errorf("new name %s: %s", n, r)
		}
	}
	out := log.String()
	for _, want := range []struct {
		line string
		n    int
	}{
		{`msg="nbt: name claimed" name=WORKGROUP<1e>`, 1},
		{`msg="nbt: name claimed" name=WORKGROUP<00>`, 1},
		{`msg="nbt: name claimed" name=NEWBOX<20>`, 1},
		{`msg="nbt: name claimed" name=ACCOUNTS<20>`, 1},
		{`msg="nbt: name released" name=CONCIERGE<20>`, 1},
		{`msg="nbt: name released" name=CONCIERGE<03>`, 1},
		{`msg="nbt: name released" name=WORKGROUP`, 0},
	} {
		if got := strings.Count(out, want.line); got != want.n {
			t.Errorf("%q logged %d times, want %d", want.line, got, want.n)
		}
	}
	st := s.Status()
	if len(st.Names) != 6 {
		t.Errorf("names after the change: %+v", st.Names)
	}
	// The same names again: nothing to claim, nothing released.
	done, _ = s.SetNames("NEWBOX", "WORKGROUP", []wire.Name{gw})
	<-done
	if !strings.Contains(log.String(), `msg="nbt: names changed" added=0 released=0 kept=6`) {
		t.Errorf("no-op change:\n%s", log.String())
	}
}
