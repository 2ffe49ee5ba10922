package image_test

import (
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"concierge/internal/firmware"
)

// debianKernel builds the image with Debian's own kernel
// (linux-image-amd64, "make image KERNEL=debian"): the manifest records
// the Debian package and its version, and the initramfs carries the
// modules the box needs, resolved from their .modinfo, in an order where
// each comes after what it depends on. (This kernel boots the same image
// through OVMF from 160 MB: docs/firmware.md, "Memory".)
func debianKernel(t *testing.T, root, cache string) {
	out := t.TempDir()
	cmd := exec.Command("go", "run", "./image/cmd/mkimage", "-out", out, "-cache", cache, "-version", "test-debian", "-kernel", "debian")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mkimage -kernel debian: %v\n%s", err, b)
	}
	f, err := os.Open(filepath.Join(out, "concierge.bundle"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := firmware.Read(f, hex.EncodeToString(firmware.DevKey().Public().(ed25519.PublicKey)))
	if err != nil {
		t.Fatalf("the bundle does not verify: %v", err)
	}
	if !strings.Contains(b.Manifest.Kernel, "(linux-image-") {
		t.Errorf("manifest kernel %q does not name the Debian package", b.Manifest.Kernel)
	}
	t.Logf("manifest kernel: %s", b.Manifest.Kernel)
	files, err := readNewc(b.Files[firmware.InitrdFile])
	if err != nil {
		t.Fatal(err)
	}
	order := strings.Fields(string(files["lib/modules/load.order"]))
	pos := map[string]int{}
	for i, p := range order {
		if _, ok := files[strings.TrimPrefix(p, "/")]; !ok {
			t.Errorf("load.order names %s, which the initramfs lacks", p)
		}
		pos[strings.TrimSuffix(filepath.Base(p), ".ko")] = i
	}
	for _, m := range []string{"virtio_net", "virtio_blk", "e1000e", "r8169", "igb", "ahci", "nvme", "ext4", "vfat", "button", "evdev"} {
		if _, ok := pos[m]; !ok {
			t.Errorf("the initramfs lacks the module %s; load order %v", m, order)
		}
	}
	// Dependencies first (.modinfo depends=): ext4 needs jbd2 and mbcache.
	for _, dep := range []string{"jbd2", "mbcache"} {
		if i, ok := pos[dep]; !ok || i > pos["ext4"] {
			t.Errorf("%s is not loaded before ext4: %v", dep, order)
		}
	}
	t.Logf("%d modules in the initramfs", len(order))
}

// readNewc reads a gzip'd newc cpio archive into a map of regular files.
func readNewc(gz []byte) (map[string][]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	align := func(n int) int { return (n + 3) &^ 3 }
	for off := 0; ; {
		if off+110 > len(data) || string(data[off:off+6]) != "070701" {
			return nil, fmt.Errorf("newc: no header at %d", off)
		}
		field := func(i int) int {
			v, _ := strconv.ParseUint(string(data[off+6+8*i:off+14+8*i]), 16, 32)
			return int(v)
		}
		mode, size, nameSize := field(1), field(6), field(11)
		name := string(data[off+110 : off+110+nameSize-1])
		body := align(off + 110 + nameSize)
		if name == "TRAILER!!!" {
			return files, nil
		}
		if body+size > len(data) {
			return nil, fmt.Errorf("newc: %s runs past the end", name)
		}
		if mode&0o170000 == 0o100000 {
			files[name] = data[body : body+size]
		}
		off = align(body + size)
	}
}
