package image_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"concierge/image/qemu"
	"concierge/internal/firmware"
)

// The VM of the boot test. OVMF is the UEFI firmware that runs
// systemd-boot from the image's boot partition.
const (
	ovmf = qemu.OVMF
	// vmMemory is acceptance 2's memory. The box's own kernel
	// (image/kernel) boots through OVMF in it; Debian's needs 160 MB
	// there (its EFI stub decompresses into a 64 MiB buffer while OVMF
	// still holds ~49 MiB; measured, see docs/firmware.md).
	vmMemory = "128"
	// bootDeadline is acceptance 2's bound from QEMU start to every
	// service answering.
	bootDeadline = 60 * time.Second
	// readyLine is what "concierge serve" prints once every service
	// listens.
	readyLine = "concierge: serving from data directory"
	// boxName is the default NetBIOS name (appliance/config).
	boxName = "CONCIERGE"
)

// TestImage builds the image twice and checks that the outputs are the
// same bytes, that the bundle verifies and that a damaged bundle or one
// signed with another key is refused (acceptance 1); then it boots the
// disk image in QEMU and reaches SMTP, POP3, the setup page and NetBIOS
// through forwarded ports within 60 s (acceptance 2). The subtests
// "power cut" (powercut_test.go, acceptance 5) and "update"
// (update_test.go) boot copies of the same image.
func TestImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and boots the firmware image (-short)")
	}
	for _, f := range []string{"qemu-system-x86_64", "mkfs.ext4", "apt-get", "dpkg-deb"} {
		if _, err := exec.LookPath(f); err != nil {
			t.Fatalf("%s not installed (make test-deps)", f)
		}
	}
	root, _ := filepath.Abs("..")
	cache := filepath.Join(root, "build", "image-cache")
	out1, out2 := t.TempDir(), t.TempDir()
	for _, out := range []string{out1, out2} {
		cmd := exec.Command("go", "run", "./image/cmd/mkimage", "-out", out, "-cache", cache, "-version", "test-1")
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("mkimage: %v\n%s", err, b)
		}
	}
	for _, f := range []string{"concierge.bundle", "manifest.json", "disk.img", "concierge"} {
		if a, b := digest(t, filepath.Join(out1, f)), digest(t, filepath.Join(out2, f)); a != b {
			t.Errorf("%s differs between two builds: %s, %s", f, a, b)
		} else {
			t.Logf("%s: same bytes in both builds (sha256 %s)", f, a[:16])
		}
	}
	bundle, err := os.ReadFile(filepath.Join(out1, "concierge.bundle"))
	if err != nil {
		t.Fatal(err)
	}
	devKey := hex.EncodeToString(firmware.DevKey().Public().(ed25519.PublicKey))
	b, err := firmware.Read(bytes.NewReader(bundle), devKey)
	if err != nil {
		t.Fatalf("the bundle does not verify: %v", err)
	}
	t.Logf("manifest: version %s, kernel %s", b.Manifest.Version, b.Manifest.Kernel)

	t.Run("apply refuses", func(t *testing.T) {
		bin := filepath.Join(out1, "concierge")
		damaged := append([]byte(nil), bundle...)
		damaged[len(damaged)/2] ^= 1
		_, other, _ := ed25519.GenerateKey(nil)
		var foreign bytes.Buffer
		if err := firmware.Write(&foreign, b.Manifest, b.Files, other); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name string
			data []byte
			want string
		}{
			{"one byte changed", damaged, "does not match the SHA-256"},
			{"another key", foreign.Bytes(), "signature does not match"},
		} {
			p := filepath.Join(t.TempDir(), "bundle")
			os.WriteFile(p, c.data, 0o644)
			cmd := exec.Command(bin, "-data", t.TempDir(), "firmware", "apply", p)
			got, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(got), c.want) || !strings.Contains(string(got), "refused") {
				t.Errorf("%s: firmware apply: %v, %q; want a refusal saying %q", c.name, err, got, c.want)
			} else {
				t.Logf("%s: %s", c.name, strings.TrimSpace(string(got)))
			}
		}
	})

	var disk string
	vmDir := t.TempDir()
	if !t.Run("boot", func(t *testing.T) { disk = bootImage(t, filepath.Join(out1, "disk.img"), vmDir) }) || disk == "" {
		return
	}
	t.Run("power cut", func(t *testing.T) { powerCut(t, filepath.Join(out1, "disk.img")) })
	t.Run("update", func(t *testing.T) { updateImage(t, root, cache, filepath.Join(out1, "concierge"), disk, b) })
	t.Run("acpi power button", func(t *testing.T) { acpiPowerOff(t, filepath.Join(out1, "disk.img")) })
	t.Run("blank data partition", func(t *testing.T) { blankData(t, filepath.Join(out1, "disk.img")) })
	t.Run("debian kernel", func(t *testing.T) { debianKernel(t, root, cache) })
}

// bootImage boots a copy of img and returns the copy.
func bootImage(t *testing.T, img, dir string) string {
	if _, err := os.Stat(ovmf); err != nil {
		t.Fatal("ovmf not installed (make test-deps)")
	}
	disk := filepath.Join(dir, "disk.img")
	copyFile(t, img, disk)
	v := startVM(t, disk, vmMemory)
	v.waitLines(readyLine, 1, bootDeadline)
	t.Logf("services up %.1f s after QEMU started", time.Since(v.start).Seconds())
	v.expectBanner(fwdSMTP, "220 ")
	v.expectBanner(fwdPOP3, "+OK")
	resp, err := v.http().Get("http://box/")
	if err != nil {
		t.Fatalf("setup page: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		t.Errorf("setup page: %s", resp.Status)
	}
	addrs, err := v.nbtQuery(boxName)
	if err != nil {
		t.Fatalf("NetBIOS unicast name query for %s through the UDP forward: %v", boxName, err)
	}
	if len(addrs) != 1 || addrs[0] != guestIP {
		t.Errorf("NetBIOS: %s is at %v; want %s", boxName, addrs, guestIP)
	}
	if el := time.Since(v.start); el > bootDeadline {
		t.Errorf("everything answered %v after QEMU started; want within %v", el, bootDeadline)
	} else {
		t.Logf("SMTP, POP3, the setup page (%s) and NetBIOS (%s at %v) answered %.1f s after QEMU started", resp.Status, boxName, addrs, el.Seconds())
	}
	return disk
}

func digest(t *testing.T, p string) string {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil))
}

func copyFile(t *testing.T, from, to string) {
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func tail(s string) string {
	if len(s) > 4000 {
		return s[len(s)-4000:]
	}
	return s
}
