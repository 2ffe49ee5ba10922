package disk

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// Find reads back where Write put each partition.
func TestFindAfterWrite(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := Write(f, []Partition{
		{Name: "concierge-boot", Type: TypeESP, Sectors: 4096},
		{Name: "concierge-data", Type: TypeLinux, Sectors: 8192, Data: bytes.NewReader([]byte("data"))},
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name         string
		offset, size int64
	}{
		{"concierge-boot", 2048 * SectorSize, 4096 * SectorSize},
		{"concierge-data", (2048 + 4096) * SectorSize, 8192 * SectorSize},
	} {
		off, size, err := Find(f, c.name)
		if err != nil || off != c.offset || size != c.size {
			t.Errorf("%s: at %d, %d bytes, %v; want %d, %d", c.name, off, size, err, c.offset, c.size)
		}
	}
	b := make([]byte, 4)
	off, _, _ := Find(f, "concierge-data")
	if f.ReadAt(b, off); string(b) != "data" {
		t.Errorf("the data partition starts with %q", b)
	}
	if _, _, err := Find(f, "other"); err == nil {
		t.Error("found a partition that is not there")
	}
}
