package boot

import (
	"bytes"
	"compress/gzip"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// mkfs makes an ext4 file system image of size (mkfs.ext4's size
// argument) with extra options and returns its path.
func mkfs(t *testing.T, size string, opts ...string) string {
	t.Helper()
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 not installed")
	}
	p := filepath.Join(t.TempDir(), "fs")
	args := append(append([]string{"-q", "-F"}, opts...), p, size)
	if out, err := exec.Command("mkfs.ext4", args...).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v %s", err, out)
	}
	return p
}

// zeroStart writes n zero bytes at the start of the file p: its primary
// superblock is gone.
func zeroStart(t *testing.T, p string, n int) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(make([]byte, n), 0); err != nil {
		t.Fatal(err)
	}
}

// A partition is formatted only when it is blank: zero at its start and
// with no ext4 superblock, neither the primary one nor a backup. A file
// system whose start was wiped still has its backups and is never taken
// for blank, whatever its block size.
func TestCheckBlank(t *testing.T) {
	zeros := filepath.Join(t.TempDir(), "zeros")
	if err := os.WriteFile(zeros, make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	oneByte := filepath.Join(t.TempDir(), "onebyte")
	b := make([]byte, 4<<20)
	b[BlankBytes-1] = 1
	os.WriteFile(oneByte, b, 0o644)
	tailJunk := filepath.Join(t.TempDir(), "tail")
	b = make([]byte, 4<<20)
	copy(b[BlankBytes:], "what a file system that is not there left")
	os.WriteFile(tailJunk, b, 0o644)
	small := filepath.Join(t.TempDir(), "small")
	os.WriteFile(small, make([]byte, BlankBytes/2), 0o644)

	wiped := func(size string, opts ...string) string {
		p := mkfs(t, size, opts...)
		zeroStart(t, p, BlankBytes)
		return p
	}
	for _, c := range []struct {
		name, path string
		blank      bool
	}{
		{"all zeros", zeros, true},
		{"zeros, then something after the first MiB", tailJunk, true},
		{"one byte before 1 MiB", oneByte, false},
		{"smaller than 1 MiB", small, false},
		{"ext4 with 1 KiB blocks, its first MiB wiped", wiped("64M", "-b", "1024"), false},
		{"ext4 with 2 KiB blocks, its first MiB wiped", wiped("64M", "-b", "2048"), false},
		{"ext4 with 4 KiB blocks, its first MiB wiped", wiped("256M", "-b", "4096"), false},
	} {
		f, err := os.Open(c.path)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := f.Stat()
		err = checkBlank(f, fi.Size())
		f.Close()
		if c.blank && err != nil || !c.blank && !errors.Is(err, errNotBlank) {
			t.Errorf("%s: checkBlank: %v; want blank=%v", c.name, err, c.blank)
		} else {
			t.Logf("%s: %v", c.name, err)
		}
	}
}

// On a loop device: a blank partition gets the template, mounts and is
// grown to the partition; a damaged file system (its first MiB wiped) is
// left byte for byte as it was; an intact one is neither written nor,
// at its size, grown.
func TestPrepareDataLoop(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (loop devices, mount)")
	}
	if testing.Short() {
		t.Skip("loop devices and mounts (-short)")
	}
	tmpl := mkfs(t, "16M", "-b", "4096", "-T", "default", "-N", "8192")
	raw, err := os.ReadFile(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw)
	zw.Close()
	template := filepath.Join(t.TempDir(), "data.ext4.gz")
	os.WriteFile(template, gz.Bytes(), 0o644)

	const part = 96 << 20
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	blank := filepath.Join(t.TempDir(), "blank")
	os.WriteFile(blank, nil, 0o644)
	os.Truncate(blank, part)
	dev := loop(t, blank)
	sb, err := prepareData(log, dev, template)
	if err != nil || sb.Bytes != 16<<20 {
		t.Fatalf("blank partition: %+v, %v", sb, err)
	}
	dir := t.TempDir()
	if err := unix.Mount(dev, dir, "ext4", 0, ""); err != nil {
		t.Fatalf("mount the formatted partition: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, 0) })
	if !strings.Contains(logs.String(), FormattedLine) {
		t.Errorf("no %q in the log:\n%s", FormattedLine, logs.String())
	}
	// The online resize needs CAP_SYS_RESOURCE, which PID 1 has on the
	// box (the image test sees it grow) but a container may not.
	if hasCapability(t, unix.CAP_SYS_RESOURCE) {
		growData(log, dev, dir)
		if sb, err := readExt4Dev(dev); err != nil || sb.Bytes != part {
			t.Errorf("after growData: %+v, %v; want %d bytes", sb, err, part)
		}
		growData(log, dev, dir) // equal sizes: nothing
		if strings.Count(logs.String(), GrownLine) != 1 || strings.Contains(logs.String(), "WARN") {
			t.Errorf("log:\n%s", logs.String())
		}
	} else {
		t.Log("no CAP_SYS_RESOURCE here: the online resize is not tried")
	}
	t.Logf("log:\n%s", logs.String())

	// A superblock whose magic is damaged, and a file system whose first
	// MiB was wiped (1 KiB blocks, as the image shipped it before: its
	// backup superblock at 8193 KiB).
	badMagic := mkfs(t, "64M", "-b", "4096")
	f, err := os.OpenFile(badMagic, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0, 0}, sbOffset+sbMagic)
	f.Close()
	wiped := mkfs(t, "64M", "-b", "1024")
	zeroStart(t, wiped, BlankBytes)
	for _, damaged := range []string{badMagic, wiped} {
		before, _ := os.ReadFile(damaged)
		if _, err := prepareData(log, loop(t, damaged), template); err == nil || !strings.Contains(err.Error(), "not formatted") {
			t.Errorf("damaged file system: %v; want it left alone", err)
		} else {
			t.Logf("damaged file system: %v", err)
		}
		if after, _ := os.ReadFile(damaged); !bytes.Equal(before, after) {
			t.Error("the damaged file system was written to")
		}
	}
	intact := mkfs(t, "64M", "-b", "4096")
	before, _ := os.ReadFile(intact)
	if sb, err := prepareData(log, loop(t, intact), template); err != nil || sb.Bytes != 64<<20 {
		t.Errorf("intact file system: %+v, %v", sb, err)
	}
	if after, _ := os.ReadFile(intact); !bytes.Equal(before, after) {
		t.Error("the intact file system was written to")
	}
}

// hasCapability reports whether the process has the capability c in its
// effective set (/proc/self/status).
func hasCapability(t *testing.T, c int) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && n&(1<<c) != 0
		}
	}
	return false
}

// loop attaches the file p to a free loop device and returns its path.
func loop(t *testing.T, p string) string {
	t.Helper()
	out, err := exec.Command("losetup", "-f", "--show", p).CombinedOutput()
	if err != nil {
		t.Skipf("losetup: %v %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}
