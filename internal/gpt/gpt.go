// Package gpt reads a GUID partition table (UEFI 2.9, chapter 5) and
// moves it to the end of a disk that is larger than the table says, with
// the last partition grown to fill the new space: what the box does at
// boot when its disk image was written onto a bigger disk.
package gpt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"unicode/utf16"
)

// SectorSize is the logical sector size the table is read with.
const SectorSize = 512

// Align is where a grown partition ends: on a 1 MiB boundary (in
// sectors).
const Align = 2048

var le = binary.LittleEndian

// Table is a primary GPT header and its partition entries.
type Table struct {
	header  []byte // the header sector at LBA 1
	entries []byte
	esize   int
}

// Disk is what Grow reads and writes: a block device or an image file.
type Disk interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
}

// Partition is one used entry of the table.
type Partition struct {
	Index       int
	Name        string
	First, Last int64 // in sectors, inclusive
}

// Offset and Size are the partition's place on the disk in bytes.
func (p Partition) Offset() int64 { return p.First * SectorSize }
func (p Partition) Size() int64   { return (p.Last - p.First + 1) * SectorSize }

// Read reads and checks the primary table of the disk r: its signature,
// the header's and the entries' CRC32.
func Read(r io.ReaderAt) (*Table, error) {
	h := make([]byte, SectorSize)
	if _, err := r.ReadAt(h, SectorSize); err != nil {
		return nil, fmt.Errorf("gpt: header: %w", err)
	}
	if string(h[:8]) != "EFI PART" {
		return nil, errors.New("gpt: no GPT header at LBA 1")
	}
	hsize := le.Uint32(h[12:])
	if hsize < 92 || hsize > SectorSize {
		return nil, fmt.Errorf("gpt: header size %d", hsize)
	}
	if crc := le.Uint32(h[16:]); crc != headerCRC(h) {
		return nil, errors.New("gpt: the header's CRC does not match")
	}
	n, esize := int(le.Uint32(h[80:])), int(le.Uint32(h[84:]))
	if esize < 128 || esize%8 != 0 || n < 1 || n > 1024 {
		return nil, fmt.Errorf("gpt: %d entries of %d bytes", n, esize)
	}
	t := &Table{header: h, entries: make([]byte, n*esize), esize: esize}
	if _, err := r.ReadAt(t.entries, int64(le.Uint64(h[72:]))*SectorSize); err != nil {
		return nil, fmt.Errorf("gpt: entries: %w", err)
	}
	if crc32.ChecksumIEEE(t.entries) != le.Uint32(h[88:]) {
		return nil, errors.New("gpt: the entries' CRC does not match")
	}
	return t, nil
}

// headerCRC is the CRC32 of the header with its CRC field zero.
func headerCRC(h []byte) uint32 {
	c := bytes.Clone(h[:le.Uint32(h[12:])])
	le.PutUint32(c[16:], 0)
	return crc32.ChecksumIEEE(c)
}

// Partitions lists the used entries.
func (t *Table) Partitions() []Partition {
	var ps []Partition
	for i := 0; i < len(t.entries)/t.esize; i++ {
		e := t.entries[i*t.esize:]
		if bytes.Equal(e[:16], make([]byte, 16)) {
			continue
		}
		u := make([]uint16, 36)
		for j := range u {
			u[j] = le.Uint16(e[56+2*j:])
		}
		ps = append(ps, Partition{Index: i, Name: strings.TrimRight(string(utf16.Decode(u)), "\x00"),
			First: int64(le.Uint64(e[32:])), Last: int64(le.Uint64(e[40:]))})
	}
	return ps
}

// Find returns the partition named name.
func (t *Table) Find(name string) (Partition, error) {
	for _, p := range t.Partitions() {
		if p.Name == name {
			return p, nil
		}
	}
	return Partition{}, fmt.Errorf("gpt: no partition named %q", name)
}

// Grow moves the table of the disk f, of size bytes, to the end of the
// disk when the disk is larger than the table says, and grows the
// partition named name to the new end when it is the last one. The
// backup table is written first, at the new end (where nothing of the
// old layout is), and synced; then the primary one. A power cut between
// the two leaves the old primary table, which still names the old
// backup: the disk stays as it was. It returns the partition as it is
// now and whether it grew.
func Grow(f Disk, size int64, name string) (Partition, bool, error) {
	t, err := Read(f)
	if err != nil {
		return Partition{}, false, err
	}
	p, err := t.Find(name)
	if err != nil {
		return p, false, err
	}
	for _, o := range t.Partitions() {
		if o.Last > p.Last {
			return p, false, nil // another partition follows: it cannot grow
		}
	}
	h := t.header
	sectors := size / SectorSize
	entrySectors := (int64(len(t.entries)) + SectorSize - 1) / SectorSize
	backupEntries := sectors - 1 - entrySectors
	lastUsable := backupEntries - 1
	last := (lastUsable+1)/Align*Align - 1
	if int64(le.Uint64(h[32:])) >= sectors-1 || last <= p.Last {
		return p, false, nil
	}
	le.PutUint64(t.entries[p.Index*t.esize+40:], uint64(last))
	le.PutUint32(h[88:], crc32.ChecksumIEEE(t.entries))
	le.PutUint64(h[48:], uint64(lastUsable))
	backup := bytes.Clone(h)
	le.PutUint64(backup[24:], uint64(sectors-1)) // my LBA
	le.PutUint64(backup[32:], 1)                 // the other header
	le.PutUint64(backup[72:], uint64(backupEntries))
	le.PutUint32(backup[16:], headerCRC(backup))
	le.PutUint64(h[32:], uint64(sectors-1))
	le.PutUint32(h[16:], headerCRC(h))
	if err := write(f, "backup", chunk{t.entries, backupEntries}, chunk{backup, sectors - 1}); err != nil {
		return p, false, err
	}
	// The protective MBR covers the whole disk (UEFI 2.9 5.2.3).
	mbr := make([]byte, SectorSize)
	if _, err := f.ReadAt(mbr, 0); err != nil {
		return p, false, fmt.Errorf("gpt: protective MBR: %w", err)
	}
	if mbr[446+4] == 0xEE {
		le.PutUint32(mbr[446+12:], uint32(min(sectors-1, 0xFFFFFFFF)))
	}
	if err := write(f, "primary", chunk{t.entries, int64(le.Uint64(h[72:]))}, chunk{h, 1}, chunk{mbr, 0}); err != nil {
		return p, false, err
	}
	p.Last = last
	return p, true, nil
}

// chunk is bytes to write at a sector.
type chunk struct {
	b   []byte
	lba int64
}

// write writes the chunks of one table and syncs the disk.
func write(f Disk, which string, cs ...chunk) error {
	for _, c := range cs {
		if _, err := f.WriteAt(c.b, c.lba*SectorSize); err != nil {
			return fmt.Errorf("gpt: %s table: %w", which, err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("gpt: %s table: %w", which, err)
	}
	return nil
}
