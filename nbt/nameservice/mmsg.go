package nameservice

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr of recvmmsg(2) and sendmmsg(2) (Go pads it
// to the alignment of Msghdr as C does).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// mmsgBatch is a fixed set of datagram slots moved through one socket
// with recvmmsg or sendmmsg. Every buffer, address and header is made
// once, so a batch costs no allocation per system call; x/net's
// ReadBatch and WriteBatch build them on every call.
type mmsgBatch struct {
	hs   []mmsghdr
	iov  []unix.Iovec
	addr []unix.RawSockaddrInet4
	buf  [][]byte
	oob  [][]byte

	// the system call in flight, set up by recv and send: RawConn takes
	// a closure, made once here rather than on every call.
	off, count, flags int
	n                 int
	errno             syscall.Errno
	recvFn            func(fd uintptr) bool
	sendFn            func(fd uintptr) bool
}

// oobSize is the room for one IP_PKTINFO control message.
var oobSize = unix.CmsgSpace(unix.SizeofInet4Pktinfo)

func newMmsgBatch(n, bufSize int) *mmsgBatch {
	b := &mmsgBatch{
		hs:   make([]mmsghdr, n),
		iov:  make([]unix.Iovec, n),
		addr: make([]unix.RawSockaddrInet4, n),
		buf:  make([][]byte, n),
		oob:  make([][]byte, n),
	}
	for i := range n {
		b.buf[i] = make([]byte, bufSize)
		b.oob[i] = make([]byte, oobSize)
		b.iov[i].Base = &b.buf[i][0]
		b.hs[i].hdr.Iov = &b.iov[i]
		b.hs[i].hdr.SetIovlen(1)
		b.hs[i].hdr.Name = (*byte)(unsafe.Pointer(&b.addr[i]))
	}
	// Both calls enter the kernel as raw system calls: the socket is
	// non-blocking (the runtime's poller does the waiting), so neither
	// sleeps there, and a raw call skips the scheduler's bookkeeping
	// around it, which woke the runtime's monitor thread on nearly every
	// call and let it hand the reader's P to another thread while a
	// sendmmsg delivered its answers (about a tenth of the reader's CPU
	// at one requester, cmd/bench/nbt).
	b.recvFn = func(fd uintptr) bool {
		r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hs[b.off])), uintptr(b.count), uintptr(b.flags), 0, 0)
		if e == unix.EAGAIN && b.flags&unix.MSG_DONTWAIT == 0 {
			return false // wait in the poller
		}
		b.n, b.errno = int(r), e
		return true
	}
	b.sendFn = func(fd uintptr) bool {
		r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.hs[b.off])), uintptr(b.count), 0, 0, 0)
		if e == unix.EAGAIN {
			return false
		}
		b.n, b.errno = int(r), e
		return true
	}
	return b
}

// recv reads up to len(b.buf) datagrams into the slots; with
// MSG_DONTWAIT in flags it returns unix.EAGAIN instead of waiting.
func (b *mmsgBatch) recv(rc syscall.RawConn, flags int) (int, error) {
	for i := range b.hs {
		h := &b.hs[i].hdr
		b.iov[i].SetLen(len(b.buf[i]))
		h.Namelen = unix.SizeofSockaddrInet4
		h.Control = &b.oob[i][0]
		h.SetControllen(len(b.oob[i]))
		h.Flags = 0
	}
	b.off, b.count, b.flags = 0, len(b.hs), flags
	b.n, b.errno = 0, 0
	return b.result(rc.Read(b.recvFn))
}

// put fills slot i for sending: a copy of payload (which must fit) to
// dst, with oob as its control message (nil for none).
func (b *mmsgBatch) put(i int, payload []byte, dst netip.AddrPort, oob []byte) {
	n := copy(b.buf[i], payload)
	b.iov[i].SetLen(n)
	a := &b.addr[i]
	a.Family = unix.AF_INET
	a.Addr = dst.Addr().As4()
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&a.Port))[:], dst.Port())
	h := &b.hs[i].hdr
	h.Namelen = unix.SizeofSockaddrInet4
	h.Control, h.Controllen = nil, 0
	if len(oob) > 0 {
		h.Control = &oob[0]
		h.SetControllen(len(oob))
	}
}

// send writes slots [0, count) with as few sendmmsg calls as the kernel
// allows and returns how many went out.
func (b *mmsgBatch) send(rc syscall.RawConn, count int) (int, error) {
	sent := 0
	for sent < count {
		b.off, b.count = sent, count-sent
		b.n, b.errno = 0, 0
		n, err := b.result(rc.Write(b.sendFn))
		if err != nil {
			return sent, err
		}
		sent += n
	}
	return sent, nil
}

// result is what the system call that RawConn ran returned.
func (b *mmsgBatch) result(err error) (int, error) {
	if err != nil {
		return 0, err
	}
	if b.errno != 0 {
		return 0, b.errno
	}
	return b.n, nil
}

// datagram returns slot i's payload after recv, its source, and the
// destination address from its IP_PKTINFO (invalid without one).
func (b *mmsgBatch) datagram(i int) (payload []byte, src netip.AddrPort, dst netip.Addr, truncated bool) {
	h := &b.hs[i]
	a := &b.addr[i]
	if h.hdr.Namelen >= unix.SizeofSockaddrInet4 && a.Family == unix.AF_INET {
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&a.Port))[:])
		src = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), port)
	}
	dst = pktinfoDst(b.oob[i][:h.hdr.Controllen])
	return b.buf[i][:h.n], src, dst, h.hdr.Flags&unix.MSG_TRUNC != 0
}

// pktinfoDst finds the header destination address in an IP_PKTINFO
// control message.
func pktinfoDst(oob []byte) netip.Addr {
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(oob) {
			break
		}
		if h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && l >= unix.CmsgLen(unix.SizeofInet4Pktinfo) {
			pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&oob[unix.CmsgLen(0)]))
			return netip.AddrFrom4(pi.Addr)
		}
		sp := unix.CmsgSpace(l - unix.CmsgLen(0))
		if sp > len(oob) {
			break
		}
		oob = oob[sp:]
	}
	return netip.Addr{}
}
