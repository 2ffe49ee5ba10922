package image_test

import (
	"bytes"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"concierge/image/initramfs"
	"concierge/internal/firmware"
)

// markedGood is what the new firmware logs once its services are up
// and its slot keeps booting (appliance/firmware.go).
const markedGood = "slot marked good"

// slowBootDeadline bounds a boot in the subtests that do not measure
// boot time (acceptance 2's 60 s is the boot subtest's), e.g. a reboot
// into a new firmware until it passed its health check: the machine is
// shared and TCG slow under load.
const slowBootDeadline = 3 * bootDeadline

// updateImage boots the disk the boot test used, sets the box up and
// uploads a newer bundle on the setup page's firmware page, through the
// forwarded port: the box installs it into slot B and reboots; slot B
// comes up on trial with the new version, marks itself good, and the
// firmware page reports it (acceptance 4 and 6). Then a broken bundle
// (its initramfs has no init the kernel can run) goes in the same way
// into slot A: the trial boot panics, the kernel reboots, and
// systemd-boot, with the trial's one boot used up, starts slot B again.
func updateImage(t *testing.T, root, cache, bin, img string, v1 *firmware.Bundle) {
	out := t.TempDir()
	cmd := exec.Command("go", "run", "./image/cmd/mkimage", "-out", out, "-cache", cache, "-version", "test-2")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mkimage: %v\n%s", err, b)
	}
	v := startVM(t, img, vmMemory)
	v.waitLines(readyLine, 1, bootDeadline)
	web := v.browser()
	web.setup()
	web.login()
	// Acceptance 3: the domain and user of the first-run form, a relay
	// network added on the page, one message delivered to the user and
	// one that waits in the queue (the VM reaches no other network). The
	// update's reboot must keep all of it.
	web.post("/relay/add", url.Values{"csrf": {web.csrf("/relay")}, "cidr": {"192.168.1.0/24"}})
	v.swaks(vmUser+"@"+vmDomain, "kept-in-the-mailbox")
	v.swaks("friend@remote.test", "kept-in-the-queue")
	if q := web.get("/queue"); !strings.Contains(q, "friend@remote.test") {
		t.Fatalf("the queue page does not list the message to friend@remote.test:\n%s", q)
	}
	if page := web.get("/firmware"); !strings.Contains(page, "slot <strong>A</strong>") {
		t.Fatalf("the firmware page does not show slot A running:\n%s", page)
	}
	bundle, err := os.ReadFile(filepath.Join(out, "concierge.bundle"))
	if err != nil {
		t.Fatal(err)
	}
	web.upload(bundle)
	v.waitLines("rebooting into it on trial\" version=test-2 slot=B", 1, bootDeadline)
	// The trial boot, then the health check (appliance/health.go): a
	// generous bound, the machine is shared.
	v.waitLines(markedGood, 1, slowBootDeadline)
	if c := v.console.String(); !strings.Contains(c, "version=test-2 slot=B") {
		t.Fatalf("the update did not boot slot B with version test-2; console:\n%s", tail(c))
	}
	v.waitLines(readyLine, 2, bootDeadline)
	v.expectBanner(fwdSMTP, "220 ")
	web.login()
	page := web.get("/firmware")
	if !strings.Contains(page, "Version <strong>test-2</strong>, slot <strong>B</strong>") || !strings.Contains(page, "<td>B</td><td>test-2</td><td>good</td><td>boots next</td>") {
		t.Fatalf("after the update the firmware page does not report test-2 running from slot B:\n%s", page)
	}
	if r := web.get("/relay"); !strings.Contains(r, "192.168.1.0/24") {
		t.Errorf("after the reboot the relay network is gone:\n%s", r)
	}
	if q := web.get("/queue"); !strings.Contains(q, "friend@remote.test") {
		t.Errorf("after the reboot the queued message to friend@remote.test is gone:\n%s", q)
	}
	if msgs := v.fetchmail(vmUser, vmUserPass); len(msgs) != 1 || !strings.Contains(msgs[0], "kept-in-the-mailbox") {
		t.Errorf("after the reboot fetchmail collected %d messages, want the one sent before:\n%s", len(msgs), strings.Join(msgs, "\n---\n"))
	}
	t.Logf("version test-2, uploaded on the firmware page, booted from slot B and marked it good %.1f s after QEMU started", timeSince(v))

	broken := filepath.Join(t.TempDir(), "broken.bundle")
	writeBrokenBundle(t, broken, v1)
	data, err := os.ReadFile(broken)
	if err != nil {
		t.Fatal(err)
	}
	web.upload(data)
	v.waitLines("rebooting into it on trial\" version=test-broken slot=A", 1, bootDeadline)
	// The trial boot panics at once; the next boot comes up.
	v.console.Wait(2*slowBootDeadline, v.exited, func(c string) bool {
		return strings.Count(c, readyLine) >= 3 || strings.Count(c, "Kernel panic") >= 3
	})
	c := v.console.String()
	if strings.Count(c, readyLine) < 3 {
		t.Fatalf("the VM did not come back after the broken update (%d panics); console:\n%s", strings.Count(c, "Kernel panic"), tail(c))
	}
	if !strings.Contains(c, "No working init found") {
		t.Errorf("the broken firmware was not tried; console:\n%s", tail(c))
	}
	if strings.Count(c, "version=test-2 slot=B") < 2 || strings.Count(c, markedGood) != 1 {
		t.Fatalf("after the broken update the VM did not come back on slot B unchanged; console:\n%s", tail(c))
	}
	web.login()
	page = web.get("/firmware")
	if !strings.Contains(page, "slot <strong>B</strong>") || !strings.Contains(page, "<td>A</td><td>test-broken</td><td>failed its trial</td>") {
		t.Fatalf("after the failed trial the firmware page does not show slot B running and A failed:\n%s", page)
	}
	t.Logf("the broken firmware in slot A failed its trial; slot B (test-2) was up again %.1f s after QEMU started", timeSince(v))
	v.stop()
}

// writeBrokenBundle writes a bundle signed with the development key whose
// initramfs's /init is not a program: the kernel panics ("No working init
// found") and, with panic=5, reboots.
func writeBrokenBundle(t *testing.T, path string, v1 *firmware.Bundle) {
	ar := initramfs.New()
	ar.Add(initramfs.File{Path: "init", Mode: 0o755, Data: []byte("not a program\n")})
	var initrd, out bytes.Buffer
	if _, err := ar.WriteTo(&initrd); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{firmware.KernelFile: v1.Files[firmware.KernelFile], firmware.InitrdFile: initrd.Bytes()}
	if err := firmware.Write(&out, firmware.Manifest{Version: "test-broken", Kernel: v1.Manifest.Kernel}, files, firmware.DevKey()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
