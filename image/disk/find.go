package disk

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"unicode/utf16"
)

// Find reads the primary GPT of the disk image r and returns the byte
// offset and size of the partition named name.
func Find(r io.ReaderAt, name string) (offset, size int64, err error) {
	h := make([]byte, SectorSize)
	if _, err := r.ReadAt(h, SectorSize); err != nil {
		return 0, 0, fmt.Errorf("disk: GPT header: %w", err)
	}
	if string(h[:8]) != "EFI PART" {
		return 0, 0, fmt.Errorf("disk: no GPT header")
	}
	le := binary.LittleEndian
	tableLBA, n, esize := int64(le.Uint64(h[72:])), int(le.Uint32(h[80:])), int(le.Uint32(h[84:]))
	if esize < 128 || n > 1024 {
		return 0, 0, fmt.Errorf("disk: GPT with %d entries of %d bytes", n, esize)
	}
	table := make([]byte, n*esize)
	if _, err := r.ReadAt(table, tableLBA*SectorSize); err != nil {
		return 0, 0, fmt.Errorf("disk: GPT entries: %w", err)
	}
	for i := range n {
		e := table[i*esize:]
		u := make([]uint16, 36)
		for j := range u {
			u[j] = le.Uint16(e[56+2*j:])
		}
		if strings.TrimRight(string(utf16.Decode(u)), "\x00") != name {
			continue
		}
		first, last := int64(le.Uint64(e[32:])), int64(le.Uint64(e[40:]))
		return first * SectorSize, (last - first + 1) * SectorSize, nil
	}
	return 0, 0, fmt.Errorf("disk: no partition named %q", name)
}
