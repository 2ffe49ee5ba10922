// Package disk writes the fresh-install disk image: a GUID partition table
// (UEFI 2.9, chapter 5) with an EFI system partition and a data
// partition. The system partition is FAT16 (Microsoft's FAT specification,
// "fatgen103"), written here byte by byte so that two builds give the same
// image; it holds systemd-boot and the two firmware slots A and B. The data
// partition's file system (ext4) is made by the caller.
package disk

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"unicode/utf16"
)

// SectorSize is the logical sector size of the image.
const SectorSize = 512

// GUIDs of the partition types (UEFI 2.9 table 5-7; the Discoverable
// Partitions Specification for Linux file systems).
var (
	TypeESP   = mustGUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
	TypeLinux = mustGUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4")
)

// Partition is one entry of the table; Data is written at its start.
type Partition struct {
	Name    string // the GPT partition name, e.g. "concierge-data" (the box finds its partitions by name)
	Type    [16]byte
	Sectors int64
	Data    io.Reader // at most Sectors*SectorSize bytes; the rest is zero
}

// firstLBA is where the first partition starts: 1 MiB, aligned.
const firstLBA = 2048

// entries is the number of partition entries (128 bytes each, 32 sectors).
const entries = 128

// Write writes a whole disk image with the given partitions, in order.
// Every GUID is derived from the partition names, so the image is
// reproducible.
func Write(w io.WriterAt, parts []Partition) (int64, error) {
	lba := int64(firstLBA)
	type placed struct {
		Partition
		first, last int64
	}
	var ps []placed
	for _, p := range parts {
		ps = append(ps, placed{p, lba, lba + p.Sectors - 1})
		lba += p.Sectors
	}
	total := lba + 33 // backup entries and header
	// Protective MBR (UEFI 2.9 5.2.3).
	mbr := make([]byte, SectorSize)
	pe := mbr[446:]
	pe[1], pe[2], pe[3] = 0, 2, 0
	pe[4] = 0xEE
	pe[5], pe[6], pe[7] = 0xFF, 0xFF, 0xFF
	binary.LittleEndian.PutUint32(pe[8:], 1)
	size := total - 1
	if size > 0xFFFFFFFF {
		size = 0xFFFFFFFF
	}
	binary.LittleEndian.PutUint32(pe[12:], uint32(size))
	mbr[510], mbr[511] = 0x55, 0xAA
	if _, err := w.WriteAt(mbr, 0); err != nil {
		return 0, err
	}
	table := make([]byte, entries*128)
	for i, p := range ps {
		e := table[i*128:]
		copy(e[0:], p.Type[:])
		copy(e[16:], guidFor("partition "+p.Name))
		binary.LittleEndian.PutUint64(e[32:], uint64(p.first))
		binary.LittleEndian.PutUint64(e[40:], uint64(p.last))
		for j, c := range utf16.Encode([]rune(p.Name)) {
			if j >= 36 {
				break
			}
			binary.LittleEndian.PutUint16(e[56+2*j:], c)
		}
	}
	tableCRC := crc32.ChecksumIEEE(table)
	header := func(my, alt, tableLBA int64) []byte {
		h := make([]byte, SectorSize)
		copy(h, "EFI PART")
		binary.LittleEndian.PutUint32(h[8:], 0x00010000)
		binary.LittleEndian.PutUint32(h[12:], 92)
		binary.LittleEndian.PutUint64(h[24:], uint64(my))
		binary.LittleEndian.PutUint64(h[32:], uint64(alt))
		binary.LittleEndian.PutUint64(h[40:], firstLBA)
		binary.LittleEndian.PutUint64(h[48:], uint64(total-34))
		copy(h[56:], guidFor("disk"))
		binary.LittleEndian.PutUint64(h[72:], uint64(tableLBA))
		binary.LittleEndian.PutUint32(h[80:], entries)
		binary.LittleEndian.PutUint32(h[84:], 128)
		binary.LittleEndian.PutUint32(h[88:], tableCRC)
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
		return h
	}
	writes := []struct {
		b   []byte
		lba int64
	}{
		{header(1, total-1, 2), 1},
		{table, 2},
		{table, total - 33},
		{header(total-1, 1, total-33), total - 1},
	}
	for _, x := range writes {
		if _, err := w.WriteAt(x.b, x.lba*SectorSize); err != nil {
			return 0, err
		}
	}
	for _, p := range ps {
		if p.Data == nil {
			continue
		}
		n, err := io.Copy(io.NewOffsetWriter(w, p.first*SectorSize), io.LimitReader(p.Data, p.Sectors*SectorSize+1))
		if err != nil {
			return 0, err
		}
		if n > p.Sectors*SectorSize {
			return 0, errors.New("disk: partition " + p.Name + ": data larger than the partition")
		}
	}
	// The last sector is written, so the file has the whole size.
	return total * SectorSize, nil
}

// guidFor derives a version-4-shaped GUID from a name (reproducible).
func guidFor(name string) []byte {
	s := sha256.Sum256([]byte("concierge " + name))
	g := s[:16]
	g[7] = g[7]&0x0f | 0x40
	g[8] = g[8]&0x3f | 0x80
	return g
}

// mustGUID encodes a GUID string in the mixed-endian layout of GPT.
func mustGUID(s string) [16]byte {
	var hex []byte
	for i := 0; i < len(s); i++ {
		if s[i] != '-' {
			hex = append(hex, s[i])
		}
	}
	var raw [16]byte
	for i := range raw {
		raw[i] = unhex(hex[2*i])<<4 | unhex(hex[2*i+1])
	}
	var g [16]byte
	g[0], g[1], g[2], g[3] = raw[3], raw[2], raw[1], raw[0]
	g[4], g[5] = raw[5], raw[4]
	g[6], g[7] = raw[7], raw[6]
	copy(g[8:], raw[8:])
	return g
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10
	}
	panic("disk: bad GUID digit")
}
