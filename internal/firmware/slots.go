package firmware

import "fmt"

// The disk layout (see docs/firmware.md): GPT partitions found by name.
const (
	// BootPartition is the EFI system partition (FAT16): systemd-boot,
	// its entries, and the slot directories A and B.
	BootPartition = "concierge-boot"
	// DataPartition (ext4) holds the data directory: settings, mail and
	// queue. Updates never write to it.
	DataPartition = "concierge-data"
)

// LoaderConf is systemd-boot's loader.conf: no menu; the entry sorted
// first is booted (see Entry).
const LoaderConf = "timeout 0\neditor no\n"

// SlotFiles are the files of a bundle in a slot directory of the boot
// partition.
func SlotFiles(slot string, b *Bundle) map[string][]byte {
	return map[string][]byte{
		slot + "/" + KernelFile:   b.Files[KernelFile],
		slot + "/" + InitrdFile:   b.Files[InitrdFile],
		slot + "/" + ManifestFile: b.Raw,
	}
}

// EntryPath is the systemd-boot entry of a slot; tries > 0 names a trial
// entry with that many boots left (systemd-boot's boot counting).
func EntryPath(slot string, tries int) string {
	if tries > 0 {
		return fmt.Sprintf("loader/entries/concierge-%s+%d.conf", slot, tries)
	}
	return "loader/entries/concierge-" + slot + ".conf"
}

// Entry is the systemd-boot entry that boots a slot; the slot is passed
// to the kernel command line so that the box knows where it runs.
func Entry(slot, version, cmdline string) string {
	return fmt.Sprintf("title Concierge %s (slot %s)\nversion %s\nlinux /%s/%s\ninitrd /%s/%s\noptions %s concierge.slot=%s\n",
		version, slot, version, slot, KernelFile, slot, InitrdFile, cmdline, slot)
}
