package srs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func rewriter(now *time.Time) *Rewriter {
	return &Rewriter{Key: bytes.Repeat([]byte{7}, KeySize), Domain: "example.test", Now: func() time.Time { return *now }}
}

func TestRoundTrip(t *testing.T) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	r := rewriter(&now)
	for _, sender := range []string{"stranger@faraway.test", "Mixed.Case+tag@Faraway.Test", "a=b=c@x.test", "SRS0=abcdef=ab=x.test=y@other.test"} {
		fwd := r.Forward(sender)
		local, dom, _ := strings.Cut(fwd, "@")
		if dom != "example.test" || !IsSRS(local) || !strings.HasPrefix(fwd, "SRS0=") {
			t.Fatalf("Forward(%s) = %s", sender, fwd)
		}
		for _, l := range []string{local, strings.ToLower(local)} { // some servers lower-case local parts
			got, err := r.Reverse(l)
			if err != nil || !strings.EqualFold(got, sender) {
				t.Errorf("Reverse(%s) = %q, %v; want %s", l, got, err, sender)
			}
		}
		if got, _ := r.Reverse(local); got != sender {
			t.Errorf("Reverse(%s) = %q, want %q exactly", local, got, sender)
		}
	}
	if r.Forward("") != "" {
		t.Errorf("the null sender was rewritten")
	}
}

func TestReverseRefuses(t *testing.T) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	r := rewriter(&now)
	fwd, _, _ := strings.Cut(r.Forward("stranger@faraway.test"), "@")
	parts := strings.SplitN(fwd, "=", 5)
	other := &Rewriter{Key: bytes.Repeat([]byte{8}, KeySize), Domain: "example.test", Now: r.Now}
	forgedKey, _, _ := strings.Cut(other.Forward("stranger@faraway.test"), "@")
	for _, c := range []struct {
		local string
		want  error
	}{
		{"SRS0=aaaaaa=" + parts[2] + "=faraway.test=stranger", ErrForged},
		{forgedKey, ErrForged},
		{strings.Replace(fwd, "=stranger", "=victim", 1), ErrForged},        // another sender, same hash
		{strings.Replace(fwd, "faraway.test", "victim.test", 1), ErrForged}, // another domain
		{"SRS0=" + parts[1] + "=" + parts[2] + "=faraway.test", ErrNotSRS},
		{"SRS0=" + parts[1] + "=!!=faraway.test=stranger", ErrNotSRS},
		{"bob", ErrNotSRS},
		{"SRS1=abc=x.test==y=z", ErrNotSRS},
	} {
		if _, err := r.Reverse(c.local); !errors.Is(err, c.want) {
			t.Errorf("Reverse(%q) = %v, want %v", c.local, err, c.want)
		}
	}
	// Valid until MaxAge, then expired.
	now = now.Add(MaxAge)
	if _, err := r.Reverse(fwd); err != nil {
		t.Errorf("after MaxAge: %v", err)
	}
	now = now.Add(day)
	if _, err := r.Reverse(fwd); !errors.Is(err, ErrExpired) {
		t.Errorf("after MaxAge and a day: %v, want ErrExpired", err)
	}
}

func TestLoadKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "srs.key")
	k1, err := LoadKey(path)
	if err != nil || len(k1) != KeySize {
		t.Fatalf("LoadKey: %v %d", err, len(k1))
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", fi.Mode(), err)
	}
	k2, err := LoadKey(path)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Errorf("the key changed on the second load: %v", err)
	}
	os.WriteFile(path, []byte("short"), 0o600)
	if _, err := LoadKey(path); err == nil {
		t.Errorf("a short key was accepted")
	}
}

// Reverse reads local parts from RCPT TO: any input gives an address or
// an error, and only what Forward made comes back valid.
func FuzzReverse(f *testing.F) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	r := rewriter(&now)
	valid, _, _ := strings.Cut(r.Forward("stranger@faraway.test"), "@")
	f.Add(valid)
	f.Add("SRS0=aaaaaa=ab=faraway.test=stranger")
	f.Add("SRS0====")
	f.Add("srs0=x=y=z=w")
	f.Fuzz(func(t *testing.T, local string) {
		got, err := r.Reverse(local)
		if err != nil {
			return
		}
		// Only the address Forward made (in any case) reverses: anything
		// else would mean the parser accepts what the hash does not cover.
		if !strings.EqualFold(local, valid) || !strings.EqualFold(got, "stranger@faraway.test") {
			t.Fatalf("Reverse(%q) = %q", local, got)
		}
	})
}
