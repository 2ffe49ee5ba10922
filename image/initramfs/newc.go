// Package initramfs writes the Linux initramfs format: a gzip'd cpio
// archive in the "newc" format (Documentation/driver-api/early-userspace/
// buffer-format.rst). The output depends only on the files given: every
// entry has owner 0:0, mtime 0 and inode numbers in sorted order, so two
// builds of the same files give the same bytes.
package initramfs

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
)

// File is one entry of the archive.
type File struct {
	// Path is relative to the root, with forward slashes ("init",
	// "lib/modules/6.1.0/kernel/fs/ext4/ext4.ko").
	Path string
	Mode uint32 // permission bits; the type is implied (file or directory)
	Data []byte
}

// Archive collects files; parent directories are added implicitly.
type Archive struct {
	files map[string]File
	dirs  map[string]bool
}

// New returns an empty archive.
func New() *Archive {
	return &Archive{files: map[string]File{}, dirs: map[string]bool{}}
}

// Add adds a regular file (and its parent directories).
func (a *Archive) Add(f File) error {
	p := path.Clean(strings.TrimPrefix(f.Path, "/"))
	if p == "." || strings.HasPrefix(p, "../") {
		return fmt.Errorf("initramfs: bad path %q", f.Path)
	}
	f.Path = p
	a.files[p] = f
	for d := path.Dir(p); d != "."; d = path.Dir(d) {
		a.dirs[d] = true
	}
	return nil
}

// Mode bits of the newc c_mode field.
const (
	modeDir  = 0o040000
	modeFile = 0o100000
)

// WriteTo writes the gzip'd archive: directories and files in sorted
// path order, then the trailer.
func (a *Archive) WriteTo(w io.Writer) (int64, error) {
	var names []string
	for d := range a.dirs {
		names = append(names, d)
	}
	for f := range a.files {
		names = append(names, f)
	}
	sort.Strings(names)
	var raw bytes.Buffer
	for i, n := range names {
		ino := uint32(i + 1)
		if a.dirs[n] {
			writeEntry(&raw, n, ino, modeDir|0o755, 2, nil)
			continue
		}
		f := a.files[n]
		writeEntry(&raw, n, ino, modeFile|(f.Mode&0o7777), 1, f.Data)
	}
	writeEntry(&raw, "TRAILER!!!", 0, 0, 1, nil)
	cw := &countWriter{w: w}
	zw, err := gzip.NewWriterLevel(cw, gzip.BestCompression)
	if err != nil {
		return 0, err
	}
	// The gzip header carries no name and no mtime (zero): reproducible.
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return cw.n, err
	}
	err = zw.Close()
	return cw.n, err
}

// writeEntry writes one newc header, the name and the data, each padded
// to 4 bytes.
func writeEntry(b *bytes.Buffer, name string, ino, mode, nlink uint32, data []byte) {
	fmt.Fprintf(b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	b.WriteString(name)
	b.WriteByte(0)
	pad4(b)
	b.Write(data)
	pad4(b)
}

func pad4(b *bytes.Buffer) {
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
