package appliance

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"concierge/appliance/config"
	"concierge/internal/testnet"
)

// The health check of a firmware on trial asks the running services from
// inside the box: an SMTP banner, a POP3 greeting, the box's own NetBIOS
// name on port 137 and the setup page over HTTP. With all of them
// answering, the trial entry becomes permanent; with one silent (a POP3
// port that accepts and never greets), the deadline passes, the log names
// the check, and the entry stays on trial (issue 14: "the new slot becomes
// the default only after it reports healthy").
func TestHealthCheckMarksSlotGood(t *testing.T) {
	testnet.Require(t, "ss")
	lan := testnet.NewLAN(t, "10.77.141.0/24")
	h := lan.AddHost("box", 1)
	b := testnet.NewBox(t, h)
	a := h.Addr.String()
	b.CLI("config", "set", "pop3.listen", a+":110")
	b.CLI("config", "set", "nbt.enabled", "true")
	b.Start(25)
	cfg, err := (&config.Store{Dir: b.Data}).Load()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range healthProbes(cfg) {
		names = append(names, p.name+" "+p.addr)
	}
	if got := strings.Join(names, ", "); got != "smtp "+a+":25, pop3 "+a+":110, nbt CONCIERGE, web 127.0.0.1:80" {
		t.Errorf("probes: %s", got)
	}

	t.Run("healthy", func(t *testing.T) {
		boot := trialBootDir(t)
		var log testnet.SafeBuffer
		start := time.Now()
		// Started at once after the server: the probes wait for the
		// NetBIOS name claim.
		h.InNS(func() error {
			markGoodWhenHealthy(context.Background(), slog.New(slog.NewTextHandler(&log, nil)), boot, "B", healthProbes(cfg), 30*time.Second, func() error {
				t.Error("a healthy firmware asked for the reboot into the old slot")
				return nil
			})
			return nil
		})
		if _, err := os.Stat(filepath.Join(boot, "loader/entries/concierge-2-B.conf")); err != nil || !strings.Contains(log.String(), "slot marked good") {
			t.Fatalf("slot B not marked good (%v); log:\n%s", err, log.String())
		}
		t.Logf("every service answered; slot marked good %.2f s after the check started", time.Since(start).Seconds())
	})

	t.Run("pop3 silent", func(t *testing.T) {
		held := make(chan struct{})
		t.Cleanup(func() { close(held) })
		mute := h.ServeTCP(t, 0, func(net.Conn) { <-held }) // held open, never greeting
		silent := *cfg
		silent.POP3.Listen = mute
		boot := trialBootDir(t)
		var log testnet.SafeBuffer
		rebooted := false
		const deadline = 3 * time.Second
		start := time.Now()
		h.InNS(func() error {
			markGoodWhenHealthy(context.Background(), slog.New(slog.NewTextHandler(&log, nil)), boot, "B", healthProbes(&silent), deadline, func() error {
				rebooted = true
				return nil
			})
			return nil
		})
		took := time.Since(start)
		if _, err := os.Stat(filepath.Join(boot, "loader/entries/concierge-2-B+0-1.conf")); err != nil {
			t.Errorf("the trial entry changed: %v", err)
		}
		if !rebooted {
			t.Error("an unhealthy firmware on trial did not reboot into the old slot")
		}
		l := log.String()
		if !strings.Contains(l, "slot not marked good") || !strings.Contains(l, "pop3 ("+silent.POP3.Listen+") did not answer within 3s") || strings.Contains(l, "slot marked good") {
			t.Errorf("the log does not name the silent POP3 port:\n%s", l)
		}
		if took < deadline || took > deadline+HealthProbeTimeout {
			t.Errorf("the check gave up after %v; want the deadline, %v", took, deadline)
		}
	})
}

// trialBootDir is a boot partition whose slot B is being tried (the name
// systemd-boot gives the entry as it boots it) after slot A.
func trialBootDir(t *testing.T) string {
	dir := t.TempDir()
	entries := filepath.Join(dir, "loader", "entries")
	os.MkdirAll(entries, 0o755)
	for _, n := range []string{"concierge-1-A.conf", "concierge-2-B+0-1.conf"} {
		if err := os.WriteFile(filepath.Join(entries, n), []byte("title x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
