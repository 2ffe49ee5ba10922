// Package replyguard bounds how much of an SMTP server's reply the box
// reads. A reply is read whole before it is looked at (net/textproto,
// go-smtp's client), and neither bounds a line or the lines of a
// multi-line reply, so a server that sends an endless line or endless
// "250-" lines would grow the box's memory until the command's timeout
// (minutes) ran out. The guard sits between the connection and the reply
// reader and fails the read instead.
package replyguard

import (
	"bytes"
	"errors"
	"net"
)

// The limits. RFC 5321 4.5.3.1.5 sets 512 octets for a reply line; real
// servers go over it with long texts, so a line may have eight times that.
// The longest EHLO replies in use have some 20 lines.
const (
	MaxLine  = 4096 // octets of one reply line, CRLF included
	MaxLines = 128  // lines of one reply
)

// The errors of a read that went over a limit; the connection is no use
// after one.
var (
	ErrLineTooLong  = errors.New("the server's reply has a line over 4096 octets")
	ErrTooManyLines = errors.New("the server's reply has over 128 lines")
)

// Conn is a connection whose reads fail once the server's replies go over
// the limits.
type Conn struct {
	net.Conn
	s Scanner
}

// New guards the reads of c. Put it above TLS: it reads replies, not
// records.
func New(c net.Conn) *Conn { return &Conn{Conn: c} }

// Read passes on what the server sent up to the point where a limit was
// crossed; the read after that fails.
func (c *Conn) Read(p []byte) (int, error) {
	if c.s.err != nil {
		return 0, c.s.err
	}
	n, err := c.Conn.Read(p)
	if ok, serr := c.s.Scan(p[:n]); serr != nil {
		if ok > 0 {
			return ok, nil
		}
		return 0, serr
	}
	return n, err
}

// Scanner follows the lines of a stream of replies.
type Scanner struct {
	line  int     // octets of the current line so far
	head  [4]byte // its first four: "250-" goes on, "250 " ends a reply
	lines int     // lines of the current reply before this one
	err   error
}

// Scan takes the next bytes of the stream. Once they go over a limit it
// returns the error and how many of p came before the line that crossed
// it; every later call returns the error and 0.
func (s *Scanner) Scan(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	done := 0
	for len(p) > done {
		rest := p[done:]
		end := bytes.IndexByte(rest, '\n')
		part := rest
		if end >= 0 {
			part = rest[:end+1]
		}
		if s.line < len(s.head) {
			copy(s.head[s.line:], part)
		}
		s.line += len(part)
		switch {
		case s.line > MaxLine:
			s.err = ErrLineTooLong
		case end < 0:
		case s.line > 4 && s.head[3] == '-':
			s.line = 0
			if s.lines++; s.lines >= MaxLines {
				s.err = ErrTooManyLines
			}
		default:
			s.line, s.lines = 0, 0
		}
		if s.err != nil {
			return done, s.err
		}
		done += len(part)
	}
	return done, nil
}
