package boot

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"concierge/internal/gpt"
)

// PartitionGrownLine is what PID 1 logs when it moved the partition
// table to the end of a disk larger than the image and grew the data
// partition into the new space.
const PartitionGrownLine = "boot: data partition grown to the end of the disk"

// growPartition grows the data partition dev to the end of its disk when
// the disk is larger than its partition table says (the disk image
// written onto a bigger disk), and tells the kernel the partition's new
// size; the file system follows after the mount (growData). It runs at
// every boot and does nothing on a disk whose table already reaches its
// end. Failing leaves the disk as it was: the box runs on the partition
// it has.
func growPartition(log *slog.Logger, dev string) {
	part := filepath.Base(dev)
	sys, err := filepath.EvalSymlinks(filepath.Join("/sys/class/block", part))
	if err != nil {
		log.Warn("boot: data partition's disk", "err", err)
		return
	}
	disk := "/dev/" + filepath.Base(filepath.Dir(sys))
	b, err := os.ReadFile(filepath.Join(sys, "partition"))
	if err != nil {
		log.Warn("boot: data partition's number", "err", err)
		return
	}
	pno, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		log.Warn("boot: data partition's number", "err", err)
		return
	}
	size, err := deviceBytes(disk)
	if err != nil {
		log.Warn("boot: disk size", "disk", disk, "err", err)
		return
	}
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		log.Warn("boot: growing the data partition", "disk", disk, "err", err)
		return
	}
	defer f.Close()
	p, grown, err := gpt.Grow(f, size, dataPartition)
	if err != nil {
		log.Warn("boot: growing the data partition", "disk", disk, "err", err)
		return
	}
	if !grown {
		return
	}
	if err := resizePartition(f, pno, p); err != nil {
		log.Warn("boot: the partition table was grown; the kernel sees the new size at the next boot", "disk", disk, "err", err)
		return
	}
	log.Info(PartitionGrownLine, "dev", dev, "bytes", p.Size(), "disk", disk, "disk_bytes", size)
}

// resizePartition tells the kernel the new size of partition pno of the
// disk f (BLKPG_RESIZE_PARTITION; the partition may be in use).
func resizePartition(f *os.File, pno int, p gpt.Partition) error {
	bp := unix.BlkpgPartition{Start: p.Offset(), Length: p.Size(), Pno: int32(pno)}
	arg := unix.BlkpgIoctlArg{Op: unix.BLKPG_RESIZE_PARTITION, Datalen: int32(unsafe.Sizeof(bp)), Data: (*byte)(unsafe.Pointer(&bp))}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKPG, uintptr(unsafe.Pointer(&arg))); e != 0 {
		return fmt.Errorf("BLKPG resize of partition %d: %w", pno, e)
	}
	return nil
}
