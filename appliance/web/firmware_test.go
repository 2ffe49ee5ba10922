package web

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"concierge/appliance/control"
	"concierge/internal/firmware"
	"concierge/internal/pwhash"
)

// liveFirmware stands in for a server that does not run from a firmware
// image (a development machine), with the boot partition's slots of a
// box; the other methods of control.Live are not used by the page.
type liveFirmware struct {
	control.Live
	rebooted, poweredOff bool
}

func (l *liveFirmware) Firmware() control.FirmwareStatus {
	return control.FirmwareStatus{Version: "test-1", Slots: []control.FirmwareSlot{
		{Slot: "B", Version: "test-2", Trial: true, Good: true, BootsNext: true},
		{Slot: "A", Version: "test-1", Good: true},
	}}
}
func (l *liveFirmware) Reboot() error   { l.rebooted = true; return control.ErrNotOnBox }
func (l *liveFirmware) PowerOff() error { l.poweredOff = true; return control.ErrNotOnBox }
func (l *liveFirmware) CheckAdmin(ctx context.Context, hash, password string, _ netip.Addr) error {
	_, err := pwhash.Default.Verify(ctx, pwhash.Normal, hash, password)
	return err
}

func testBundle(t *testing.T, key ed25519.PrivateKey) []byte {
	var buf bytes.Buffer
	files := map[string][]byte{firmware.KernelFile: []byte("kernel"), firmware.InitrdFile: []byte("initramfs")}
	if err := firmware.Write(&buf, firmware.Manifest{Version: "test-2", Kernel: "6.1"}, files, key); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The firmware page shows the running version and the slots, and its
// upload verifies the bundle: a damaged one or one signed with another
// key is refused next to the file field; a good one is refused on a
// server that is not the box's init, with a message saying so, and
// nothing reboots.
func TestFirmwarePageUpload(t *testing.T) {
	b := newTestBox(t, true)
	live := &liveFirmware{}
	ctl := control.New(control.Options{DataDir: b.dir, Live: live})
	b.ts.Close()
	b.ts = httptest.NewServer(New(Options{Control: ctl, Restart: func() {}}))
	c := b.client()
	c.mustLogin()
	r := c.get("/firmware")
	if r.status != http.StatusOK || !strings.Contains(r.byID("firmware-running"), "test-1") || !strings.Contains(r.byID("firmware-running"), "not booted from a firmware image") {
		t.Fatalf("firmware page: %d %q", r.status, r.byID("firmware-running"))
	}
	if rows := r.tableRows("firmware-slots"); strings.Join(rows, "|") != "Btest-2on trialboots next|Atest-1good" {
		t.Errorf("slots: %q", rows)
	}
	good := testBundle(t, firmware.DevKey())
	damaged := bytes.Clone(good)
	i := bytes.Index(damaged, []byte("initramfs"))
	damaged[i] ^= 1
	other := testBundle(t, ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"damaged", damaged, "does not match the SHA-256"},
		{"other key", other, "not signed with this box's key"},
		{"not a bundle", []byte("hello"), "not a firmware bundle"},
		{"good, not on a box", good, "does not run from a firmware image"},
	} {
		f := c.get("/firmware").form(t, "/firmware", "firmware-apply")
		r := c.postFile(f.action, url.Values{"csrf": {f.values.Get("csrf")}}, "bundle", tc.data)
		if r.status != http.StatusUnprocessableEntity || !strings.Contains(r.fieldErrors()["bundle"], tc.want) {
			t.Errorf("%s: %d, errors %v %q; want %q next to the file", tc.name, r.status, r.fieldErrors(), r.byClass("error"), tc.want)
		}
	}
	if live.rebooted {
		t.Error("a refused update rebooted")
	}
	// The restart button asks for a reboot, which a server that is not
	// the box's init refuses, saying so.
	f := c.get("/firmware").form(t, "/firmware", "firmware-reboot")
	if r := c.post(f.action, f.values); r.status != http.StatusUnprocessableEntity || !strings.Contains(r.byClass("error"), "does not run from a firmware image") || !live.rebooted {
		t.Errorf("restart off the box: %d %q (reboot asked: %v)", r.status, r.byClass("error"), live.rebooted)
	}
	f = c.get("/firmware").form(t, "/firmware", "firmware-poweroff")
	if r := c.post(f.action, f.values); r.status != http.StatusUnprocessableEntity || !strings.Contains(r.byClass("error"), "nothing to reboot or switch off") || !live.poweredOff {
		t.Errorf("power-off off the box: %d %q (power-off asked: %v)", r.status, r.byClass("error"), live.poweredOff)
	}
	// Bigger than a bundle can be: refused before it is read.
	f = c.get("/firmware").form(t, "/firmware", "firmware-apply")
	if r := c.postFile(f.action, url.Values{"csrf": {f.values.Get("csrf")}}, "bundle", make([]byte, MaxBundleBytes+MaxFormBytes+1)); r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("an oversized bundle: %d, want 413", r.status)
	}
}

// byID is the text of the element with the id.
func (r *response) byID(id string) string {
	var out string
	if r.doc != nil {
		walk(r.doc, func(n *html.Node) {
			if n.Type == html.ElementNode && attr(n, "id") == id {
				out = text(n)
			}
		})
	}
	return out
}
