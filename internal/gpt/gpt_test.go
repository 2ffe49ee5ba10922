package gpt_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"concierge/image/disk"
	"concierge/internal/gpt"
)

// newDisk writes a disk image with a boot and a data partition, as
// mkimage lays them out, and returns it open.
func newDisk(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := disk.Write(f, []disk.Partition{
		{Name: "concierge-boot", Type: disk.TypeESP, Sectors: 4096},
		{Name: "concierge-data", Type: disk.TypeLinux, Sectors: 8192, Data: bytes.NewReader([]byte("data"))},
	}); err != nil {
		t.Fatal(err)
	}
	return f
}

// sfdisk is util-linux's reading of the table: each partition's start
// and size in sectors, after its own check of both tables.
func sfdisk(t *testing.T, path string) map[string][2]int64 {
	t.Helper()
	if out, err := exec.Command("sfdisk", "--verify", path).CombinedOutput(); err != nil || !bytes.Contains(out, []byte("No errors detected")) {
		t.Errorf("sfdisk --verify: %v\n%s", err, out)
	}
	out, err := exec.Command("sfdisk", "--json", path).Output()
	if err != nil {
		t.Fatalf("sfdisk --json: %v", err)
	}
	var v struct {
		Partitiontable struct {
			Lastlba    int64
			Partitions []struct {
				Name        string
				Start, Size int64
			}
		}
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("sfdisk --json: %v\n%s", err, out)
	}
	m := map[string][2]int64{"lastlba": {v.Partitiontable.Lastlba}}
	for _, p := range v.Partitiontable.Partitions {
		m[p.Name] = [2]int64{p.Start, p.Size}
	}
	return m
}

// A disk image written onto a bigger disk: Grow moves the backup table
// to the new end and grows the data partition to the last whole MiB;
// util-linux's sfdisk finds both tables sound and reads the new layout.
// A second Grow changes nothing; the boot partition, which another
// follows, never grows; the data keeps its bytes.
func TestGrowOntoBiggerDisk(t *testing.T) {
	if _, err := exec.LookPath("sfdisk"); err != nil {
		t.Fatal("sfdisk (util-linux) not installed")
	}
	f := newDisk(t)
	before := sfdisk(t, f.Name())
	const size = 64 << 20
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if p, grown, err := gpt.Grow(f, size, "concierge-boot"); err != nil || grown {
		t.Errorf("the boot partition, not the last: %+v grown %v, %v", p, grown, err)
	}
	p, grown, err := gpt.Grow(f, size, "concierge-data")
	if err != nil || !grown {
		t.Fatalf("Grow: %+v grown %v, %v", p, grown, err)
	}
	wantLast := int64(size/gpt.SectorSize-34)/gpt.Align*gpt.Align - 1
	if p.First != 6144 || p.Last != wantLast {
		t.Errorf("data partition %d-%d; want 6144-%d", p.First, p.Last, wantLast)
	}
	after := sfdisk(t, f.Name())
	if after["concierge-boot"] != before["concierge-boot"] {
		t.Errorf("the boot partition moved: %v → %v", before["concierge-boot"], after["concierge-boot"])
	}
	if got := after["concierge-data"]; got != [2]int64{6144, wantLast - 6144 + 1} {
		t.Errorf("sfdisk reads the data partition as %v; want start 6144, %d sectors", got, wantLast-6144+1)
	}
	if after["lastlba"][0] != size/gpt.SectorSize-34 {
		t.Errorf("sfdisk: last usable LBA %d; want %d", after["lastlba"][0], size/gpt.SectorSize-34)
	}
	if _, grown, err := gpt.Grow(f, size, "concierge-data"); err != nil || grown {
		t.Errorf("a second Grow: grown %v, %v", grown, err)
	}
	b := make([]byte, 4)
	if f.ReadAt(b, 6144*gpt.SectorSize); string(b) != "data" {
		t.Errorf("the data partition starts with %q", b)
	}
}

// A damaged table is refused, not rewritten.
func TestGrowRefusesADamagedTable(t *testing.T) {
	f := newDisk(t)
	f.Truncate(64 << 20)
	f.WriteAt([]byte{0xFF}, gpt.SectorSize+60) // the disk GUID: the header CRC no longer matches
	if _, _, err := gpt.Grow(f, 64<<20, "concierge-data"); err == nil {
		t.Error("grew a table whose header CRC does not match")
	}
	f = newDisk(t)
	f.WriteAt([]byte{0xFF}, 2*gpt.SectorSize+41) // the boot partition's last LBA
	if _, err := gpt.Read(f); err == nil {
		t.Error("read a table whose entries' CRC does not match")
	}
}
