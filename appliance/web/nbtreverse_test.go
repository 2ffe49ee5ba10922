package web

import (
	"net/http/httptest"
	"strings"
	"testing"

	"concierge/appliance/control"
	nbss "concierge/nbt/session"
)

// The NetBIOS page sets the reverse gateways (an error names the field)
// and lists them with their counters.
func TestNetBIOSPageReverseGateways(t *testing.T) {
	b := newTestBox(t, true)
	c := b.client()
	c.mustLogin()
	r := c.submit("/netbios", "reverse", map[string]string{"reverse_gateways": "8139=FILES#20, 139=OTHER"})
	if msg := r.fieldErrors()["reverse_gateways"]; !strings.Contains(msg, "nbt.reverse_gateways[1]") || !strings.Contains(msg, "137 to 139") {
		t.Fatalf("field errors %v (status %d)", r.fieldErrors(), r.status)
	}
	c.submitOK("/netbios", "reverse", map[string]string{"reverse_gateways": "8139=FILES#20, 8140=PRINTS"})
	f := c.get("/netbios").form(t, "/netbios", "reverse")
	if v := f.values.Get("reverse_gateways"); v != "8139=FILES#20, 8140=PRINTS" {
		t.Fatalf("form shows %q after saving", v)
	}

	live := &liveNBT{sess: control.NBTSessions{Enabled: true, Running: true,
		Reverse: []nbss.ReverseInfo{{Mapping: "8139=FILES<20>", Counters: map[string]uint64{"connections": 3, "established": 2, "name_not_found": 1}}}}}
	ctl := control.New(control.Options{DataDir: b.dir, Live: live})
	b.ts.Close()
	b.ts = httptest.NewServer(New(Options{Control: ctl, Restart: func() {}}))
	c = b.client()
	c.mustLogin()
	if rows := c.get("/netbios").tableRows("reverse-gateways"); len(rows) != 1 || !strings.HasPrefix(rows[0], "8139=FILES<20>321") {
		t.Errorf("reverse gateways table: %q", rows)
	}
}
