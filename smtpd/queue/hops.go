package queue

import (
	"bufio"
	"bytes"
	"io"
)

// maxHeaderScan bounds how much of a message CountHops reads.
const maxHeaderScan = 1 << 20

// CountHops counts the Received: header fields of a message (RFC 5321
// 6.3: the simplest loop detection there is), reading its header section
// only and at most a megabyte of it.
func CountHops(r io.Reader) int {
	br := bufio.NewReader(io.LimitReader(r, maxHeaderScan))
	n := 0
	for {
		line, err := br.ReadSlice('\n')
		if len(line) >= 9 && bytes.EqualFold(line[:9], []byte("received:")) {
			n++
		}
		if err == bufio.ErrBufferFull {
			// A very long line: skip the rest of it.
			for err == bufio.ErrBufferFull {
				_, err = br.ReadSlice('\n')
			}
		} else if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return n // the empty line ends the header (or the input ended)
		}
		if err != nil {
			return n
		}
	}
}
