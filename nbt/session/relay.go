package session

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"concierge/nbt/wire"
)

// The gateway's copy loops. Each direction owns one buffer for the life
// of the session and spends one read and one write per buffer-full,
// however the bytes are cut into messages:
//   - caller → service: whatever the caller has sent (up to relayBuffer
//     bytes) is read at once, the 4-byte headers are taken out by a
//     deframer, and the payload pieces go to the service in one write
//     (writev through net.Buffers);
//   - service → caller: whatever the service has sent (up to MaxMessage
//     bytes) is read into the buffer behind room for a header and goes
//     to the caller as one SESSION MESSAGE in one write. Between two TCP
//     sockets the bytes go another way, through a kernel pipe without
//     entering user space (splice.go).
//
// Write deadlines are moved on at most every deadlineRefresh, so a write
// that makes no progress still fails after writeTimeout less at most that.

var errTooLong = errors.New("session: message over the size limit")

// deframer takes the headers out of the caller's byte stream in a
// session (RFC 1002 4.3.1): SESSION MESSAGEs leave their payloads, KEEP
// ALIVEs nothing; any other packet, or a message longer than max, is an
// error. It remembers between reads a header cut in two and how much of
// the current message's payload is still to come.
type deframer struct {
	max int
	hdr [wire.SessHeaderLen]byte
	nh  int // bytes of hdr read so far
	rem int // payload bytes of the current message still to come
}

// feed appends the payload pieces of p to out, as slices of p. At an
// error it returns the pieces before the bad header with it.
func (d *deframer) feed(out [][]byte, p []byte) ([][]byte, error) {
	for len(p) > 0 {
		if d.rem > 0 {
			k := min(d.rem, len(p))
			out = append(out, p[:k])
			p, d.rem = p[k:], d.rem-k
			continue
		}
		k := copy(d.hdr[d.nh:], p)
		p, d.nh = p[k:], d.nh+k
		if d.nh < len(d.hdr) {
			break
		}
		d.nh = 0
		h, err := wire.ParseSessionHeader(d.hdr[:])
		switch {
		case err != nil:
			return out, fmt.Errorf("%w: %w", errMalformed, err)
		case h.Type == wire.SessKeepAlive: // allowed at any time (RFC 1002 4.3.7)
		case h.Type != wire.SessMessage:
			return out, fmt.Errorf("%w: packet type %#02x in a session", errMalformed, h.Type)
		case h.Length > d.max:
			return out, fmt.Errorf("%w: %d bytes, limit %d", errTooLong, h.Length, d.max)
		default:
			d.rem = h.Length
		}
	}
	return out, nil
}

// inPacket reports whether the stream so far ends inside a packet.
func (d *deframer) inPacket() bool { return d.nh > 0 || d.rem > 0 }

// writeDeadline keeps a connection's write deadline writeTimeout ahead,
// moving it at most every deadlineRefresh.
type writeDeadline struct {
	conn net.Conn
	set  time.Time // when it was last moved
}

func (w *writeDeadline) refresh(now time.Time) {
	if now.Sub(w.set) >= deadlineRefresh {
		w.conn.SetWriteDeadline(now.Add(writeTimeout))
		w.set = now
	}
}

// fromCaller copies the caller's SESSION MESSAGE payloads to the service;
// it returns nil when the caller closed the session between packets.
func (c *conn) fromCaller(back net.Conn) error {
	buf := make([]byte, relayBuffer)
	d := deframer{max: c.cfg.MaxMessage}
	dl := writeDeadline{conn: back}
	var pieces [][]byte
	var out net.Buffers
	for {
		n, rerr := c.tc.Conn.Read(buf)
		var perr error
		pieces, perr = d.feed(pieces[:0], buf[:n])
		if len(pieces) > 0 {
			now := time.Now()
			dl.refresh(now)
			out = pieces // WriteTo consumes out, not pieces
			m, err := out.WriteTo(back)
			c.in.Add(uint64(m))
			c.srv.counters.bytesIn.Add(uint64(m))
			c.lastData.Store(now.UnixNano())
			if err != nil {
				return err
			}
		}
		switch {
		case errors.Is(perr, errTooLong):
			c.srv.counters.tooLong.Add(1)
			return perr
		case perr != nil:
			c.srv.counters.malformed.Add(1)
			return perr
		case errors.Is(rerr, io.EOF) && d.inPacket():
			return io.ErrUnexpectedEOF
		case errors.Is(rerr, io.EOF):
			return nil
		case rerr != nil:
			return rerr
		}
	}
}

// toCaller sends what the service writes to the caller in SESSION
// MESSAGEs of up to MaxMessage bytes, until the service closes or a
// write fails.
func (c *conn) toCaller(back net.Conn) {
	buf := make([]byte, wire.SessHeaderLen+min(c.cfg.MaxMessage, relayBuffer))
	for {
		n, err := back.Read(buf[wire.SessHeaderLen:])
		if n > 0 {
			wire.AppendSessionHeader(buf[:0], wire.SessMessage, n)
			if c.sendMessage(func() error { return c.writeLocked(buf[:wire.SessHeaderLen+n]) }) != nil {
				return
			}
			c.out.Add(uint64(n))
			c.srv.counters.bytesOut.Add(uint64(n))
		}
		if err != nil {
			return
		}
	}
}
