package firmware

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"

	"concierge/internal/durable"
)

// The disk layout (see docs/firmware.md): GPT partitions found by name.
const (
	// BootPartition is the EFI system partition (FAT16): systemd-boot,
	// its entries, and the slot directories A and B.
	BootPartition = "concierge-boot"
	// DataPartition (ext4) holds the data directory: settings, mail and
	// queue. Updates never write to it.
	DataPartition = "concierge-data"
	// DataTemplate is the initramfs's empty data file system (ext4,
	// gzip'd) that the box writes to a blank data partition and grows.
	DataTemplate = "/lib/concierge/data.ext4.gz"
)

// BootMount is where the box mounts the boot partition, and SlotEnv the
// environment variable in which PID 1 tells "concierge serve" the slot it
// booted from.
const (
	BootMount = "/boot"
	SlotEnv   = "CONCIERGE_SLOT"
)

// LoaderConf is systemd-boot's loader.conf: no menu and no default, so
// systemd-boot boots the entry it sorts first (see EntryPath).
const LoaderConf = "timeout 0\neditor no\n"

// KernelCmdline is the kernel command line of both slots; panic=5 makes a
// firmware whose init fails reboot, so that the boot loader can return to
// the other slot.
const KernelCmdline = "console=ttyS0 loglevel=4 panic=5"

// Slots are the two slot directories of the boot partition.
var Slots = []string{"A", "B"}

// SlotFiles are the files of a bundle in a slot directory of the boot
// partition.
func SlotFiles(slot string, b *Bundle) map[string][]byte {
	return map[string][]byte{
		slot + "/" + KernelFile:   b.Files[KernelFile],
		slot + "/" + InitrdFile:   b.Files[InitrdFile],
		slot + "/" + ManifestFile: b.Raw,
	}
}

// EntryPath is the systemd-boot entry of a slot installed as generation
// gen; tries > 0 names a trial entry with that many boots left
// (systemd-boot's boot counting). systemd-boot sorts entries without a
// sort-key newest first by their name compared as versions, and puts the
// ones with no tries left last: the highest generation boots, and a trial
// that used up its boot without being marked good falls behind the slot
// that was running before.
func EntryPath(slot string, gen, tries int) string {
	if tries > 0 {
		return fmt.Sprintf("loader/entries/concierge-%d-%s+%d.conf", gen, slot, tries)
	}
	return fmt.Sprintf("loader/entries/concierge-%d-%s.conf", gen, slot)
}

// Entry is the systemd-boot entry that boots a slot; the slot is passed
// to the kernel command line so that the box knows where it runs.
func Entry(slot, version, cmdline string) string {
	return fmt.Sprintf("title Concierge %s (slot %s)\nversion %s\nlinux /%s/%s\ninitrd /%s/%s\noptions %s concierge.slot=%s\n",
		version, slot, version, slot, KernelFile, slot, InitrdFile, cmdline, slot)
}

// BootEntry is one entry file of the boot partition.
type BootEntry struct {
	Name string // file name in loader/entries
	Gen  int
	Slot string
	// Trial is set while the entry counts boots: TriesLeft boots remain
	// before systemd-boot gives up on it.
	Trial     bool
	TriesLeft int
}

// Good reports whether systemd-boot would still boot the entry.
func (e BootEntry) Good() bool { return !e.Trial || e.TriesLeft > 0 }

var entryName = regexp.MustCompile(`^concierge-(\d+)-([AB])(?:\+(\d+)(?:-(\d+))?)?\.conf$`)

// Entries lists the slot entries of the boot partition mounted on dir,
// in the order systemd-boot tries them: the first one is what boots next.
func Entries(dir string) ([]BootEntry, error) {
	des, err := os.ReadDir(filepath.Join(dir, "loader", "entries"))
	if err != nil {
		return nil, err
	}
	var out []BootEntry
	for _, de := range des {
		m := entryName.FindStringSubmatch(de.Name())
		if m == nil {
			continue
		}
		e := BootEntry{Name: de.Name(), Slot: m[2]}
		e.Gen, _ = strconv.Atoi(m[1])
		if m[3] != "" {
			e.Trial = true
			e.TriesLeft, _ = strconv.Atoi(m[3])
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b BootEntry) int {
		if a.Good() != b.Good() {
			if a.Good() {
				return -1
			}
			return 1
		}
		return b.Gen - a.Gen
	})
	return out, nil
}

// Other is the slot that is not s.
func Other(s string) string {
	if s == "A" {
		return "B"
	}
	return "A"
}

// Install writes a verified bundle into the slot the box does not run
// from (running is the slot of the running firmware) on the boot
// partition mounted on dir, every file synced, and adds a trial entry
// with one boot: the next boot starts the new slot once; unless the new
// firmware marks it good (MarkGood), the boot after returns to running.
// It returns the slot written.
func Install(dir string, b *Bundle, running string) (string, error) {
	if !slices.Contains(Slots, running) {
		return "", fmt.Errorf("firmware: running slot %q is not A or B", running)
	}
	slot := Other(running)
	es, err := Entries(dir)
	if err != nil {
		return "", err
	}
	gen := 0
	for _, e := range es {
		gen = max(gen, e.Gen)
		if e.Slot == slot {
			// The entry goes first, so that no boot starts a slot
			// half written.
			if err := os.Remove(filepath.Join(dir, "loader", "entries", e.Name)); err != nil {
				return "", err
			}
		}
	}
	if err := durable.SyncDir(filepath.Join(dir, "loader", "entries")); err != nil {
		return "", err
	}
	if err := durable.MkdirAll(filepath.Join(dir, slot), 0o755); err != nil {
		return "", err
	}
	for name, data := range SlotFiles(slot, b) {
		if err := writeFile(filepath.Join(dir, name), data); err != nil {
			return "", err
		}
	}
	entry := EntryPath(slot, gen+1, 1)
	if err := writeFile(filepath.Join(dir, entry), []byte(Entry(slot, b.Manifest.Version, KernelCmdline))); err != nil {
		return "", err
	}
	return slot, nil
}

// ErrNotTrial: the slot has no trial entry to mark good.
var ErrNotTrial = errors.New("firmware: the slot is not on trial")

// MarkGood makes the trial entry of slot permanent: it keeps booting
// first. It returns ErrNotTrial when slot is not on trial (a box that
// booted its permanent slot).
func MarkGood(dir, slot string) error {
	es, err := Entries(dir)
	if err != nil {
		return err
	}
	for _, e := range es {
		if e.Slot != slot || !e.Trial {
			continue
		}
		to := filepath.Join(dir, EntryPath(slot, e.Gen, 0))
		if err := os.Rename(filepath.Join(dir, "loader", "entries", e.Name), to); err != nil {
			return err
		}
		return syncFile(to)
	}
	return ErrNotTrial
}

// SlotVersion reads the version of the firmware in a slot from its
// manifest (not verified again: for display); "" when the slot is empty.
func SlotVersion(dir, slot string) string {
	b, err := os.ReadFile(filepath.Join(dir, slot, ManifestFile))
	if err != nil {
		return ""
	}
	var m Manifest
	if json.Unmarshal(b, &m) != nil {
		return ""
	}
	return m.Version
}

// writeFile writes a file of the boot partition durably. On the kernel's
// vfat a rename writes the new directory entry with size 0 and the file's
// size and first cluster only when the file itself is written back:
// syncing the directory is not enough, the renamed file is synced too
// (found when a VM killed after the rename came back with an empty entry).
func writeFile(path string, data []byte) error {
	if err := durable.WriteFile(path, data, 0o644); err != nil {
		return err
	}
	return syncFile(path)
}

// syncFile fsyncs path and its directory.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return durable.SyncDir(filepath.Dir(path))
}
