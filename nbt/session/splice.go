package session

import (
	"io"
	"net"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"concierge/nbt/wire"
)

// Between two TCP sockets, the direction of a session that gains the
// framing (the service's bytes to the caller in the gateway, the TCP
// client's bytes to the LAN host in the reverse gateway) moves its bytes
// with splice(2) through a kernel pipe, so they never cross into user
// space: one splice moves what the source has sent into the pipe, and it
// leaves as SESSION MESSAGEs of at most the message limit, each a 4-byte
// header sent with MSG_MORE and the pipe spliced after it. The direction
// that loses the framing still goes through a buffer (relay.go): each of
// its messages has a header to take out, and a splice per message costs
// more than the copy it saves (see docs/benchmarks-nbt.md).
//
// The pipe is empty whenever the splicer waits for its source, so a
// splice into it that would block means the socket has nothing, never
// that the pipe is full: the wait cannot miss a wakeup.

// Pipe sizes (F_SETPIPE_SZ). The pipe's pages are the sockets' own,
// taken by reference, and held only while the destination is slower than
// the source, but they are outside TCP's memory accounting, so all the
// sessions' pipes together may hold at most pipeBudget: large pipes take
// up to half of it, small ones the rest (with the default 64 sessions,
// every session gets one).
const (
	pipeLarge  = 1 << 20
	pipeSmall  = 128 << 10
	pipeBudget = 16 << 20
)

// pipeBytes is the sum of the open gateway pipes' sizes.
var pipeBytes atomic.Int64

// reservePipe returns the size of a new pipe within the budget, or 0.
func reservePipe() int {
	for _, c := range []struct{ size, limit int64 }{{pipeLarge, pipeBudget / 2}, {pipeSmall, pipeBudget}} {
		if pipeBytes.Add(c.size) <= c.limit {
			return int(c.size)
		}
		pipeBytes.Add(-c.size)
	}
	return 0
}

// kpipe is a kernel pipe and the count of bytes in it.
type kpipe struct {
	r, w int
	size int // bytes reserved from the budget
	n    int
}

func newPipe() (*kpipe, bool) {
	size := reservePipe()
	if size == 0 {
		return nil, false
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		pipeBytes.Add(-int64(size))
		return nil, false
	}
	// A pipe left at its default size (64 KiB) works, with more calls.
	unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, size)
	return &kpipe{r: fds[0], w: fds[1], size: size}, true
}

func (p *kpipe) close() {
	unix.Close(p.r)
	unix.Close(p.w)
	pipeBytes.Add(-int64(p.size))
}

// fill waits until the socket has bytes and moves as many as the empty
// pipe takes into it; 0 bytes and no error means the peer closed.
func (p *kpipe) fill(src syscall.RawConn) (int, error) {
	var n int64
	var serr error
	err := src.Read(func(fd uintptr) bool {
		for {
			n, serr = unix.Splice(int(fd), nil, p.w, nil, p.size, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			if serr != unix.EINTR {
				return serr != unix.EAGAIN
			}
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return 0, err
	}
	p.n += int(n)
	return int(n), nil
}

// send writes head and then k bytes from the pipe to the socket, waiting
// while its send buffer is full. The header goes with MSG_MORE, so that
// it leaves in one segment with the payload behind it; with more, so do
// the payload bytes, for the next message to follow at once.
func (p *kpipe) send(dst syscall.RawConn, head []byte, k int, more bool) error {
	flags := unix.SPLICE_F_MOVE | unix.SPLICE_F_NONBLOCK
	if more {
		flags |= unix.SPLICE_F_MORE
	}
	var serr error
	err := dst.Write(func(fd uintptr) bool {
		for len(head) > 0 {
			n, err := unix.SendmsgN(int(fd), head, nil, nil, unix.MSG_MORE|unix.MSG_NOSIGNAL)
			switch err {
			case nil:
				head = head[n:]
			case unix.EINTR:
			case unix.EAGAIN:
				return false
			default:
				serr = err
				return true
			}
		}
		for k > 0 {
			n, err := unix.Splice(p.r, nil, int(fd), nil, k, flags)
			switch {
			case err == unix.EINTR:
			case err == unix.EAGAIN:
				return false
			case err != nil:
				serr = err
				return true
			case n == 0: // cannot happen while the pipe holds k bytes
				serr = io.ErrNoProgress
				return true
			default:
				k -= int(n)
				p.n -= int(n)
			}
		}
		return true
	})
	if err == nil {
		err = serr
	}
	return err
}

// splicer frames one direction of a session between two TCP sockets:
// what arrives on src goes to dst as SESSION MESSAGEs, through the pipe.
type splicer struct {
	src, dst syscall.RawConn
	pipe     *kpipe
}

// newSplicer returns the splicer from src to dst, or false when either
// is not a TCP socket or the pipe budget is spent: frame's copy loop then
// serves.
func newSplicer(src, dst net.Conn) (*splicer, bool) {
	st, ok1 := src.(*net.TCPConn)
	dt, ok2 := dst.(*net.TCPConn)
	if !ok1 || !ok2 {
		return nil, false
	}
	s := &splicer{}
	var err error
	if s.src, err = st.SyscallConn(); err != nil {
		return nil, false
	}
	if s.dst, err = dt.SyscallConn(); err != nil {
		return nil, false
	}
	var ok bool
	if s.pipe, ok = newPipe(); !ok {
		return nil, false
	}
	return s, true
}

func (s *splicer) close() { s.pipe.close() }

// run sends what src sends to dst in SESSION MESSAGEs of at most max
// bytes until src closes (nil) or a read or write fails. Each splice
// from src goes out under write (which holds dst's write lock, if it has
// one, and runs the function it is given); sent counts its bytes.
func (s *splicer) run(max int, write func(func() error) error, sent func(int)) error {
	var hb [wire.SessHeaderLen]byte
	p := s.pipe
	for {
		n, err := p.fill(s.src)
		if err != nil || n == 0 {
			return err
		}
		err = write(func() error {
			for p.n > 0 {
				k := min(p.n, max)
				wire.AppendSessionHeader(hb[:0], wire.SessMessage, k)
				if err := p.send(s.dst, hb[:], k, p.n > k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		sent(n)
	}
}
