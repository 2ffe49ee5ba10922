package mailaddr

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in         string
		local, dom string
		trick      bool
		err        error
	}{
		{"bob@Example.COM", "bob", "example.com", false, nil},
		{"Bob.Smith+tag@example.com.", "Bob.Smith+tag", "example.com", false, nil},
		{"user%remote@local.test", "user%remote", "local.test", true, nil},
		{"remote!user@local.test", "remote!user", "local.test", true, nil},
		{"user@remote@local.test", "user@remote", "local.test", true, nil},
		{"jörg@bücher.example", "jörg", "bücher.example", false, nil},
		{"x@[10.0.0.1]", "x", "[10.0.0.1]", false, nil},
		{"", "", "", false, ErrEmpty},
		{"bob", "", "", false, ErrNoDomain},
		{"@example.com", "", "", false, ErrLocalPart},
		{"a b@example.com", "", "", false, ErrLocalPart},
		{"bob@", "", "", false, ErrDomain},
		{"bob@-x.com", "", "", false, ErrDomain},
		{"bob@a..b", "", "", false, ErrDomain},
		{"bob@a_b.com", "", "", false, ErrDomain},
		{"bob@" + strings.Repeat("a", 300), "", "", false, ErrTooLong},
		{"b\xffb@x.com", "", "", false, ErrBadEncoding},
	}
	for _, tt := range tests {
		a, err := Parse(tt.in)
		if err != tt.err {
			t.Errorf("Parse(%q) error = %v, want %v", tt.in, err, tt.err)
			continue
		}
		if err != nil {
			continue
		}
		if a.Local != tt.local || a.Domain != tt.dom || a.RelayTrick() != tt.trick {
			t.Errorf("Parse(%q) = %q@%q trick=%v, want %q@%q trick=%v", tt.in, a.Local, a.Domain, a.RelayTrick(), tt.local, tt.dom, tt.trick)
		}
	}
}

func TestUnhide(t *testing.T) {
	for in, want := range map[string]string{
		"user%remote.test@local.test": "user@remote.test",
		"remote.test!user@local.test": "user@remote.test",
		"user@remote.test@local.test": "user@remote.test",
		"a%b%remote.test@local.test":  "a%b@remote.test",
	} {
		a, err := Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := a.Unhide()
		if !ok || got.String() != want {
			t.Errorf("Unhide(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	a, _ := Parse("plain@local.test")
	if _, ok := a.Unhide(); ok {
		t.Error("Unhide of a plain address reported a hidden one")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"bob@example.com", "u%r@l", "r!u@l", "a@b@c", "x@[1.2.3.4]", "@", "jörg@bücher.de"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := Parse(s)
		if err != nil {
			return
		}
		// A parsed address prints to something that parses to itself.
		b, err := Parse(a.String())
		if err != nil || b != a {
			t.Fatalf("Parse(%q) = %q, reparse = %q, %v", s, a, b, err)
		}
		if strings.ContainsAny(a.Domain, "@ \r\n") {
			t.Fatalf("domain %q holds a forbidden character", a.Domain)
		}
		if u, ok := a.Unhide(); ok && u.RelayTrick() == false && u.Local == "" {
			t.Fatalf("Unhide gave an empty local part for %q", s)
		}
	})
}
