package image_test

import (
	"bytes"
	"io"
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
// firmware page, and the second boot formats and grows nothing. A data
// partition with one byte that is not zero is never written: the box
// runs on tmpfs and the console says why.
func blankData(t *testing.T, img string) {
	image := filepath.Join(t.TempDir(), "disk.img")
	copyFile(t, img, image)
	before := fillData(t, image, nil)
	// Written onto a disk 64 MiB larger than the image: the data
	// partition grows into the rest of the disk first.
	if st, err := os.Stat(image); err != nil || os.Truncate(image, st.Size()+biggerDisk) != nil {
		t.Fatalf("making the disk bigger: %v", err)
	}

	v := startVM(t, image, vmMemory)
	v.waitLines(readyLine, 1, slowBootDeadline)
	c := v.console.String()
	for _, want := range []string{boot.PartitionGrownLine, boot.FormattedLine, boot.GrownLine, `msg="boot: data partition mounted"`} {
		if !strings.Contains(c, want) {
			t.Fatalf("the console lacks %q; console:\n%s", want, tail(c))
		}
	}
	if strings.Contains(c, "will not survive a reboot") {
		t.Fatalf("the box runs on tmpfs; console:\n%s", tail(c))
	}
	t.Logf("%s", consoleLine(c, boot.PartitionGrownLine))
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
	if strings.Count(c, boot.FormattedLine) != 1 || strings.Count(c, boot.GrownLine) != 1 || strings.Count(c, boot.PartitionGrownLine) != 1 {
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
	// The resize went to the disk with the clean unmount of the reboot;
	// the partition reaches the last whole MiB before the backup table.
	size := openData(t, image).Size()
	if size < before+biggerDisk-1<<20 {
		t.Errorf("the data partition has %d bytes after the boot; want about %d", size, before+biggerDisk)
	}
	if sb := dataSuper(t, image); sb.Bytes != size {
		t.Errorf("the data file system has %d bytes; want the partition's %d", sb.Bytes, size)
	}

	// Not blank: one byte that is not zero, 4 KiB in. The box runs on
	// tmpfs, says why, and leaves the partition as it was.
	copyFile(t, img, image)
	junk := make([]byte, before)
	junk[4096] = 0x42
	fillData(t, image, junk)
	v = startVM(t, image, vmMemory)
	v.waitLines(readyLine, 1, slowBootDeadline)
	c = v.console.String()
	v.stop()
	line := consoleLine(c, "not formatted")
	if line == "" || !strings.Contains(line, "will not survive a reboot") || strings.Contains(c, boot.FormattedLine) {
		t.Errorf("a data partition that is not blank: the console does not say it stays unformatted on tmpfs; console:\n%s", tail(c))
	}
	t.Logf("%s", line)
	if got := readData(t, image); !bytes.Equal(got, junk) {
		t.Error("the data partition that was not blank was written to")
	}
}

// biggerDisk is how much larger than the image the disk of the blank
// data test is.
const biggerDisk = 64 << 20

// fillData writes data (zeros when nil) over the data partition of the
// disk image and returns the partition's size.
func fillData(t *testing.T, image string, data []byte) int64 {
	t.Helper()
	f, err := os.OpenFile(image, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	off, size, err := disk.Find(f, firmware.DataPartition)
	if err == nil {
		if data == nil {
			data = make([]byte, size)
		}
		_, err = f.WriteAt(data, off)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return size
}

// readData reads the data partition of the disk image.
func readData(t *testing.T, image string) []byte {
	t.Helper()
	r := openData(t, image)
	b := make([]byte, r.Size())
	if _, err := r.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

// openData opens the data partition of a disk image (found in its GPT)
// for reading until the test ends.
func openData(t *testing.T, image string) *io.SectionReader {
	t.Helper()
	f, err := os.Open(image)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	off, size, err := disk.Find(f, firmware.DataPartition)
	if err != nil {
		t.Fatal(err)
	}
	return io.NewSectionReader(f, off, size)
}
