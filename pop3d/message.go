package pop3d

import (
	"bufio"
	"bytes"
	"io"
	"sync"
)

// copyBufs holds the read buffers of messages being sent, shared by the
// sessions so that an idle session holds none.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

var dotLine = []byte("\n.")

// writeMessage sends a message (CRLF line endings) as a multi-line
// response body (RFC 1939 section 3): a line that starts with "." gets
// another "." in front, and the response ends with ".". With bodyLines >=
// 0 (TOP, RFC 1939 section 7) only the header, the blank line after it and
// that many body lines are sent. It works on large chunks rather than
// byte by byte. A message that does not end with CRLF gets one.
func writeMessage(w *bufio.Writer, r io.Reader, bodyLines int) error {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var (
		lineStart = true
		inHeader  = true
		lineLen   = 0 // octets of the current line before its LF
		sent      = 0 // body lines sent (TOP)
	)
read:
	for {
		n, rerr := r.Read(buf)
		chunk := buf[:n]
		if bodyLines < 0 {
			// RETR: write the spans between "\n." in one go.
			for len(chunk) > 0 {
				if lineStart && chunk[0] == '.' {
					w.WriteByte('.')
				}
				i := bytes.Index(chunk, dotLine)
				if i < 0 {
					w.Write(chunk)
					lineStart = chunk[len(chunk)-1] == '\n'
					break
				}
				w.Write(chunk[:i+1])
				chunk = chunk[i+1:]
				lineStart = true
			}
			chunk = nil
		}
		for len(chunk) > 0 {
			if lineStart {
				if bodyLines >= 0 && !inHeader && sent >= bodyLines {
					break read
				}
				if chunk[0] == '.' {
					w.WriteByte('.')
				}
				lineStart = false
			}
			i := bytes.IndexByte(chunk, '\n')
			if i < 0 {
				w.Write(chunk)
				lineLen += len(chunk)
				break
			}
			lineLen += i
			if _, err := w.Write(chunk[:i+1]); err != nil {
				return err
			}
			chunk = chunk[i+1:]
			lineStart = true
			if bodyLines >= 0 {
				if inHeader {
					// The blank line ends the header (RFC 5322 2.1).
					inHeader = lineLen > 1
				} else {
					sent++
				}
			}
			lineLen = 0
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	if !lineStart {
		w.WriteString("\r\n")
	}
	_, err := w.WriteString(".\r\n")
	return err
}
