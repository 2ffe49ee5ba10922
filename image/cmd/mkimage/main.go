// Command mkimage builds the firmware ("make image"): it builds the box's
// own kernel from Debian's kernel source (image/kernel; or takes Debian's
// kernel package and its modules), builds the static concierge binary
// reproducibly, and writes into the output directory
//
//	concierge.bundle  the signed firmware bundle (see internal/firmware)
//	manifest.json     its manifest, for reading
//	disk.img          a GPT disk image for a fresh install
//
// Nothing here needs root. Two runs from the same commit write the same
// bytes.
package main

import (
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"concierge/image/disk"
	"concierge/image/initramfs"
	"concierge/image/kmod"
	"concierge/internal/firmware"
)

// The kernel modules the box loads at boot, in no particular order (their
// dependencies are added and ordered from .modinfo): virtio for the VM,
// common NICs and disk controllers for real boxes, the file systems of
// the data and system partitions. crc32c has no depends= entry but ext4
// asks the crypto API for it at mount time.
var wantedModules = []string{
	"virtio_pci", "virtio_net", "virtio_blk", "virtio_scsi",
	"e1000", "e1000e", "r8169", "igb",
	"ahci", "nvme", "sd_mod",
	"ext4", "crc32c_generic", "crc32c_intel",
	"vfat", "nls_cp437", "nls_ascii", "nls_utf8",
	"button", "evdev", // the ACPI power button, read by PID 1 as a key event
}

// Module names that may be built in or absent in another kernel.
var optionalModules = map[string]bool{"crc32c_intel": true, "nls_utf8": true, "virtio_scsi": true}

// Partition sizes of the disk image, in sectors.
const (
	espSectors  = 96 << 20 / disk.SectorSize // slots A and B and systemd-boot
	dataSectors = 64 << 20 / disk.SectorSize // settings, mail and queue
)

// epoch is the fixed time of everything time-stamped (2020-01-01).
const epoch = "1577836800"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run() error {
	out := flag.String("out", "build/image", "output directory")
	cache := flag.String("cache", "build/image-cache", "where the Debian packages are downloaded and unpacked")
	keyFile := flag.String("key", "", "file with the hex ed25519 seed to sign with (default: the development key)")
	version := flag.String("version", "", "firmware version (default: git describe)")
	kernelFrom := flag.String("kernel", "own", `the kernel: "own" (built from linux-source with image/kernel/concierge.config, no modules), "debian" (what linux-image-amd64 depends on, with modules) or a linux-image-* package`)
	initOverride := flag.String("init", "", "use this file as /init instead of building concierge (tests)")
	flag.Parse()

	key := firmware.DevKey()
	if *keyFile != "" {
		b, err := os.ReadFile(*keyFile)
		if err != nil {
			return err
		}
		seed, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(seed) != ed25519.SeedSize {
			return fmt.Errorf("%s: want a hex ed25519 seed of %d bytes", *keyFile, ed25519.SeedSize)
		}
		key = ed25519.NewKeyFromSeed(seed)
	}
	if *version == "" {
		v, err := output("git", "describe", "--always", "--dirty")
		if err != nil {
			return err
		}
		*version = v
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(*cache, 0o755); err != nil {
		return err
	}
	sdboot, err := fetchSystemdBoot(*cache)
	if err != nil {
		return err
	}
	var k kernel
	if *kernelFrom == "own" {
		k, err = buildKernel(*cache)
	} else {
		k, err = fetchKernel(*cache, strings.TrimPrefix(*kernelFrom, "debian"))
	}
	if err != nil {
		return err
	}
	fmt.Printf("kernel %s\n", k.desc)

	var initBin []byte
	if *initOverride != "" {
		initBin, err = os.ReadFile(*initOverride)
	} else {
		initBin, err = buildBinary(*out, *version, hex.EncodeToString(key.Public().(ed25519.PublicKey)))
	}
	if err != nil {
		return err
	}

	ar := initramfs.New()
	ar.Add(initramfs.File{Path: "init", Mode: 0o755, Data: initBin})
	var order bytes.Buffer
	nmods := 0
	if k.modules != "" {
		mods, err := kmod.Resolve(k.modules, wantedModules, optionalModules)
		if err != nil {
			return err
		}
		for _, m := range mods {
			d, err := os.ReadFile(filepath.Join(k.modules, m.Path))
			if err != nil {
				return err
			}
			p := "lib/modules/" + k.release + "/" + m.Path
			ar.Add(initramfs.File{Path: p, Mode: 0o644, Data: d})
			fmt.Fprintln(&order, "/"+p)
		}
		nmods = len(mods)
	}
	// The boot order of the modules, read by appliance/boot (empty for a
	// kernel with everything built in).
	ar.Add(initramfs.File{Path: "lib/modules/load.order", Mode: 0o644, Data: order.Bytes()})
	// The data file system for a blank data partition (appliance/boot).
	tmpl, err := mkfsData(*cache)
	if err != nil {
		return err
	}
	gz, err := gzipBytes(tmpl)
	if err != nil {
		return err
	}
	ar.Add(initramfs.File{Path: strings.TrimPrefix(firmware.DataTemplate, "/"), Mode: 0o644, Data: gz})
	var initrd bytes.Buffer
	if _, err := ar.WriteTo(&initrd); err != nil {
		return err
	}
	fmt.Printf("%d modules, initramfs %d bytes, kernel %d bytes\n", nmods, initrd.Len(), len(k.image))

	m := firmware.Manifest{Version: *version, Kernel: k.desc}
	files := map[string][]byte{firmware.KernelFile: k.image, firmware.InitrdFile: initrd.Bytes()}
	var bundle bytes.Buffer
	if err := firmware.Write(&bundle, m, files, key); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*out, "concierge.bundle"), bundle.Bytes(), 0o644); err != nil {
		return err
	}
	b, err := firmware.Read(bytes.NewReader(bundle.Bytes()), hex.EncodeToString(key.Public().(ed25519.PublicKey)))
	if err != nil {
		return fmt.Errorf("the new bundle does not verify: %w", err)
	}
	if err := os.WriteFile(filepath.Join(*out, "manifest.json"), b.Raw, 0o644); err != nil {
		return err
	}
	return writeDisk(filepath.Join(*out, "disk.img"), tmpl, sdboot, b)
}

// writeDisk writes the fresh-install image: slot A holds the bundle,
// slot B is empty.
// The data partition holds the same file system as the initramfs's
// template: the box grows it to the partition at its first boot.
func writeDisk(path string, data, sdboot []byte, b *firmware.Bundle) error {
	esp := firmware.SlotFiles("A", b)
	esp["EFI/BOOT/BOOTX64.EFI"] = sdboot
	esp["loader/loader.conf"] = []byte(firmware.LoaderConf)
	esp[firmware.EntryPath("A", 1, 0)] = []byte(firmware.Entry("A", b.Manifest.Version, firmware.KernelCmdline))
	fat, err := disk.FAT16(espSectors, 2048, "CONCIERGE", esp)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := disk.Write(f, []disk.Partition{
		{Name: firmware.BootPartition, Type: disk.TypeESP, Sectors: espSectors, Data: bytes.NewReader(fat)},
		{Name: firmware.DataPartition, Type: disk.TypeLinux, Sectors: dataSectors, Data: bytes.NewReader(data)},
	}); err != nil {
		return err
	}
	return f.Close()
}

// The data file system (boot.DataTemplate and the disk image's data
// partition): small, since the box grows it to its partition with the
// kernel's online resize. 4 KiB blocks (mkfs.ext4 would choose 1 KiB
// for a file system this small) and 8192 inodes in its one block group of
// 128 MiB: resize gives every group it adds as many, one inode per
// 16 KiB, mkfs.ext4's ratio for a file system made at full size.
const (
	templateBytes  = 16 << 20
	templateInodes = 8192
)

// mkfsData makes the data file system with fixed UUID, hash seed and
// time, so that the image is reproducible.
func mkfsData(cache string) ([]byte, error) {
	p := filepath.Join(cache, "data.ext4")
	os.Remove(p)
	cmd := exec.Command("mkfs.ext4", "-q", "-F", "-L", firmware.DataPartition,
		"-U", "7b1e6f62-1c1a-4c55-9f0d-2f0c6c1a0d01", "-E", "hash_seed=4a3f1d2e-5b6c-4d7e-8f90-a1b2c3d4e5f6,root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0",
		"-T", "default", "-b", "4096", "-N", fmt.Sprint(templateInodes),
		p, fmt.Sprintf("%dk", templateBytes/1024))
	cmd.Env = append(os.Environ(), "E2FSPROGS_FAKE_TIME="+epoch)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mkfs.ext4: %v: %s", err, out)
	}
	defer os.Remove(p)
	return os.ReadFile(p)
}

// gzipBytes compresses b without name or time.
func gzipBytes(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// buildBinary builds the static concierge binary without build paths,
// build id or VCS stamps.
func buildBinary(out, version, pubkey string) ([]byte, error) {
	bin := filepath.Join(out, "concierge")
	ld := "-s -w -buildid= -X concierge/internal/firmware.Version=" + version + " -X concierge/internal/firmware.PublicKey=" + pubkey
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ld, "-o", bin, "./cmd/concierge")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go build: %w", err)
	}
	return os.ReadFile(bin)
}

// kernel is the firmware's kernel: its image (bzImage), its release, a
// description naming where it came from, and the directory of its
// modules ("" when everything is built in).
type kernel struct {
	image         []byte
	release, desc string
	modules       string
}

// buildKernel builds the box's own kernel with image/kernel/build.sh
// (once per source version and config; the result is cached).
func buildKernel(cache string) (kernel, error) {
	cmd := exec.Command("sh", "image/kernel/build.sh", cache)
	cmd.Stderr = os.Stderr
	b, err := cmd.Output()
	if err != nil {
		return kernel{}, fmt.Errorf("image/kernel/build.sh: %w", err)
	}
	dir := strings.TrimSpace(string(b))
	var k kernel
	if k.image, err = os.ReadFile(filepath.Join(dir, "bzImage")); err != nil {
		return kernel{}, err
	}
	release, err := os.ReadFile(filepath.Join(dir, "release"))
	if err != nil {
		return kernel{}, err
	}
	source, err := os.ReadFile(filepath.Join(dir, "source"))
	if err != nil {
		return kernel{}, err
	}
	k.release = strings.TrimSpace(string(release))
	k.desc = fmt.Sprintf("%s (built from %s, image/kernel/concierge.config)", k.release, strings.TrimSpace(string(source)))
	return k, nil
}

// fetchKernel downloads and unpacks a Debian kernel package (once per
// version); pkg "" is what linux-image-amd64 depends on.
func fetchKernel(cache, pkg string) (kernel, error) {
	if pkg == "" {
		deps, err := output("apt-cache", "depends", "linux-image-amd64")
		if err != nil {
			return kernel{}, err
		}
		for _, l := range strings.Split(deps, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), "Depends: "); ok && strings.HasPrefix(v, "linux-image-") {
				pkg = v
				break
			}
		}
		if pkg == "" {
			return kernel{}, errors.New("apt-cache depends linux-image-amd64: no linux-image package")
		}
	}
	deb, err := download(cache, pkg)
	if err != nil {
		return kernel{}, err
	}
	ver, err := output("dpkg-deb", "-f", deb, "Version")
	if err != nil {
		return kernel{}, err
	}
	release := strings.TrimPrefix(pkg, "linux-image-")
	root := filepath.Join(cache, pkg+"_"+ver)
	if err := unpack(deb, root); err != nil {
		return kernel{}, err
	}
	image, err := os.ReadFile(filepath.Join(root, "boot", "vmlinuz-"+release))
	if err != nil {
		return kernel{}, err
	}
	return kernel{image: image, release: release, desc: fmt.Sprintf("%s (%s %s)", release, pkg, ver),
		modules: filepath.Join(root, "lib/modules", release)}, nil
}

// fetchSystemdBoot downloads and unpacks systemd-boot and returns its
// EFI program.
func fetchSystemdBoot(cache string) ([]byte, error) {
	sd, err := download(cache, "systemd-boot-efi")
	if err != nil {
		return nil, err
	}
	if err := unpack(sd, filepath.Join(cache, "systemd-boot")); err != nil {
		return nil, err
	}
	return os.ReadFile(filepath.Join(cache, "systemd-boot/usr/lib/systemd/boot/efi/systemd-bootx64.efi"))
}

// download fetches a package's .deb into dir unless one is there.
func download(dir, pkg string) (string, error) {
	if m, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb")); len(m) == 1 {
		return m[0], nil
	}
	cmd := exec.Command("apt-get", "download", pkg)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get download %s: %v: %s", pkg, err, out)
	}
	m, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
	if len(m) != 1 {
		return "", fmt.Errorf("apt-get download %s: no single .deb in %s", pkg, dir)
	}
	return m[0], nil
}

func unpack(deb, dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if out, err := exec.Command("dpkg-deb", "-x", deb, tmp).CombinedOutput(); err != nil {
		return fmt.Errorf("dpkg-deb -x %s: %v: %s", deb, err, out)
	}
	return os.Rename(tmp, dir)
}

func output(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}
