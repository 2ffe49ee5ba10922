// Package mailaddr parses the mailbox addresses that reach the appliance in
// SMTP envelopes and in settings (RFC 5321 4.1.2, RFC 6531 for UTF-8).
//
// The envelope parser of the SMTP library has already removed quoting and
// source routes, so what arrives here may be "user@remote@local" (from
// "user@remote"@local). Parse splits on the last '@' and reports the
// characters in the local part that the classic relay tricks use, so that
// policy can refuse them.
package mailaddr

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// Errors returned by Parse.
var (
	ErrEmpty       = errors.New("mailaddr: empty address")
	ErrNoDomain    = errors.New("mailaddr: no domain")
	ErrLocalPart   = errors.New("mailaddr: bad local part")
	ErrDomain      = errors.New("mailaddr: bad domain")
	ErrTooLong     = errors.New("mailaddr: too long")
	ErrBadEncoding = errors.New("mailaddr: not valid UTF-8")
)

// RFC 5321 4.5.3.1 size limits.
const (
	MaxLocalPart = 64
	MaxDomain    = 255
	MaxPath      = 256
)

// Address is a parsed address. Domain is lower case.
type Address struct {
	Local  string
	Domain string
}

func (a Address) String() string { return a.Local + "@" + a.Domain }

// RelayTrick reports whether the local part holds a character used to hide
// a second destination inside a local address: '@' (from "a@b"@c), '%'
// (user%remote@local) or '!' (remote!user@local).
func (a Address) RelayTrick() bool {
	return strings.ContainsAny(a.Local, "@%!")
}

// Unhide returns the address hidden in a relay-trick local part, as older
// MTAs would have routed it: "u@r" from u@r@l, u%r@l and r!u@l. ok is false
// when the local part hides nothing.
func (a Address) Unhide() (Address, bool) {
	l := a.Local
	if i := strings.LastIndexByte(l, '@'); i >= 0 {
		return parseSplit(l[:i], l[i+1:])
	}
	if i := strings.LastIndexByte(l, '%'); i >= 0 {
		return parseSplit(l[:i], l[i+1:])
	}
	if i := strings.IndexByte(l, '!'); i >= 0 {
		return parseSplit(l[i+1:], l[:i])
	}
	return Address{}, false
}

func parseSplit(local, domain string) (Address, bool) {
	a, err := Parse(local + "@" + domain)
	return a, err == nil
}

// Parse splits s at its last '@' and checks both halves. The local part may
// contain any printable character except controls and spaces (its
// meaning is the receiver's business; see RelayTrick); the domain must be a
// hostname or an address literal.
func Parse(s string) (Address, error) {
	if s == "" {
		return Address{}, ErrEmpty
	}
	if len(s) > MaxPath {
		return Address{}, ErrTooLong
	}
	if !utf8.ValidString(s) {
		return Address{}, ErrBadEncoding
	}
	i := strings.LastIndexByte(s, '@')
	if i < 0 {
		return Address{}, ErrNoDomain
	}
	local, domain := s[:i], s[i+1:]
	if local == "" || len(local) > MaxLocalPart*4 {
		return Address{}, ErrLocalPart
	}
	for _, r := range local {
		if r <= ' ' || r == 0x7f || r == '<' || r == '>' || r == '\\' || r == '"' || r == ',' {
			return Address{}, ErrLocalPart
		}
	}
	d, err := Domain(domain)
	if err != nil {
		return Address{}, err
	}
	return Address{Local: local, Domain: d}, nil
}

// Domain checks a domain (a hostname, or an address literal in brackets)
// and returns it in lower case.
func Domain(d string) (string, error) {
	if d == "" || len(d) > MaxDomain {
		return "", ErrDomain
	}
	if d[0] == '[' {
		if d[len(d)-1] != ']' || len(d) < 3 {
			return "", ErrDomain
		}
		for _, r := range d[1 : len(d)-1] {
			if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F' || r == '.' || r == ':' || r == 'v' || r == 'V' || r == '6') {
				return "", ErrDomain
			}
		}
		return strings.ToLower(d), nil
	}
	d = strings.TrimSuffix(d, ".")
	if d == "" {
		return "", ErrDomain
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", ErrDomain
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r >= 0x80) {
				return "", ErrDomain
			}
		}
	}
	return strings.ToLower(d), nil
}
