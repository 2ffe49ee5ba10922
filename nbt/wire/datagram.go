package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Datagram service message types (RFC 1002 4.4.1).
const (
	DgmDirectUnique  = 0x10 // DIRECT_UNIQUE DATAGRAM
	DgmDirectGroup   = 0x11 // DIRECT_GROUP DATAGRAM
	DgmBroadcast     = 0x12 // BROADCAST DATAGRAM
	DgmError         = 0x13 // DATAGRAM ERROR
	DgmQueryRequest  = 0x14 // DATAGRAM QUERY REQUEST
	DgmQueryPositive = 0x15 // DATAGRAM POSITIVE QUERY RESPONSE
	DgmQueryNegative = 0x16 // DATAGRAM NEGATIVE QUERY RESPONSE
)

// FLAGS of the datagram header (RFC 1002 4.4.1): M (more fragments),
// F (first fragment) and the source end-node type SNT.
const (
	DgmFlagMore  = 0x01
	DgmFlagFirst = 0x02
	DgmSNTMask   = 0x0c
	DgmSNTB      = 0x00
	DgmSNTP      = 0x04
	DgmSNTM      = 0x08
	DgmSNTNBDD   = 0x0c
)

// DATAGRAM ERROR codes (RFC 1002 4.4.3).
const (
	DgmErrNotPresent = 0x82 // destination name not present
	DgmErrBadSource  = 0x83 // invalid source name format
	DgmErrBadDest    = 0x84 // invalid destination name format
)

const (
	dgmHeaderLen = 10 // MSG_TYPE, FLAGS, DGM_ID, SOURCE_IP, SOURCE_PORT
	// MaxDatagram is the largest datagram the service sends (RFC 1002
	// 4.4.1: "the maximum size of a datagram is 576 bytes"); longer user
	// data is sent in fragments.
	MaxDatagram = 576
	// MaxDatagramRecv is the largest datagram accepted.
	MaxDatagramRecv = 1500
)

// ErrDgmType is returned for an unknown datagram message type.
var ErrDgmType = errors.New("wire: unknown datagram type")

// Datagram is one packet of the datagram service. Which fields are used
// depends on Type: DIRECT_UNIQUE, DIRECT_GROUP and BROADCAST carry
// Offset, Source, Dest and Data (one fragment of the user data); DATAGRAM
// ERROR carries Code; the query packets carry Dest.
type Datagram struct {
	Type       uint8
	Flags      uint8
	ID         uint16
	SourceIP   netip.Addr
	SourcePort uint16

	Offset       uint16 // PACKET_OFFSET of Data in the whole user data
	Source, Dest Name
	Data         []byte

	Code uint8 // ERROR_CODE
}

// First and More report the fragment flags.
func (d *Datagram) First() bool { return d.Flags&DgmFlagFirst != 0 }
func (d *Datagram) More() bool  { return d.Flags&DgmFlagMore != 0 }

// IsData reports whether the datagram carries user data.
func (d *Datagram) IsData() bool {
	return d.Type == DgmDirectUnique || d.Type == DgmDirectGroup || d.Type == DgmBroadcast
}

// ParseDatagram decodes one datagram. Data aliases msg.
func ParseDatagram(msg []byte) (*Datagram, error) {
	if len(msg) > MaxDatagramRecv {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLong, len(msg))
	}
	if len(msg) < dgmHeaderLen {
		return nil, fmt.Errorf("%w: datagram of %d bytes", ErrShort, len(msg))
	}
	d := &Datagram{
		Type:       msg[0],
		Flags:      msg[1],
		ID:         binary.BigEndian.Uint16(msg[2:]),
		SourceIP:   netip.AddrFrom4([4]byte(msg[4:8])),
		SourcePort: binary.BigEndian.Uint16(msg[8:]),
	}
	if d.Flags&0xf0 != 0 {
		return nil, fmt.Errorf("%w: reserved datagram flags %#02x", ErrBadRData, d.Flags)
	}
	body := msg[dgmHeaderLen:]
	var err error
	switch d.Type {
	case DgmDirectUnique, DgmDirectGroup, DgmBroadcast:
		if len(body) < 4 {
			return nil, fmt.Errorf("%w: datagram length fields", ErrShort)
		}
		n := int(binary.BigEndian.Uint16(body))
		d.Offset = binary.BigEndian.Uint16(body[2:])
		body = body[4:]
		if n != len(body) {
			return nil, fmt.Errorf("%w: DGM_LENGTH %d, %d bytes follow", ErrBadRData, n, len(body))
		}
		var off int
		if d.Source, off, err = readName(body, 0); err != nil {
			return nil, fmt.Errorf("source name: %w", err)
		}
		if d.Dest, off, err = readName(body, off); err != nil {
			return nil, fmt.Errorf("destination name: %w", err)
		}
		d.Data = body[off:]
		if int(d.Offset)+len(d.Data) > 0xffff {
			return nil, fmt.Errorf("%w: fragment ends past 64 KiB", ErrBadRData)
		}
	case DgmError:
		if len(body) != 1 {
			return nil, fmt.Errorf("%w: datagram error of %d bytes", ErrBadRData, len(body))
		}
		d.Code = body[0]
	case DgmQueryRequest, DgmQueryPositive, DgmQueryNegative:
		var off int
		if d.Dest, off, err = readName(body, 0); err != nil {
			return nil, fmt.Errorf("destination name: %w", err)
		}
		if off != len(body) {
			return nil, fmt.Errorf("%w: %d bytes after the name", ErrBadRData, len(body)-off)
		}
	default:
		return nil, fmt.Errorf("%w: %#02x", ErrDgmType, d.Type)
	}
	return d, nil
}

// Append appends the datagram's encoding to b.
func (d *Datagram) Append(b []byte) ([]byte, error) {
	if !d.SourceIP.Is4() {
		return b, fmt.Errorf("%w: source address %s is not IPv4", ErrBadRData, d.SourceIP)
	}
	ip := d.SourceIP.As4()
	b = append(b, d.Type, d.Flags)
	b = binary.BigEndian.AppendUint16(b, d.ID)
	b = append(b, ip[:]...)
	b = binary.BigEndian.AppendUint16(b, d.SourcePort)
	var err error
	switch d.Type {
	case DgmDirectUnique, DgmDirectGroup, DgmBroadcast:
		start := len(b)
		b = append(b, 0, 0)
		b = binary.BigEndian.AppendUint16(b, d.Offset)
		if b, err = appendName(b, d.Source); err != nil {
			return b, err
		}
		if b, err = appendName(b, d.Dest); err != nil {
			return b, err
		}
		b = append(b, d.Data...)
		n := len(b) - start - 4
		if n > 0xffff {
			return b, fmt.Errorf("%w: datagram of %d bytes", ErrTooLong, n)
		}
		binary.BigEndian.PutUint16(b[start:], uint16(n))
	case DgmError:
		b = append(b, d.Code)
	case DgmQueryRequest, DgmQueryPositive, DgmQueryNegative:
		if b, err = appendName(b, d.Dest); err != nil {
			return b, err
		}
	default:
		return b, fmt.Errorf("%w: %#02x", ErrDgmType, d.Type)
	}
	return b, nil
}

// Pack returns the datagram's encoding.
func (d *Datagram) Pack() ([]byte, error) { return d.Append(make([]byte, 0, 128)) }

// Fragment splits user data into datagrams of at most MaxDatagram bytes
// each (RFC 1002 4.4.1, 5.3.1): every one is a copy of d with its Offset,
// Data and the F and M flags set. The caller sets d's other fields.
func Fragment(d Datagram, data []byte) ([]*Datagram, error) {
	if len(data) > 0xffff {
		return nil, fmt.Errorf("%w: user data of %d bytes", ErrTooLong, len(data))
	}
	src, err := appendName(nil, d.Source)
	if err != nil {
		return nil, err
	}
	dst, err := appendName(nil, d.Dest)
	if err != nil {
		return nil, err
	}
	room := MaxDatagram - dgmHeaderLen - 4 - len(src) - len(dst)
	if room <= 0 {
		return nil, fmt.Errorf("%w: names leave no room for data", ErrTooLong)
	}
	var out []*Datagram
	for off := 0; ; off += room {
		f := d
		f.Flags &^= DgmFlagFirst | DgmFlagMore
		if off == 0 {
			f.Flags |= DgmFlagFirst
		}
		end := min(off+room, len(data))
		if end < len(data) {
			f.Flags |= DgmFlagMore
		}
		f.Offset = uint16(off)
		f.Data = data[off:end]
		out = append(out, &f)
		if end == len(data) {
			return out, nil
		}
	}
}
