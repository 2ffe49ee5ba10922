package image_test

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"concierge/appliance/boot"
	"concierge/image/disk"
	"concierge/internal/firmware"
)

// blankData boots a copy of img whose data partition is all zeros (a box
// flashed with the system partition only): PID 1 writes the initramfs's
// file system template, mounts it on /perm and grows it to the
// partition; the services run with their data there. The first-run
// setup made on the page is still there after "Restart the box" on the
// firmware page, and the second boot formats and grows nothing.
func blankData(t *testing.T, img string) {
	image := filepath.Join(t.TempDir(), "disk.img")
	copyFile(t, img, image)
	f, err := os.OpenFile(image, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	off, size, err := disk.Find(f, firmware.DataPartition)
	if err == nil {
		_, err = f.WriteAt(make([]byte, size), off)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}

	v := startVM(t, image, vmMemory)
	v.waitLines(readyLine, 1, slowBootDeadline)
	c := v.console.String()
	for _, want := range []string{boot.FormattedLine, boot.GrownLine, `msg="boot: data partition mounted"`} {
		if !strings.Contains(c, want) {
			t.Fatalf("the console lacks %q; console:\n%s", want, tail(c))
		}
	}
	if strings.Contains(c, "will not survive a reboot") {
		t.Fatalf("the box runs on tmpfs; console:\n%s", tail(c))
	}
	t.Logf("%s", consoleLine(c, boot.FormattedLine))
	t.Logf("%s", consoleLine(c, boot.GrownLine))
	t.Logf("formatted, grown and serving %.1f s after QEMU started", timeSince(v))

	web := v.browser()
	web.setup()
	web.login()
	web.post("/firmware/reboot", url.Values{"csrf": {web.csrf("/firmware")}})
	v.waitLines(boot.UnmountedLine, 1, slowBootDeadline)
	v.waitLines(readyLine, 2, slowBootDeadline)
	c = v.console.String()
	if strings.Count(c, boot.FormattedLine) != 1 || strings.Count(c, boot.GrownLine) != 1 {
		t.Errorf("the second boot formatted or grew the data partition again; console:\n%s", tail(c))
	}
	if strings.Count(c, `msg="boot: data partition mounted"`) != 2 || strings.Contains(c, "will not survive a reboot") {
		t.Errorf("the second boot did not mount the data partition; console:\n%s", tail(c))
	}
	web = v.browser()
	web.login() // the admin password of the first boot's setup
	if page := web.get("/domains"); !strings.Contains(page, vmDomain) {
		t.Errorf("after the reboot the domains page does not list %s:\n%s", vmDomain, page)
	}
	v.stop()
	// The resize went to the disk with the clean unmount of the reboot.
	if sb := dataSuper(t, image); sb.Bytes != size {
		t.Errorf("the data file system has %d bytes; want the partition's %d", sb.Bytes, size)
	}
}
