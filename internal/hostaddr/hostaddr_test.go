package hostaddr

import (
	"context"
	"errors"
	"net/netip"
	"testing"
)

// Host names go through the lookup with their port kept (the default
// when none); addresses, and every name without a lookup, come back
// unchanged; a failed lookup names the host.
func TestResolve(t *testing.T) {
	lookup := func(_ context.Context, host string) ([]netip.Addr, error) {
		switch host {
		case "ntp.office.test":
			return []netip.Addr{netip.MustParseAddr("10.77.123.123"), netip.MustParseAddr("10.77.123.124")}, nil
		case "empty.test":
			return nil, nil
		}
		return nil, errors.New("NXDOMAIN")
	}
	for _, c := range []struct{ srv, want, err string }{
		{"ntp.office.test", "10.77.123.123:123", ""},
		{"ntp.office.test:1123", "10.77.123.123:1123", ""},
		{"192.0.2.1", "192.0.2.1", ""},
		{"[2001:db8::1]:123", "[2001:db8::1]:123", ""},
		{"nowhere.test", "", "looking up nowhere.test: NXDOMAIN"},
		{"empty.test", "", "looking up empty.test: no address"},
	} {
		got, err := Resolve(context.Background(), lookup, c.srv, "123")
		if got != c.want || (err == nil) != (c.err == "") || err != nil && err.Error() != c.err {
			t.Errorf("Resolve(%q) = %q, %v; want %q, %q", c.srv, got, err, c.want, c.err)
		}
	}
	if got, err := Resolve(context.Background(), nil, "pool.ntp.org", "123"); got != "pool.ntp.org" || err != nil {
		t.Errorf("without a Lookup: %q, %v", got, err)
	}
}
