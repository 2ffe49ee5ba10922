// Package srs rewrites the envelope sender of forwarded mail (the Sender
// Rewriting Scheme of draft-mengwong-sender-rewrite and Shevek's "SRS"
// paper): mail that an alias forwards to another domain goes out as
//
//	SRS0=HHHHHH=TT=domain=local@<our primary domain>
//
// so that a failure at the next hop comes back to us, not to whoever the
// original sender claimed to be, and SPF at the next hop checks our domain.
// HHHHHH is a keyed hash (HMAC-SHA256, base32) of the timestamp and the
// original address; TT is the day it was made (base32, modulo 1024 days).
// A bounce to such an address is accepted only while the hash matches and
// the address is at most MaxAge old; it is then sent on to the original
// sender. Anything else that looks like an SRS address is refused, so the
// box cannot be used to reflect mail to third parties.
//
// An original sender that is itself an SRS address is wrapped again with
// SRS0 (not the shorter SRS1 form): simpler, and reversed the same way.
package srs

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"concierge/internal/durable"
)

// Limits of the scheme.
const (
	// MaxAge is how long a rewritten address stays valid (a bounce may
	// come back days later: the next hop retries for up to 5 days).
	MaxAge = 21 * 24 * time.Hour
	// hashLen is the number of base32 characters of the hash (30 bits).
	hashLen = 6
	// KeySize is the size of the secret key in bytes.
	KeySize = 32
	// prefix starts every address this package makes.
	prefix = "SRS0="
	day    = 24 * time.Hour
	// timeBase is the period of the day stamp: 2 base32 characters.
	timeBase = 32 * 32
)

// Errors of Reverse.
var (
	ErrNotSRS  = errors.New("srs: not an SRS address")
	ErrForged  = errors.New("srs: hash does not match (forged address)")
	ErrExpired = errors.New("srs: address too old")
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// Rewriter makes and checks SRS addresses at Domain with Key.
type Rewriter struct {
	Key    []byte
	Domain string
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

func (r *Rewriter) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// IsSRS reports whether a local part has the form of our SRS addresses.
func IsSRS(local string) bool {
	return len(local) > len(prefix) && strings.EqualFold(local[:len(prefix)], prefix)
}

func (r *Rewriter) hash(stamp, domain, local string) string {
	m := hmac.New(sha256.New, r.Key)
	// Lower case throughout: some servers change the case of the
	// addresses they bounce to (libsrs2 does the same).
	m.Write([]byte(strings.ToLower(stamp + "\x00" + domain + "\x00" + local)))
	return strings.ToLower(b32.EncodeToString(m.Sum(nil))[:hashLen])
}

func stamp(t time.Time) string {
	n := (t.Unix() / int64(day/time.Second)) % timeBase
	return strings.ToLower(string(b32Alphabet[n/32]) + string(b32Alphabet[n%32]))
}

const b32Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

// Forward returns the address to use as envelope sender when forwarding
// mail from sender (local@domain). The null sender stays null.
func (r *Rewriter) Forward(sender string) string {
	at := strings.LastIndexByte(sender, '@')
	if sender == "" || at < 0 {
		return sender
	}
	local, domain := sender[:at], sender[at+1:]
	ts := stamp(r.now())
	return prefix + r.hash(ts, domain, local) + "=" + ts + "=" + domain + "=" + local + "@" + r.Domain
}

// Reverse checks the local part of an SRS address at our domain and
// returns the original sender.
func (r *Rewriter) Reverse(local string) (string, error) {
	if !IsSRS(local) {
		return "", ErrNotSRS
	}
	parts := strings.SplitN(local[len(prefix):], "=", 4)
	if len(parts) != 4 || len(parts[1]) != 2 || parts[2] == "" || parts[3] == "" {
		return "", fmt.Errorf("%w: %q", ErrNotSRS, local)
	}
	h, ts, domain, orig := parts[0], parts[1], parts[2], parts[3]
	hi, lo := strings.IndexByte(b32Alphabet, strings.ToUpper(ts)[0]), strings.IndexByte(b32Alphabet, strings.ToUpper(ts)[1])
	if hi < 0 || lo < 0 {
		return "", fmt.Errorf("%w: %q", ErrNotSRS, local)
	}
	if !hmac.Equal([]byte(strings.ToLower(h)), []byte(r.hash(ts, domain, orig))) {
		return "", ErrForged
	}
	then := hi*32 + lo
	today := int((r.now().Unix() / int64(day/time.Second)) % timeBase)
	age := (today - then + timeBase) % timeBase
	if time.Duration(age)*day > MaxAge {
		return "", ErrExpired
	}
	return orig + "@" + domain, nil
}

// LoadKey reads the key at path, creating a random one (durably, mode
// 0600) when there is none yet: the first start of the box makes it, and
// it stays the same across restarts so that addresses handed out before
// a restart still reverse.
func LoadKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if len(b) < KeySize {
			return nil, fmt.Errorf("srs: key %s is %d bytes, want %d", path, len(b), KeySize)
		}
		return b[:KeySize], nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("srs: %w", err)
	}
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("srs: %w", err)
	}
	if err := durable.WriteFile(path, key, 0o600); err != nil {
		return nil, fmt.Errorf("srs: %w", err)
	}
	return key, nil
}
