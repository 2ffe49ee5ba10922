package image_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"concierge/image/disk"
	"concierge/image/initramfs"
	"concierge/internal/firmware"
)

// The boot partition in the disk image (image/cmd/mkimage): the first
// partition, at 1 MiB, 96 MiB of FAT16.
const (
	espOffset  = 1 << 20
	espSectors = 96 << 20 / disk.SectorSize
)

// markedGood is what the new firmware logs once its services are up
// and its slot keeps booting (appliance/firmware.go).
const markedGood = "slot marked good"

// updateImage installs a newer bundle with "concierge firmware apply"
// into the boot partition of the disk the boot test used, and boots: the
// VM starts slot B on trial, the new version comes up and marks it good.
// Then a broken bundle (its initramfs has no init the kernel can run)
// goes into slot A: the trial boot panics, the kernel reboots, and
// systemd-boot, with the trial's one boot used up, starts slot B again
// (acceptance 4). The bundles are installed from the host between boots:
// the box has no shell, and the upload from the setup page is not built
// yet.
func updateImage(t *testing.T, root, cache, bin, img string, v1 *firmware.Bundle) {
	out := t.TempDir()
	cmd := exec.Command("go", "run", "./image/cmd/mkimage", "-out", out, "-cache", cache, "-version", "test-2")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mkimage: %v\n%s", err, b)
	}
	apply := func(bundle string) {
		editBootPartition(t, img, func(dir string) {
			out, err := exec.Command(bin, "-data", t.TempDir(), "firmware", "apply", "-boot", dir, bundle).CombinedOutput()
			if err != nil {
				t.Fatalf("firmware apply: %v\n%s", err, out)
			}
			t.Logf("firmware apply: %s", strings.TrimSpace(string(out)))
		})
	}

	apply(filepath.Join(out, "concierge.bundle"))
	v := startVM(t, img, vmMemory)
	v.waitLines(markedGood, 1, bootDeadline)
	if c := v.console.String(); !strings.Contains(c, "version=test-2 slot=B") {
		t.Fatalf("the update did not boot slot B with version test-2; console:\n%s", tail(c))
	}
	v.expectBanner(fwdSMTP, "220 ")
	t.Logf("version test-2 booted from slot B and marked it good %.1f s after QEMU started", timeSince(v))
	v.stop()

	broken := filepath.Join(t.TempDir(), "broken.bundle")
	writeBrokenBundle(t, broken, v1)
	apply(broken)
	v = startVM(t, img, vmMemory)
	// The trial boot panics at once; the next boot comes up.
	v.console.Wait(2*bootDeadline, v.exited, func(c string) bool {
		return strings.Contains(c, readyLine) || strings.Count(c, "Kernel panic") >= 3
	})
	v.stop()
	c := v.console.String()
	if !strings.Contains(c, readyLine) {
		editBootPartition(t, img, func(dir string) {
			es, err := firmware.Entries(dir)
			t.Errorf("boot entries: %+v, %v", es, err)
			out, _ := exec.Command("find", dir, "-printf", "%P %s\n").Output()
			t.Logf("boot partition:\n%s", out)
		})
		t.Fatalf("the VM did not come back after the broken update (%d panics); console:\n%s", strings.Count(c, "Kernel panic"), tail(c))
	}
	if !strings.Contains(c, "version=test-broken") && !strings.Contains(c, "No working init found") {
		t.Errorf("the broken firmware was not tried; console:\n%s", tail(c))
	}
	if !strings.Contains(c, "version=test-2 slot=B") || strings.Contains(c, markedGood) {
		t.Fatalf("after the broken update the VM did not come back on slot B unchanged; console:\n%s", tail(c))
	}
	t.Logf("the broken firmware in slot A failed its trial; slot B (test-2) was up again %.1f s after QEMU started", timeSince(v))
	editBootPartition(t, img, func(dir string) {
		es, err := firmware.Entries(dir)
		if err != nil || len(es) != 2 || es[0].Slot != "B" || es[1].Good() {
			t.Errorf("boot entries after the failed trial: %+v, %v; want B first and A's trial used up", es, err)
		}
	})
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

// editBootPartition copies the boot partition of img out (mtools), lets
// fn change it, and writes it back as a new FAT16 file system with the
// image builder's own writer.
func editBootPartition(t *testing.T, img string, fn func(dir string)) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("mcopy", "-s", "-n", "-i", img+"@@"+itoa(espOffset), "::*", dir)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mcopy: %v\n%s", err, out)
	}
	fn(dir)
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	fat, err := disk.FAT16(espSectors, espOffset/disk.SectorSize, "CONCIERGE", files)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(fat, espOffset); err != nil {
		t.Fatal(err)
	}
}
