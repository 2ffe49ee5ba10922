package maildir

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// A message on the wire has CRLF line endings and ends with CRLF (RFC 1939
// section 3; RFC 5322 section 2.3). The canonical form of a file is:
// every LF not preceded by CR becomes CRLF, and a file that does not end
// with LF gets a final CRLF. An empty file stays empty. The size a client
// is told (STAT, LIST, "+OK n octets") is the size of that form, and
// Open streams exactly that form.

// CanonicalSize returns the size of the canonical form of data and whether
// data is canonical already.
func CanonicalSize(data []byte) (size int64, clean bool) {
	var c counter
	c.add(data)
	return c.result()
}

// counter computes CanonicalSize over a stream.
type counter struct {
	n      int64
	bareLF int64
	last   byte // last byte seen, 0 before any
	prevCR bool
}

func (c *counter) add(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			c.n += int64(len(p))
			c.prevCR = p[len(p)-1] == '\r'
			c.last = p[len(p)-1]
			return
		}
		cr := c.prevCR
		if i > 0 {
			cr = p[i-1] == '\r'
		}
		if !cr {
			c.bareLF++
		}
		c.n += int64(i + 1)
		c.prevCR, c.last = false, '\n'
		p = p[i+1:]
	}
}

func (c *counter) result() (int64, bool) {
	size := c.n + c.bareLF
	clean := c.bareLF == 0
	if c.n > 0 && c.last != '\n' {
		size += 2
		clean = false
	}
	return size, clean
}

// sizeKey identifies one file. Maildir files never change once
// delivered, so the canonical size of a file is computed once per process
// (files are read at every Lock otherwise). The unique name is part of the
// key because an inode number may be reused within one timestamp tick.
type sizeKey struct {
	uid      string
	dev, ino uint64
	size     int64
	mtime    int64
}

type sizeVal struct {
	size  int64
	clean bool
}

// maxSizeCache bounds the size cache (about 100 bytes an entry); it is
// emptied when full.
const maxSizeCache = 50000

// readBufs are the buffers files are read through to size them.
var readBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

var sizeCache = struct {
	sync.Mutex
	m map[sizeKey]sizeVal
}{m: map[sizeKey]sizeVal{}}

// namedSize returns the size with CRLF line endings that a Maildir++ file
// name states (",W=<octets>", as Dovecot writes it) and whether it states
// one.
func namedSize(name string) (int64, bool) {
	for _, f := range strings.Split(UniqueName(name), ",")[1:] {
		if v, ok := strings.CutPrefix(f, "W="); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			return n, err == nil && n >= 0
		}
	}
	return 0, false
}

func sizeOf(path string, fi fs.FileInfo) (int64, bool, error) {
	// A file whose name states a CRLF size equal to its own size has
	// no bare LF: it need not be read.
	if w, ok := namedSize(fi.Name()); ok && w == fi.Size() {
		return w, true, nil
	}
	var key sizeKey
	st, ok := fi.Sys().(*syscall.Stat_t)
	if ok {
		key = sizeKey{uid: UID(fi.Name()), dev: uint64(st.Dev), ino: st.Ino, size: fi.Size(), mtime: fi.ModTime().UnixNano()}
		sizeCache.Lock()
		v, hit := sizeCache.m[key]
		sizeCache.Unlock()
		if hit {
			return v.size, v.clean, nil
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	buf := *bp
	var c counter
	// Read what the directory entry says is there; a read that returns
	// less means the file ended (it is never appended to).
	for left := fi.Size(); left > 0; {
		n, err := f.Read(buf[:min(int64(len(buf)), left)])
		c.add(buf[:n])
		left -= int64(n)
		if err == io.EOF || n == 0 {
			break
		}
		if err != nil {
			return 0, false, fmt.Errorf("maildir: %w", err)
		}
	}
	size, clean := c.result()
	if ok {
		sizeCache.Lock()
		if len(sizeCache.m) >= maxSizeCache {
			clear(sizeCache.m)
		}
		sizeCache.m[key] = sizeVal{size, clean}
		sizeCache.Unlock()
	}
	return size, clean, nil
}

// crlfReader streams the canonical form of a file that is not canonical.
type crlfReader struct {
	f      *os.File
	r      *bufio.Reader
	prevCR bool
	any    bool   // some byte was read
	last   byte   // last byte read from the file
	extra  []byte // output owed before reading on
	eof    bool
}

// NewCanonicalReader returns a reader of the canonical form of r.
func NewCanonicalReader(r io.Reader) io.Reader {
	return &crlfReader{r: bufio.NewReader(r)}
}

func (c *crlfReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(c.extra) > 0 {
			k := copy(p[n:], c.extra)
			c.extra = c.extra[k:]
			n += k
			continue
		}
		if c.eof {
			break
		}
		b, err := c.r.ReadByte()
		if err != nil {
			c.eof = true
			if err != io.EOF {
				return n, err
			}
			if c.any && c.last != '\n' {
				c.extra = []byte("\r\n")
			}
			continue
		}
		c.any, c.last = true, b
		if b == '\n' && !c.prevCR {
			p[n] = '\r'
			n++
			c.extra = []byte{'\n'}
			c.prevCR = false
			continue
		}
		c.prevCR = b == '\r'
		p[n] = b
		n++
	}
	if n == 0 && c.eof && len(c.extra) == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func (c *crlfReader) Close() error {
	if c.f != nil {
		return c.f.Close()
	}
	return nil
}
