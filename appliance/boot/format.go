package boot

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"concierge/internal/firmware"
)

// DataTemplate is the empty ext4 file system (gzip'd) that the image
// builder puts into the initramfs: PID 1 writes it to a blank data
// partition, then grows it to the partition's size.
const DataTemplate = firmware.DataTemplate

// BlankBytes is how much of the start of the data partition must be zero
// for PID 1 to format it (besides having no ext4 superblock, primary or
// backup): a partition with anything there may hold a damaged file
// system, which is never overwritten.
const BlankBytes = 1 << 20

// The lines PID 1 logs when it made or grew the data file system.
const (
	FormattedLine = "boot: data partition was blank; file system written"
	GrownLine     = "boot: data file system grown to the partition"
)

// ext4ResizeFS is EXT4_IOC_RESIZE_FS, _IOW('f', 16, __u64) (the kernel's
// fs/ext4/ext4.h): online resize to the given number of blocks.
const ext4ResizeFS = 0x40086610

// backupSupers are where the first backup superblock of an ext4 file
// system is, for each block size mkfs.ext4 chooses (1, 2 and 4 KiB):
// the first block of block group 1. A partition whose primary superblock
// is gone may still have one there (e2fsck -b recovers from it).
var backupSupers = []int64{8193 * 1024, 16384 * 2048, 32768 * 4096}

// prepareData formats dev from the template when it is blank and returns
// its superblock. A partition without ext4 that is not blank is left
// alone (the error says why).
func prepareData(log *slog.Logger, dev, template string) (Ext4Super, error) {
	sb, err := readExt4Dev(dev)
	if !errors.Is(err, ErrNoExt4) {
		return sb, err
	}
	size, err := deviceBytes(dev)
	if err != nil {
		return sb, err
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return sb, err
	}
	defer f.Close()
	if err := checkBlank(f, size); err != nil {
		return sb, fmt.Errorf("no ext4 file system, and not blank (%w): it may hold a damaged one, so it is not formatted", err)
	}
	n, err := writeTemplate(f, size, template)
	if err != nil {
		return sb, fmt.Errorf("formatting: %w", err)
	}
	log.Info(FormattedLine, "dev", dev, "bytes", n)
	return ReadExt4Super(f)
}

// errNotBlank is what checkBlank finds on a partition that is not blank.
var errNotBlank = errors.New("boot: not blank")

// checkBlank returns nil when the partition r of size bytes is blank: its
// first BlankBytes are zero and it has no ext4 superblock, neither the
// primary one nor a backup at the start of block group 1.
func checkBlank(r io.ReaderAt, size int64) error {
	if size < BlankBytes {
		return fmt.Errorf("%w: the partition has %d bytes", errNotBlank, size)
	}
	b := make([]byte, BlankBytes)
	if _, err := r.ReadAt(b, 0); err != nil {
		return err
	}
	if i := bytes.IndexFunc(b, func(c rune) bool { return c != 0 }); i >= 0 {
		return fmt.Errorf("%w: a byte at offset %d is not zero", errNotBlank, i)
	}
	for _, off := range backupSupers {
		if off+sbSize > size {
			continue
		}
		if _, err := ReadExt4Super(io.NewSectionReader(r, off-sbOffset, sbOffset+sbSize)); err == nil {
			return fmt.Errorf("%w: a backup ext4 superblock at offset %d", errNotBlank, off)
		}
	}
	return nil
}

// writeTemplate writes the gzip'd file system image template to the
// start of the partition f (size bytes) and syncs it; it returns the
// bytes written.
func writeTemplate(f *os.File, size int64, template string) (int64, error) {
	t, err := os.Open(template)
	if err != nil {
		return 0, err
	}
	defer t.Close()
	zr, err := gzip.NewReader(t)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", template, err)
	}
	n, err := io.Copy(io.NewOffsetWriter(f, 0), io.LimitReader(zr, size+1))
	if err != nil {
		return n, err
	}
	if n > size {
		return n, fmt.Errorf("the template is larger than the partition (%d bytes)", size)
	}
	return n, f.Sync()
}

// deviceBytes is the size of a block device, from sysfs (in 512-byte
// sectors whatever the device's sector size).
func deviceBytes(dev string) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/sys/class/block", filepath.Base(dev), "size"))
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n * 512, err
}

// growData grows the file system from dev mounted on dir to the
// partition's size with the kernel's online resize when the partition is
// larger: a disk formatted from the template, a data partition made
// larger. It runs at every boot; when the sizes are equal it does
// nothing.
func growData(log *slog.Logger, dev, dir string) {
	size, err := deviceBytes(dev)
	if err != nil {
		log.Warn("boot: data partition size", "err", err)
		return
	}
	// The mounted file system's superblock is in the block device's
	// page cache: this reads what the kernel holds.
	sb, err := readExt4Dev(dev)
	if err != nil {
		log.Warn("boot: data file system size", "err", err)
		return
	}
	blocks := uint64(size / sb.BlockSize)
	if int64(blocks)*sb.BlockSize <= sb.Bytes {
		return
	}
	d, err := os.Open(dir)
	if err != nil {
		log.Warn("boot: growing the data file system", "err", err)
		return
	}
	defer d.Close()
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, d.Fd(), ext4ResizeFS, uintptr(unsafe.Pointer(&blocks))); e != 0 {
		log.Warn("boot: growing the data file system", "dev", dev, "blocks", blocks, "err", e)
		return
	}
	after, err := readExt4Dev(dev)
	if err != nil || after.Bytes == sb.Bytes {
		return // nothing the kernel could add (a tail shorter than a group's metadata)
	}
	log.Info(GrownLine, "dev", dev, "from", sb.Bytes, "to", after.Bytes, "partition", size)
}
