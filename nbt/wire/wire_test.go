package wire

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed corpus in testdata/fuzz")

// RFC 1001 14.1: "FRED" with scope NETBIOS.COM.
func TestFRED(t *testing.T) {
	n := MustName("FRED", ' ', "NETBIOS.COM")
	enc := EncodeFirstLevel(n.Label)
	if got, want := string(enc[:]), "EGFCEFEECACACACACACACACACACACACA"; got != want {
		t.Fatalf("first level: %s, want %s", got, want)
	}
	b, err := appendName(nil, n)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte{32}, "EGFCEFEECACACACACACACACACACACACA"...)
	want = append(want, 7, 'N', 'E', 'T', 'B', 'I', 'O', 'S', 3, 'C', 'O', 'M', 0)
	if !bytes.Equal(b, want) {
		t.Fatalf("second level:\n%q\nwant\n%q", b, want)
	}
	got, end, err := readName(b, 0)
	if err != nil || end != len(b) || !got.Equal(n) {
		t.Fatalf("readName = %v %d %v", got, end, err)
	}
	if got.String() != "FRED<20>.NETBIOS.COM" {
		t.Fatalf("String = %s", got)
	}
}

func TestMakeName(t *testing.T) {
	for _, tc := range []struct {
		base   string
		suffix byte
		label  string
		err    error
	}{
		{"concierge", 0x20, "CONCIERGE      \x20", nil},
		{"WORKGROUP", 0x1e, "WORKGROUP      \x1e", nil},
		{"*", 0x00, "*\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", nil},
		{"", 0, "", ErrBadName},
		{"SIXTEENCHARSXXXX", 0, "", ErrBadName},
		{"A\x00B", 0, "", ErrBadName},
	} {
		n, err := MakeName(tc.base, tc.suffix, "")
		if !errors.Is(err, tc.err) {
			t.Errorf("MakeName(%q): err %v, want %v", tc.base, err, tc.err)
			continue
		}
		if err == nil && string(n.Label[:]) != tc.label {
			t.Errorf("MakeName(%q) = %q, want %q", tc.base, n.Label, tc.label)
		}
	}
	if _, err := MakeName("A", 0, "bad..scope"); !errors.Is(err, ErrBadLabel) {
		t.Errorf("bad scope: %v", err)
	}
}

func TestReadNameErrors(t *testing.T) {
	name, _ := appendName(nil, MustName("FRED", 0x20, ""))
	loop := []byte{0xc0, 0x00}
	self := append([]byte{}, name...)
	self = append(self, 0xc0, byte(len(name)))
	fwd := []byte{0xc0, 0x02, 0x00}
	chain := append([]byte{}, name...)
	for i := 0; i < 10; i++ {
		p := len(chain) - 2
		if i == 0 {
			p = 0
		}
		chain = append(chain, 0xc0|byte(p>>8), byte(p))
	}
	lower := append([]byte{32}, bytes.Repeat([]byte("a"), 32)...)
	lower = append(lower, 0)
	long := append([]byte{}, name[:len(name)-1]...)
	for len(long) < 300 {
		long = append(long, 63)
		long = append(long, bytes.Repeat([]byte("x"), 63)...)
	}
	long = append(long, 0)
	for _, tc := range []struct {
		name string
		msg  []byte
		off  int
		err  error
	}{
		{"empty", nil, 0, ErrShort},
		{"pointer to itself", loop, 0, ErrPointer},
		{"pointer to its own position", self, len(name), ErrPointer},
		{"forward pointer", fwd, 0, ErrPointer},
		{"too many pointers", chain, len(chain) - 2, ErrPointer},
		{"lower case", lower, 0, ErrBadName},
		{"truncated", name[:20], 0, ErrShort},
		{"no terminator", name[:len(name)-1], 0, ErrShort},
		{"reserved label type", []byte{0x40}, 0, ErrBadLabel},
		{"root name", []byte{0}, 0, ErrBadName},
		{"short first label", []byte{3, 'A', 'B', 'C', 0}, 0, ErrBadName},
		{"too long", long, 0, ErrNameTooLong},
	} {
		if _, _, err := readName(tc.msg, tc.off); !errors.Is(err, tc.err) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.err)
		}
	}
	// A backward pointer is followed.
	ok := append(append([]byte{}, name...), 0xc0, 0x00)
	n, end, err := readName(ok, len(name))
	if err != nil || end != len(ok) || n.Base() != "FRED" {
		t.Errorf("backward pointer: %v %d %v", n, end, err)
	}
}

var (
	fred  = MustName("FRED", 0x00, "")
	fredS = MustName("FRED", 0x20, "NETBIOS.COM")
	addr  = netip.MustParseAddr("10.77.5.1")
)

// samples holds one packet of every kind, for the table and the corpus.
func samples() map[Kind]*Packet {
	reg := NewRegistration(1, fred, 300000, NB{Addr: addr}, true)
	q := NewQuery(2, fredS, false, true)
	st := NewNodeStatusRequest(3, Wildcard)
	nsr, _ := NewNodeStatusResponse(st, &NodeStatus{
		Names: []NodeName{{fred.Label, NameACT}, {MustName("WORKGROUP", 0, "").Label, NameACT | NBGroup}},
		Stats: Statistics{UnitID: [6]byte{2, 0, 0, 0, 0, 1}}})
	redir, _ := NewRedirect(q, MustName("NBNS", 0x20, "NETBIOS.COM"), addr)
	return map[Kind]*Packet{
		KindRegistrationRequest:  reg,
		KindOverwriteDemand:      NewOverwriteDemand(4, fred, 300000, NB{Addr: addr}),
		KindRefreshRequest:       NewRefresh(5, fred, 300000, NB{Addr: addr}),
		KindMultiHomedRequest:    {Header: Header{ID: 6, Opcode: OpMultiHomed, Flags: FlagRD}, Questions: reg.Questions, Additional: reg.Additional},
		KindPositiveRegistration: NewRegistrationResponse(reg, RcodeOK, 300000),
		KindNegativeRegistration: NewRegistrationResponse(reg, RcodeActErr, 0),
		KindEndNodeChallenge:     {Header: Header{ID: 7, Response: true, Opcode: OpRegistration, Flags: FlagAA | FlagRD}, Answers: reg.Additional},
		KindConflictDemand:       NewConflictDemand(8, fred, NB{Addr: addr}),
		KindReleaseRequest:       NewRelease(9, fred, NB{Addr: addr}, false),
		KindPositiveRelease:      NewReleaseResponse(reg, RcodeOK),
		KindNegativeRelease:      NewReleaseResponse(reg, RcodeActErr),
		KindQueryRequest:         q,
		KindPositiveQuery:        NewPositiveQuery(q, 300000, true, NB{Addr: addr}, NB{Flags: NBGroup, Addr: netip.MustParseAddr("10.77.5.2")}),
		KindNegativeQuery:        NewNegativeQuery(q, RcodeNamErr, true),
		KindRedirectQuery:        redir,
		KindWACK:                 NewWACK(reg, 2),
		KindNodeStatusRequest:    st,
		KindNodeStatusResponse:   nsr,
	}
}

func TestEveryKindRoundTrips(t *testing.T) {
	s := samples()
	if len(s) != KindCount-1 {
		t.Fatalf("%d samples for %d kinds", len(s), KindCount-1)
	}
	for k, p := range s {
		b, err := p.Pack()
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		q, err := Parse(b)
		if err != nil {
			t.Fatalf("%s: parse: %v", k, err)
		}
		if q.Kind() != k {
			t.Errorf("%s parsed as %s", k, q.Kind())
		}
		if !reflect.DeepEqual(norm(p), norm(q)) {
			t.Errorf("%s: round trip\n%+v\n%+v", k, p, q)
		}
	}
}

// RFC 1002 4.2.2: the additional record's name is a pointer to the
// question name at offset 12.
func TestRegistrationLayout(t *testing.T) {
	b, err := NewRegistration(0x1234, MustName("FRED", 0, ""), 0x493e0, NB{Addr: addr}, true).Pack()
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0x12, 0x34, 0x29, 0x10, 0, 1, 0, 0, 0, 0, 0, 1, 32}
	want = append(want, "EGFCEFEECACACACACACACACACACACAAA"...)
	want = append(want, 0, 0, 0x20, 0, 1, 0xc0, 0x0c, 0, 0x20, 0, 1, 0, 0x04, 0x93, 0xe0, 0, 6, 0, 0, 10, 77, 5, 1)
	if !bytes.Equal(b, want) {
		t.Fatalf("got  % x\nwant % x", b, want)
	}
}

func TestParseErrors(t *testing.T) {
	q, _ := NewQuery(1, fred, true, false).Pack()
	many := append([]byte{}, q...)
	many[5] = 9
	big := make([]byte, MaxTCP+1)
	nbst, _ := samples()[KindNodeStatusResponse].Pack()
	for _, tc := range []struct {
		name string
		msg  []byte
		err  error
	}{
		{"header", q[:11], ErrShort},
		{"question type", q[:len(q)-2], ErrShort},
		{"too many", many, ErrTooMany},
		{"too long", big, ErrTooLong},
		{"rdata", nbst[:len(nbst)-1], ErrShort},
	} {
		if _, err := Parse(tc.msg); !errors.Is(err, tc.err) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
		}
	}
	if _, err := ParseNB(make([]byte, 7)); !errors.Is(err, ErrBadRData) {
		t.Errorf("ParseNB: %v", err)
	}
	if _, err := ParseNodeStatus([]byte{2, 0}); !errors.Is(err, ErrBadRData) {
		t.Errorf("ParseNodeStatus: %v", err)
	}
	if _, err := ParseWACK([]byte{1}); !errors.Is(err, ErrBadRData) {
		t.Errorf("ParseWACK: %v", err)
	}
}

func TestWACKData(t *testing.T) {
	reg := NewRegistration(1, fred, 1, NB{Addr: addr}, false)
	h, err := ParseWACK(NewWACK(reg, 2).Answers[0].Data)
	if err != nil || h.Opcode != OpRegistration || h.Flags != FlagRD {
		t.Fatalf("%+v %v", h, err)
	}
}

// norm makes nil and empty slices equal for comparisons.
func norm(p *Packet) *Packet {
	c := *p
	fix := func(rs []Resource) []Resource {
		if len(rs) == 0 {
			return nil
		}
		out := make([]Resource, len(rs))
		for i, r := range rs {
			if len(r.Data) == 0 {
				r.Data = nil
			}
			out[i] = r
		}
		return out
	}
	if len(c.Questions) == 0 {
		c.Questions = nil
	}
	c.Answers, c.Authority, c.Additional = fix(c.Answers), fix(c.Authority), fix(c.Additional)
	return &c
}

func seeds() [][]byte {
	var out [][]byte
	for k := Kind(1); k < kindCount; k++ {
		b, _ := samples()[k].Pack()
		out = append(out, b)
	}
	return out
}

// TestWriteCorpus rewrites testdata/fuzz from the samples with
// -update-corpus.
func TestWriteCorpus(t *testing.T) {
	if !*updateCorpus {
		t.Skip("run with -update-corpus to rewrite testdata/fuzz")
	}
	for _, fz := range []string{"FuzzParse", "FuzzParseNodeStatus", "FuzzParseNB"} {
		dir := filepath.Join("testdata", "fuzz", fz)
		os.MkdirAll(dir, 0o755)
		for i, s := range seeds() {
			data := s
			if fz != "FuzzParse" {
				p, _ := Parse(s)
				if len(p.Answers) == 0 {
					continue
				}
				data = p.Answers[0].Data
			}
			os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed%02d", i)), fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", data), 0o644)
		}
	}
}

// FuzzParse: nothing panics, and whatever parses packs and parses back
// to the same packet, and packs to the same bytes again.
func FuzzParse(f *testing.F) {
	for _, s := range seeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		p, err := Parse(msg)
		if err != nil {
			return
		}
		_ = p.Kind()
		_ = p.String()
		b, err := p.Pack()
		if err != nil {
			// Only scopes that read but do not write (none today) may fail.
			t.Fatalf("pack of parsed packet: %v", err)
		}
		q, err := Parse(b)
		if err != nil {
			t.Fatalf("reparse: %v\n% x", err, b)
		}
		if !reflect.DeepEqual(norm(p), norm(q)) {
			t.Fatalf("round trip differs\n%+v\n%+v", p, q)
		}
		if p.Kind() != q.Kind() {
			t.Fatalf("kind %s became %s", p.Kind(), q.Kind())
		}
		b2, err := q.Pack()
		if err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("second pack differs: %v", err)
		}
	})
}

func FuzzParseNodeStatus(f *testing.F) {
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseNodeStatus(data)
		if err != nil {
			return
		}
		b, err := s.Append(nil)
		if err != nil || !bytes.Equal(b, data) {
			t.Fatalf("round trip: %v\n% x\n% x", err, data, b)
		}
	})
}

func FuzzParseNB(f *testing.F) {
	f.Add([]byte{0x80, 0, 10, 0, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		es, err := ParseNB(data)
		if err != nil {
			return
		}
		if b := AppendNB(nil, es...); !bytes.Equal(b, data) {
			t.Fatalf("round trip\n% x\n% x", data, b)
		}
	})
}
