// Package wire encodes and decodes NetBIOS-over-TCP/IP name service
// packets: NetBIOS names in first- and second-level encoding with a scope
// (RFC 1001 14, RFC 1002 4.1), the name service header, questions and
// resource records with label compression (RFC 1002 4.2.1), the RDATA of NB,
// NBSTAT and WACK records (RFC 1002 4.2.2 to 4.2.18), and builders and a
// classifier for every name service packet of RFC 1002 4.2.
//
// Everything here is a pure function of its input: no I/O, no clocks. Every
// read is bounds-checked and malformed input yields one of the sentinel
// errors below, never a panic.
package wire

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors; decoding functions wrap them with the offset.
var (
	ErrShort       = errors.New("wire: packet too short")
	ErrBadName     = errors.New("wire: bad NetBIOS name")
	ErrBadLabel    = errors.New("wire: bad label")
	ErrNameTooLong = errors.New("wire: name longer than 255 bytes")
	ErrPointer     = errors.New("wire: bad compression pointer")
	ErrTooMany     = errors.New("wire: too many records")
	ErrBadRData    = errors.New("wire: bad RDATA")
	ErrTooLong     = errors.New("wire: packet too long")
)

// Limits of the encoding (RFC 1002 4.1, RFC 883 label rules).
const (
	// NameLen is the length of a first-level encoded NetBIOS name
	// before the second-level encoding: 15 characters and a suffix.
	NameLen = 16
	// MaxLabel is the longest label of a scope.
	MaxLabel = 63
	// MaxNameWire is the longest encoded name including length bytes
	// and the terminating zero.
	MaxNameWire = 255
	// maxPointers bounds how many compression pointers one name may
	// follow; each must point strictly backwards, so this only caps work.
	maxPointers = 8
)

// Name is a NetBIOS name: 16 bytes (15 characters padded and a suffix
// byte) and an optional scope ID such as "NETBIOS.COM".
type Name struct {
	Label [NameLen]byte
	Scope string
}

// Wildcard is the name "*" padded with NULs, used in node status requests
// (RFC 1002 4.2.17).
var Wildcard = Name{Label: [NameLen]byte{'*'}}

// MakeName builds the name base<suffix> with the given scope. The base is
// upper-cased and padded with spaces; "*" is padded with NULs. It fails on
// names longer than 15 bytes, empty names and bad scopes.
func MakeName(base string, suffix byte, scope string) (Name, error) {
	var n Name
	if base == "" || len(base) > NameLen-1 {
		return n, fmt.Errorf("%w: %q must be 1 to 15 characters", ErrBadName, base)
	}
	if strings.ContainsAny(base, "\x00") {
		return n, fmt.Errorf("%w: %q contains NUL", ErrBadName, base)
	}
	pad := byte(' ')
	if base == "*" {
		pad = 0
	}
	copy(n.Label[:], strings.ToUpper(base))
	for i := len(base); i < NameLen-1; i++ {
		n.Label[i] = pad
	}
	n.Label[NameLen-1] = suffix
	if base == "*" {
		n.Label[NameLen-1] = 0
	}
	n.Scope = scope
	if err := checkScope(scope); err != nil {
		return Name{}, err
	}
	return n, nil
}

// MustName is MakeName for constants in tests and tables; it panics on a
// bad name.
func MustName(base string, suffix byte, scope string) Name {
	n, err := MakeName(base, suffix, scope)
	if err != nil {
		panic(err)
	}
	return n
}

// Base is the name without its suffix and padding.
func (n Name) Base() string {
	return strings.TrimRight(string(n.Label[:NameLen-1]), " \x00")
}

// Suffix is the 16th byte (the name type, e.g. 0x20 for a file server).
func (n Name) Suffix() byte { return n.Label[NameLen-1] }

// String formats the name as BASE<xx> or BASE<xx>.scope, escaping
// unprintable bytes.
func (n Name) String() string {
	var b strings.Builder
	for _, c := range []byte(n.Base()) {
		if c < 0x20 || c >= 0x7f {
			fmt.Fprintf(&b, "\\x%02x", c)
		} else {
			b.WriteByte(c)
		}
	}
	fmt.Fprintf(&b, "<%02x>", n.Suffix())
	if n.Scope != "" {
		b.WriteByte('.')
		b.WriteString(n.Scope)
	}
	return b.String()
}

// Equal compares names as NetBIOS does: the 16 bytes exactly and the scope
// without regard to ASCII case.
func (n Name) Equal(o Name) bool {
	return n.Label == o.Label && strings.EqualFold(n.Scope, o.Scope)
}

func checkScope(scope string) error {
	if scope == "" {
		return nil
	}
	if 1+32+len(scope)+1+1 > MaxNameWire {
		return fmt.Errorf("%w: scope %q", ErrNameTooLong, scope)
	}
	for _, l := range strings.Split(scope, ".") {
		if l == "" || len(l) > MaxLabel {
			return fmt.Errorf("%w: scope %q", ErrBadLabel, scope)
		}
	}
	return nil
}

// EncodeFirstLevel returns the 32-byte first-level encoding of a 16-byte
// name: each half-byte becomes a letter 'A'+nibble (RFC 1001 14.1).
func EncodeFirstLevel(label [NameLen]byte) [2 * NameLen]byte {
	var out [2 * NameLen]byte
	for i, c := range label {
		out[2*i] = 'A' + c>>4
		out[2*i+1] = 'A' + c&0x0f
	}
	return out
}

// DecodeFirstLevel reverses EncodeFirstLevel; it accepts only the letters
// 'A' to 'P'.
func DecodeFirstLevel(enc []byte) ([NameLen]byte, error) {
	var label [NameLen]byte
	if len(enc) != 2*NameLen {
		return label, fmt.Errorf("%w: first-level label of %d bytes", ErrBadName, len(enc))
	}
	for i := 0; i < NameLen; i++ {
		hi, lo := enc[2*i]-'A', enc[2*i+1]-'A'
		if hi > 0x0f || lo > 0x0f {
			return label, fmt.Errorf("%w: byte %q is not in A-P", ErrBadName, enc[2*i:2*i+2])
		}
		label[i] = hi<<4 | lo
	}
	return label, nil
}

// appendName appends the second-level encoding of n (RFC 1002 4.1):
// a 32-byte label of the first-level encoding, the scope labels and a zero.
func appendName(b []byte, n Name) ([]byte, error) {
	if err := checkScope(n.Scope); err != nil {
		return b, err
	}
	enc := EncodeFirstLevel(n.Label)
	b = append(b, 2*NameLen)
	b = append(b, enc[:]...)
	if n.Scope != "" {
		for _, l := range strings.Split(n.Scope, ".") {
			b = append(b, byte(len(l)))
			b = append(b, l...)
		}
	}
	return append(b, 0), nil
}

// readName decodes the name at msg[off:], following compression pointers
// (RFC 1002 4.1, RFC 883): each pointer must point strictly before the
// label that holds it, so there are no loops, and at most maxPointers are
// followed. It returns the name and the offset just after it at the
// original position.
func readName(msg []byte, off int) (Name, int, error) {
	var n Name
	var scope []string
	end := -1 // offset after the name where it started
	total := 0
	hops := 0
	first := true
	for {
		if off >= len(msg) {
			return n, 0, fmt.Errorf("%w: name at %d", ErrShort, off)
		}
		l := int(msg[off])
		switch l & 0xc0 {
		case 0xc0:
			if off+2 > len(msg) {
				return n, 0, fmt.Errorf("%w: pointer at %d", ErrShort, off)
			}
			ptr := (l&0x3f)<<8 | int(msg[off+1])
			if ptr >= off {
				return n, 0, fmt.Errorf("%w: at %d points forward to %d", ErrPointer, off, ptr)
			}
			hops++
			if hops > maxPointers {
				return n, 0, fmt.Errorf("%w: more than %d pointers", ErrPointer, maxPointers)
			}
			if end < 0 {
				end = off + 2
			}
			off = ptr
			continue
		case 0x40, 0x80:
			return n, 0, fmt.Errorf("%w: length byte %#x at %d", ErrBadLabel, l, off)
		}
		if l == 0 {
			if first {
				return n, 0, fmt.Errorf("%w: empty name at %d", ErrBadName, off)
			}
			total++
			if end < 0 {
				end = off + 1
			}
			break
		}
		if off+1+l > len(msg) {
			return n, 0, fmt.Errorf("%w: label at %d", ErrShort, off)
		}
		total += 1 + l
		if total+1 > MaxNameWire {
			return n, 0, ErrNameTooLong
		}
		lab := msg[off+1 : off+1+l]
		if first {
			var err error
			if n.Label, err = DecodeFirstLevel(lab); err != nil {
				return n, 0, err
			}
			first = false
		} else {
			if strings.ContainsAny(string(lab), ".") {
				return n, 0, fmt.Errorf("%w: scope label with a dot at %d", ErrBadLabel, off)
			}
			scope = append(scope, string(lab))
		}
		off += 1 + l
	}
	n.Scope = strings.Join(scope, ".")
	return n, end, nil
}
