package boot

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
)

// The fields of the ext4 superblock PID 1 reads before it mounts the data
// partition (the kernel's fs/ext4/ext4.h; all little-endian).
const (
	sbOffset          = 1024 // the superblock starts 1024 bytes into the partition
	sbSize            = 1024
	sbBlocksCountLo   = 0x04
	sbLogBlockSize    = 0x18
	sbMagic           = 0x38
	sbState           = 0x3a
	sbFeatureIncompat = 0x60
	sbBlocksCountHi   = 0x150

	ext4Magic       = 0xef53
	stateValid      = 0x1 // s_state: cleanly unmounted (as last written)
	incompatRecover = 0x4 // the journal needs replaying
	incompat64Bit   = 0x80
)

// ErrNoExt4 means the partition has no ext4 superblock magic.
var ErrNoExt4 = errors.New("boot: no ext4 superblock")

// Ext4Super is what the box reads from an ext4 superblock.
type Ext4Super struct {
	// Bytes is the file system's size, BlockSize its block size.
	Bytes     int64
	BlockSize int64
	// NeedsRecovery: the journal has transactions to replay, i.e. the
	// file system was not unmounted cleanly (a power cut, a crash).
	NeedsRecovery bool
	// Valid is s_state's "cleanly unmounted" bit (ext2's flag; with a
	// journal the kernel clears it only on errors).
	Valid bool
}

// ReadExt4Super reads the superblock of the ext4 file system at the start
// of r (a partition).
func ReadExt4Super(r io.ReaderAt) (Ext4Super, error) {
	b := make([]byte, sbSize)
	if _, err := r.ReadAt(b, sbOffset); err != nil {
		return Ext4Super{}, err
	}
	le := binary.LittleEndian
	if le.Uint16(b[sbMagic:]) != ext4Magic {
		return Ext4Super{}, ErrNoExt4
	}
	incompat := le.Uint32(b[sbFeatureIncompat:])
	blocks := uint64(le.Uint32(b[sbBlocksCountLo:]))
	if incompat&incompat64Bit != 0 {
		blocks |= uint64(le.Uint32(b[sbBlocksCountHi:])) << 32
	}
	bs := int64(1024) << le.Uint32(b[sbLogBlockSize:])
	return Ext4Super{
		Bytes:         int64(blocks) * bs,
		BlockSize:     bs,
		NeedsRecovery: incompat&incompatRecover != 0,
		Valid:         le.Uint16(b[sbState:])&stateValid != 0,
	}, nil
}

// readExt4Dev reads the superblock of the block device dev.
func readExt4Dev(dev string) (Ext4Super, error) {
	f, err := os.Open(dev)
	if err != nil {
		return Ext4Super{}, err
	}
	defer f.Close()
	return ReadExt4Super(f)
}
