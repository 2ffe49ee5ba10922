package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Session service packet types (RFC 1002 4.3.1).
const (
	SessMessage   = 0x00 // SESSION MESSAGE
	SessRequest   = 0x81 // SESSION REQUEST
	SessPositive  = 0x82 // POSITIVE SESSION RESPONSE
	SessNegative  = 0x83 // NEGATIVE SESSION RESPONSE
	SessRetarget  = 0x84 // RETARGET SESSION RESPONSE
	SessKeepAlive = 0x85 // SESSION KEEP ALIVE
)

// Error codes of a NEGATIVE SESSION RESPONSE (RFC 1002 4.3.4).
const (
	SessErrNotListeningCalled  = 0x80 // not listening on called name
	SessErrNotListeningCalling = 0x81 // not listening for calling name
	SessErrCalledNotPresent    = 0x82 // called name not present
	SessErrInsufficient        = 0x83 // called name present, but insufficient resources
	SessErrUnspecified         = 0x8f // unspecified error
)

const (
	// SessHeaderLen is the length of the session packet header: TYPE,
	// FLAGS, LENGTH (RFC 1002 4.3.1).
	SessHeaderLen = 4
	// MaxSessionLen is the largest LENGTH: 17 bits, the top one being
	// the E (length extension) bit of FLAGS.
	MaxSessionLen = 1<<17 - 1
	sessFlagE     = 0x01
)

// Session errors.
var (
	ErrSessType   = errors.New("wire: unknown session packet type")
	ErrSessFlags  = errors.New("wire: reserved session flags set")
	ErrSessLength = errors.New("wire: bad session packet length")
)

// SessionHeader is the 4-byte header of every session packet.
type SessionHeader struct {
	Type   uint8
	Length int // of the trailer, 0 to MaxSessionLen
}

// ParseSessionHeader decodes the header at the start of b. It rejects
// unknown types, reserved flag bits and control packets whose length
// cannot be right (KEEP ALIVE and POSITIVE RESPONSE carry nothing,
// NEGATIVE one byte, RETARGET six; a request is at most two names).
func ParseSessionHeader(b []byte) (SessionHeader, error) {
	if len(b) < SessHeaderLen {
		return SessionHeader{}, fmt.Errorf("%w: session header of %d bytes", ErrShort, len(b))
	}
	h := SessionHeader{Type: b[0]}
	if b[1]&^sessFlagE != 0 {
		return h, fmt.Errorf("%w: %#02x", ErrSessFlags, b[1])
	}
	h.Length = int(b[1]&sessFlagE)<<16 | int(binary.BigEndian.Uint16(b[2:]))
	ok := true
	switch h.Type {
	case SessMessage:
	case SessRequest:
		ok = h.Length >= 2*(2+2*NameLen) && h.Length <= 2*MaxNameWire
	case SessPositive, SessKeepAlive:
		ok = h.Length == 0
	case SessNegative:
		ok = h.Length == 1
	case SessRetarget:
		ok = h.Length == 6
	default:
		return h, fmt.Errorf("%w: %#02x", ErrSessType, h.Type)
	}
	if !ok {
		return h, fmt.Errorf("%w: %d for type %#02x", ErrSessLength, h.Length, h.Type)
	}
	return h, nil
}

// AppendSessionHeader appends a header of the given type and trailer
// length, setting the E bit for lengths over 65,535.
func AppendSessionHeader(b []byte, typ uint8, length int) ([]byte, error) {
	if length < 0 || length > MaxSessionLen {
		return b, fmt.Errorf("%w: %d", ErrSessLength, length)
	}
	return append(b, typ, byte(length>>16)&sessFlagE, byte(length>>8), byte(length)), nil
}

// SessionRequest is the trailer of a SESSION REQUEST (RFC 1002 4.3.2):
// the called and the calling name.
type SessionRequest struct {
	Called, Calling Name
}

// ParseSessionRequest decodes the trailer of a SESSION REQUEST; the two
// names must fill it exactly.
func ParseSessionRequest(body []byte) (SessionRequest, error) {
	var r SessionRequest
	var off int
	var err error
	if r.Called, off, err = readName(body, 0); err != nil {
		return r, fmt.Errorf("called name: %w", err)
	}
	if r.Calling, off, err = readName(body, off); err != nil {
		return r, fmt.Errorf("calling name: %w", err)
	}
	if off != len(body) {
		return r, fmt.Errorf("%w: %d bytes after the names", ErrSessLength, len(body)-off)
	}
	return r, nil
}

// Append appends the whole SESSION REQUEST packet.
func (r SessionRequest) Append(b []byte) ([]byte, error) {
	var body []byte
	var err error
	if body, err = appendName(body, r.Called); err != nil {
		return b, err
	}
	if body, err = appendName(body, r.Calling); err != nil {
		return b, err
	}
	if b, err = AppendSessionHeader(b, SessRequest, len(body)); err != nil {
		return b, err
	}
	return append(b, body...), nil
}

// AppendNegative appends a NEGATIVE SESSION RESPONSE with the error code
// (RFC 1002 4.3.4).
func AppendNegative(b []byte, code uint8) []byte {
	return append(b, SessNegative, 0, 0, 1, code)
}

// AppendRetarget appends a RETARGET SESSION RESPONSE naming the address
// and port to call instead (RFC 1002 4.3.5).
func AppendRetarget(b []byte, to netip.AddrPort) ([]byte, error) {
	if !to.Addr().Is4() {
		return b, fmt.Errorf("%w: retarget address %s is not IPv4", ErrBadRData, to.Addr())
	}
	ip := to.Addr().As4()
	b = append(b, SessRetarget, 0, 0, 6)
	b = append(b, ip[:]...)
	return binary.BigEndian.AppendUint16(b, to.Port()), nil
}

// ParseRetarget decodes the 6-byte trailer of a RETARGET SESSION
// RESPONSE.
func ParseRetarget(body []byte) (netip.AddrPort, error) {
	if len(body) != 6 {
		return netip.AddrPort{}, fmt.Errorf("%w: retarget of %d bytes", ErrSessLength, len(body))
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[:4])), binary.BigEndian.Uint16(body[4:])), nil
}
