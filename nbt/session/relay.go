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
//   - service → caller (frame, which the reverse gateway shares): between
//     two TCP sockets the bytes go through a kernel pipe without entering
//     user space (splice.go); otherwise whatever the service has sent (up
//     to MaxMessage bytes) is read into the buffer behind room for a
//     header and goes to the caller as one SESSION MESSAGE in one write.
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

// frame sends what src sends to dst as SESSION MESSAGEs of at most max
// bytes, until src closes (nil) or a read or write fails: through a
// kernel pipe between two TCP sockets (splice.go), else one message per
// read through a buffer. Each message goes out under write (which holds
// dst's write lock, if it has one, and runs the function it is given);
// sent counts its bytes.
func frame(src, dst net.Conn, max int, write func(func() error) error, sent func(int)) error {
	if sp, ok := newSplicer(src, dst); ok {
		defer sp.close()
		return sp.run(max, write, sent)
	}
	buf := make([]byte, wire.SessHeaderLen+min(max, relayBuffer))
	for {
		n, rerr := src.Read(buf[wire.SessHeaderLen:])
		if n > 0 {
			wire.AppendSessionHeader(buf[:0], wire.SessMessage, n)
			if err := write(func() error {
				_, err := dst.Write(buf[:wire.SessHeaderLen+n])
				return err
			}); err != nil {
				return err
			}
			sent(n)
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}
