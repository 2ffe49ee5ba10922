package web

import (
	"context"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"concierge/appliance/control"
	"concierge/internal/pwhash"
	"concierge/nbt/nameservice"
	nbss "concierge/nbt/session"
)

// liveNBT stands in for the running server's NetBIOS state; the other
// methods of control.Live are not used by the NetBIOS page.
type liveNBT struct {
	control.Live
	sess control.NBTSessions
}

func (l *liveNBT) NBTNames() control.NBTNames {
	return control.NBTNames{Enabled: true, Status: &nameservice.Status{}}
}
func (l *liveNBT) NBT() control.NBTLive          { return l }
func (l *liveNBT) Status() control.Status        { return control.Status{} }
func (l *liveNBT) Sessions() control.NBTSessions { return l.sess }
func (l *liveNBT) Send(string, string) error     { return nil }
func (l *liveNBT) Messages() []control.NBTMessage {
	return nil
}
func (l *liveNBT) CheckAdmin(ctx context.Context, hash, password string, _ netip.Addr) error {
	_, err := pwhash.Default.Verify(ctx, pwhash.Normal, hash, password)
	return err
}

// The NetBIOS page lists the open sessions and the session and datagram
// counters while the services run.
func TestNetBIOSPageShowsSessionsAndCounters(t *testing.T) {
	b := newTestBox(t, true)
	live := &liveNBT{sess: control.NBTSessions{Enabled: true, Running: true,
		Sessions: []nbss.SessionInfo{{ID: "s1", Remote: "10.0.0.7:50123", Called: "ACCOUNTS<20>", Calling: "PC7<00>",
			Target: "10.0.0.5:8080", Since: time.Date(2025, 3, 1, 9, 30, 0, 0, time.UTC), BytesIn: 1234, BytesOut: 5678}},
		SessionCounters:  map[string]uint64{"accepted": 3, "refused_not_present": 1},
		DatagramCounters: map[string]uint64{"received": 42, "reassembled": 2, "announcements": 5}}}
	ctl := control.New(control.Options{DataDir: b.dir, Live: live})
	b.ts.Close()
	b.ts = httptest.NewServer(New(Options{Control: ctl, Restart: func() {}}))
	c := b.client()
	c.mustLogin()
	r := c.get("/netbios")
	rows := r.tableRows("sessions")
	if len(rows) != 1 || !strings.Contains(rows[0], "10.0.0.7:50123") || !strings.Contains(rows[0], "ACCOUNTS<20>") ||
		!strings.Contains(rows[0], "10.0.0.5:8080") || !strings.Contains(rows[0], "1234") || !strings.Contains(rows[0], "5678") {
		t.Errorf("sessions table: %q", rows)
	}
	if rows := r.tableRows("session-counters"); strings.Join(rows, "|") != "accepted3|refused_not_present1" {
		t.Errorf("session counters: %q", rows)
	}
	if rows := r.tableRows("datagram-counters"); strings.Join(rows, "|") != "announcements5|reassembled2|received42" {
		t.Errorf("datagram counters: %q", rows)
	}

	// No session: the table says so.
	live.sess.Sessions = nil
	if rows := c.get("/netbios").tableRows("sessions"); len(rows) != 1 || !strings.Contains(rows[0], "No open session") {
		t.Errorf("empty sessions table: %q", rows)
	}
}
