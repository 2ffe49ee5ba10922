package wire

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
)

// Opcodes (RFC 1002 4.2.1.1).
const (
	OpQuery        = 0x0
	OpRegistration = 0x5
	OpRelease      = 0x6
	OpWACK         = 0x7
	OpRefresh      = 0x8
	// OpRefreshAlt is the refresh opcode many implementations send
	// (RFC 1002 has a misprint; Windows and Samba use both).
	OpRefreshAlt = 0x9
	// OpMultiHomed is the multi-homed registration of Windows NT
	// (not in RFC 1002; accepted like a registration).
	OpMultiHomed = 0xf
)

// NM_FLAGS bits, as the 7-bit field of Header.Flags (RFC 1002 4.2.1.1).
const (
	FlagAA = 0x40 // authoritative answer
	FlagTC = 0x20 // truncation
	FlagRD = 0x10 // recursion desired
	FlagRA = 0x08 // recursion available
	FlagB  = 0x01 // broadcast
)

// RCODEs (RFC 1002 4.2.6, 4.2.11, 4.2.14).
const (
	RcodeOK     = 0x0
	RcodeFmtErr = 0x1 // format error
	RcodeSrvErr = 0x2 // server failure
	RcodeNamErr = 0x3 // name error: the name does not exist
	RcodeImpErr = 0x4 // unsupported request
	RcodeRfsErr = 0x5 // refused
	RcodeActErr = 0x6 // active error: the name is owned by another node
	RcodeCftErr = 0x7 // name in conflict
)

// Record types and class (RFC 1002 4.2.1.2, 4.2.1.3).
const (
	TypeA      = 0x0001
	TypeNS     = 0x0002
	TypeNULL   = 0x000a
	TypeNB     = 0x0020
	TypeNBSTAT = 0x0021
	ClassIN    = 0x0001
)

// NB_FLAGS and NAME_FLAGS bits (RFC 1002 4.2.1.3, 4.2.18).
const (
	NBGroup   = 0x8000 // G: group name
	NBOntMask = 0x6000 // ONT: owner node type
	NBOntB    = 0x0000
	NBOntP    = 0x2000
	NBOntM    = 0x4000
	NBOntH    = 0x6000
	NameDRG   = 0x1000 // deregistering
	NameCNF   = 0x0800 // in conflict
	NameACT   = 0x0400 // active
	NamePRM   = 0x0200 // permanent node name
)

// Bounds of a packet we accept.
const (
	// MaxUDP is the largest name service datagram (RFC 1002 4.2 allows
	// 576 bytes; node status responses can exceed it and are accepted up
	// to this size).
	MaxUDP = 1500
	// MaxTCP is the largest message accepted on 137/tcp.
	MaxTCP = 4096
	// MaxRecords bounds QDCOUNT+ANCOUNT+NSCOUNT+ARCOUNT.
	MaxRecords = 8
	headerLen  = 12
)

// Header is the name service header (RFC 1002 4.2.1.1).
type Header struct {
	ID       uint16
	Response bool
	Opcode   uint8 // 4 bits
	Flags    uint8 // 7 bits: AA TC RD RA 0 0 B
	Rcode    uint8 // 4 bits
}

func (h Header) word() uint16 {
	w := uint16(h.Opcode&0xf)<<11 | uint16(h.Flags&0x7f)<<4 | uint16(h.Rcode&0xf)
	if h.Response {
		w |= 0x8000
	}
	return w
}

func headerFromWord(id, w uint16) Header {
	return Header{ID: id, Response: w&0x8000 != 0, Opcode: uint8(w>>11) & 0xf, Flags: uint8(w>>4) & 0x7f, Rcode: uint8(w & 0xf)}
}

// Has reports whether all of the NM_FLAGS bits in f are set.
func (h Header) Has(f uint8) bool { return h.Flags&f == f }

// Question is a question entry (RFC 1002 4.2.1.2).
type Question struct {
	Name  Name
	Type  uint16
	Class uint16
}

// Resource is a resource record (RFC 1002 4.2.1.3). Data is the raw RDATA;
// NB, NBSTAT and WACK data are decoded by ParseNB, ParseNodeStatus and
// ParseWACK.
type Resource struct {
	Name  Name
	Type  uint16
	Class uint16
	TTL   uint32
	Data  []byte
}

// Packet is a whole name service message.
type Packet struct {
	Header
	Questions  []Question
	Answers    []Resource
	Authority  []Resource
	Additional []Resource
}

// Parse decodes a name service message. Bytes after the last record are
// ignored. Data slices alias msg.
func Parse(msg []byte) (*Packet, error) {
	p := new(Packet)
	if err := ParseInto(p, msg); err != nil {
		return nil, err
	}
	return p, nil
}

// ParseInto decodes a name service message into p as Parse does, reusing
// the arrays of p's record slices: a server that parses every datagram
// into the same Packet allocates nothing per message. p holds only what
// msg held, and its slices change at the next ParseInto into it.
func ParseInto(p *Packet, msg []byte) error {
	if len(msg) < headerLen {
		return fmt.Errorf("%w: %d bytes of header", ErrShort, len(msg))
	}
	if len(msg) > MaxTCP {
		return fmt.Errorf("%w: %d bytes", ErrTooLong, len(msg))
	}
	*p = Packet{Header: headerFromWord(binary.BigEndian.Uint16(msg), binary.BigEndian.Uint16(msg[2:])),
		Questions: p.Questions[:0], Answers: p.Answers[:0], Authority: p.Authority[:0], Additional: p.Additional[:0]}
	qd := int(binary.BigEndian.Uint16(msg[4:]))
	an := int(binary.BigEndian.Uint16(msg[6:]))
	ns := int(binary.BigEndian.Uint16(msg[8:]))
	ar := int(binary.BigEndian.Uint16(msg[10:]))
	if qd+an+ns+ar > MaxRecords {
		return fmt.Errorf("%w: %d", ErrTooMany, qd+an+ns+ar)
	}
	off := headerLen
	for i := 0; i < qd; i++ {
		n, next, err := readName(msg, off)
		if err != nil {
			return err
		}
		if next+4 > len(msg) {
			return fmt.Errorf("%w: question at %d", ErrShort, off)
		}
		p.Questions = append(p.Questions, Question{Name: n,
			Type: binary.BigEndian.Uint16(msg[next:]), Class: binary.BigEndian.Uint16(msg[next+2:])})
		off = next + 4
	}
	var err error
	for _, s := range [...]struct {
		n   int
		dst *[]Resource
	}{{an, &p.Answers}, {ns, &p.Authority}, {ar, &p.Additional}} {
		for i := 0; i < s.n; i++ {
			var r Resource
			if r, off, err = readResource(msg, off); err != nil {
				return err
			}
			*s.dst = append(*s.dst, r)
		}
	}
	return nil
}

func readResource(msg []byte, off int) (Resource, int, error) {
	var r Resource
	n, next, err := readName(msg, off)
	if err != nil {
		return r, 0, err
	}
	if next+10 > len(msg) {
		return r, 0, fmt.Errorf("%w: record at %d", ErrShort, off)
	}
	r.Name = n
	r.Type = binary.BigEndian.Uint16(msg[next:])
	r.Class = binary.BigEndian.Uint16(msg[next+2:])
	r.TTL = binary.BigEndian.Uint32(msg[next+4:])
	l := int(binary.BigEndian.Uint16(msg[next+8:]))
	next += 10
	if next+l > len(msg) {
		return r, 0, fmt.Errorf("%w: RDATA of %d bytes at %d", ErrShort, l, next)
	}
	r.Data = msg[next : next+l : next+l]
	return r, next + l, nil
}

// Append encodes p after b. Names after the first identical one are
// written as a compression pointer to it, as RFC 1002 packets do (0xC00C).
func (p *Packet) Append(b []byte) ([]byte, error) {
	if len(p.Questions)+len(p.Answers)+len(p.Authority)+len(p.Additional) > MaxRecords {
		return b, ErrTooMany
	}
	start := len(b)
	b = binary.BigEndian.AppendUint16(b, p.ID)
	b = binary.BigEndian.AppendUint16(b, p.word())
	for _, n := range []int{len(p.Questions), len(p.Answers), len(p.Authority), len(p.Additional)} {
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	}
	pk := packer{start: start}
	var err error
	for _, q := range p.Questions {
		if b, err = pk.name(b, q.Name); err != nil {
			return b, err
		}
		b = binary.BigEndian.AppendUint16(b, q.Type)
		b = binary.BigEndian.AppendUint16(b, q.Class)
	}
	for _, rs := range [][]Resource{p.Answers, p.Authority, p.Additional} {
		for _, r := range rs {
			if b, err = pk.name(b, r.Name); err != nil {
				return b, err
			}
			if len(r.Data) > 0xffff {
				return b, ErrTooLong
			}
			b = binary.BigEndian.AppendUint16(b, r.Type)
			b = binary.BigEndian.AppendUint16(b, r.Class)
			b = binary.BigEndian.AppendUint32(b, r.TTL)
			b = binary.BigEndian.AppendUint16(b, uint16(len(r.Data)))
			b = append(b, r.Data...)
		}
	}
	if len(b)-start > MaxTCP {
		return b, ErrTooLong
	}
	return b, nil
}

// Pack encodes p into a new slice.
func (p *Packet) Pack() ([]byte, error) { return p.Append(make([]byte, 0, 128)) }

// packer remembers where names were written for whole-name compression:
// the first few in an array of its own, which covers every packet the
// name service sends without an allocation, the rest in a slice.
type packer struct {
	start int
	first [4]packedName
	n     int // entries of first in use
	more  []packedName
}

type packedName struct {
	n   Name
	off int
}

func (pk *packer) name(b []byte, n Name) ([]byte, error) {
	for _, s := range pk.first[:pk.n] {
		if s.n.Label == n.Label && s.n.Scope == n.Scope {
			return binary.BigEndian.AppendUint16(b, 0xc000|uint16(s.off)), nil
		}
	}
	for _, s := range pk.more {
		if s.n.Label == n.Label && s.n.Scope == n.Scope {
			return binary.BigEndian.AppendUint16(b, 0xc000|uint16(s.off)), nil
		}
	}
	off := len(b) - pk.start
	b, err := appendName(b, n)
	switch {
	case err != nil || off >= 0x3fff:
	case pk.n < len(pk.first):
		pk.first[pk.n] = packedName{n, off}
		pk.n++
	case len(pk.more) < MaxRecords:
		pk.more = append(pk.more, packedName{n, off})
	}
	return b, err
}

// NB is one entry of NB RDATA: flags and an address (RFC 1002 4.2.1.3).
type NB struct {
	Flags uint16
	Addr  netip.Addr
}

// Group reports whether the G bit is set.
func (e NB) Group() bool { return e.Flags&NBGroup != 0 }

// ParseNB decodes NB RDATA, a list of 6-byte entries.
func ParseNB(data []byte) ([]NB, error) {
	if len(data)%6 != 0 {
		return nil, fmt.Errorf("%w: NB RDATA of %d bytes", ErrBadRData, len(data))
	}
	out := make([]NB, 0, len(data)/6)
	for i := 0; i+6 <= len(data); i += 6 {
		out = append(out, NB{Flags: binary.BigEndian.Uint16(data[i:]), Addr: netip.AddrFrom4([4]byte(data[i+2 : i+6]))})
	}
	return out, nil
}

// AppendNB encodes NB entries; addresses that are not IPv4 are written
// as 0.0.0.0.
func AppendNB(b []byte, es ...NB) []byte {
	for _, e := range es {
		b = binary.BigEndian.AppendUint16(b, e.Flags)
		var a [4]byte
		if e.Addr.Is4() {
			a = e.Addr.As4()
		}
		b = append(b, a[:]...)
	}
	return b
}

// NodeName is one entry of the node status name table (RFC 1002 4.2.18).
type NodeName struct {
	Label [NameLen]byte
	Flags uint16
}

// String formats the entry like Name.String.
func (n NodeName) String() string { return Name{Label: n.Label}.String() }

// Statistics is the statistics block of a node status response; only
// UnitID (the MAC address) carries meaning today (RFC 1002 4.2.18).
type Statistics struct {
	UnitID [6]byte
	// Rest is the remaining 40 bytes: jumpers, test result, version,
	// counters and sizes, all zero from us.
	Rest [40]byte
}

// StatisticsLen is the size of the statistics block.
const StatisticsLen = 46

// NodeStatus is the RDATA of a node status response.
type NodeStatus struct {
	Names []NodeName
	Stats Statistics
}

// ParseNodeStatus decodes NBSTAT RDATA: a count, 18-byte entries and the
// 46-byte statistics block.
func ParseNodeStatus(data []byte) (*NodeStatus, error) {
	if len(data) < 1 {
		return nil, fmt.Errorf("%w: empty NBSTAT RDATA", ErrBadRData)
	}
	n := int(data[0])
	if len(data) != 1+18*n+StatisticsLen {
		return nil, fmt.Errorf("%w: NBSTAT RDATA of %d bytes for %d names", ErrBadRData, len(data), n)
	}
	s := &NodeStatus{Names: make([]NodeName, n)}
	for i := range n {
		e := data[1+18*i:]
		copy(s.Names[i].Label[:], e[:NameLen])
		s.Names[i].Flags = binary.BigEndian.Uint16(e[NameLen:])
	}
	st := data[1+18*n:]
	copy(s.Stats.UnitID[:], st[:6])
	copy(s.Stats.Rest[:], st[6:])
	return s, nil
}

// Append encodes the node status RDATA; at most 255 names fit.
func (s *NodeStatus) Append(b []byte) ([]byte, error) {
	if len(s.Names) > 255 {
		return b, fmt.Errorf("%w: %d names in a node status", ErrTooMany, len(s.Names))
	}
	b = append(b, byte(len(s.Names)))
	for _, n := range s.Names {
		b = append(b, n.Label[:]...)
		b = binary.BigEndian.AppendUint16(b, n.Flags)
	}
	b = append(b, s.Stats.UnitID[:]...)
	return append(b, s.Stats.Rest[:]...), nil
}

// ParseWACK decodes WACK RDATA: the opcode and flags word of the request
// being acknowledged (RFC 1002 4.2.16).
func ParseWACK(data []byte) (Header, error) {
	if len(data) != 2 {
		return Header{}, fmt.Errorf("%w: WACK RDATA of %d bytes", ErrBadRData, len(data))
	}
	return headerFromWord(0, binary.BigEndian.Uint16(data)), nil
}

// String summarises the packet for logs.
func (p *Packet) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s id=%#04x", p.Kind(), p.ID)
	if p.Rcode != 0 {
		fmt.Fprintf(&b, " rcode=%d", p.Rcode)
	}
	if len(p.Questions) > 0 {
		fmt.Fprintf(&b, " q=%s", p.Questions[0].Name)
	} else if len(p.Answers) > 0 {
		fmt.Fprintf(&b, " rr=%s", p.Answers[0].Name)
	}
	return b.String()
}
