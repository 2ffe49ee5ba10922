package wire

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// A SESSION REQUEST from FRED to CONCIERGE<20>, written by hand from
// RFC 1002 4.3.2 and the name encoding of RFC 1001 14.1.
func TestSessionRequestBytes(t *testing.T) {
	r := SessionRequest{Called: MustName("CONCIERGE", 0x20, ""), Calling: MustName("FRED", 0x00, "")}
	b, err := r.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0x81, 0, 0, 68, 32}
	want = append(want, "EDEPEOEDEJEFFCEHEFCACACACACACACA"...)
	want = append(want, 0, 32)
	want = append(want, "EGFCEFEECACACACACACACACACACACAAA"...)
	want = append(want, 0)
	if !bytes.Equal(b, want) {
		t.Fatalf("request:\n%q\nwant\n%q", b, want)
	}
	h, err := ParseSessionHeader(b)
	if err != nil || h.Type != SessRequest || h.Length != 68 {
		t.Fatalf("header %+v %v", h, err)
	}
	got, err := ParseSessionRequest(b[4:])
	if err != nil || !reflect.DeepEqual(got, r) {
		t.Fatalf("request %+v %v", got, err)
	}
	if _, err := ParseSessionRequest(append(b[4:len(b):len(b)], 'x')); !errors.Is(err, ErrSessLength) {
		t.Fatalf("trailing byte: %v", err)
	}
}

func TestSessionHeader(t *testing.T) {
	for _, tc := range []struct {
		in     []byte
		typ    uint8
		length int
		err    error
	}{
		{[]byte{0x00, 0, 0, 0}, SessMessage, 0, nil},
		{[]byte{0x00, 1, 0xff, 0xff}, SessMessage, MaxSessionLen, nil}, // the E bit
		{[]byte{0x00, 1, 0, 0}, SessMessage, 65536, nil},
		{[]byte{0x85, 0, 0, 0}, SessKeepAlive, 0, nil},
		{[]byte{0x82, 0, 0, 0}, SessPositive, 0, nil},
		{[]byte{0x83, 0, 0, 1}, SessNegative, 1, nil},
		{[]byte{0x84, 0, 0, 6}, SessRetarget, 6, nil},
		{[]byte{0x85, 0, 0, 1}, 0, 0, ErrSessLength},
		{[]byte{0x81, 0, 0, 10}, 0, 0, ErrSessLength},
		{[]byte{0x00, 2, 0, 0}, 0, 0, ErrSessFlags},
		{[]byte{0x86, 0, 0, 0}, 0, 0, ErrSessType},
		{[]byte{0x00, 0, 0}, 0, 0, ErrShort},
	} {
		h, err := ParseSessionHeader(tc.in)
		if !errors.Is(err, tc.err) {
			t.Errorf("% x: err %v, want %v", tc.in, err, tc.err)
			continue
		}
		if err == nil && (h.Type != tc.typ || h.Length != tc.length) {
			t.Errorf("% x: %+v", tc.in, h)
		}
		if err == nil {
			b, err := AppendSessionHeader(nil, h.Type, h.Length)
			if err != nil || !bytes.Equal(b, tc.in) {
				t.Errorf("% x: packs to % x %v", tc.in, b, err)
			}
		}
	}
	if _, err := AppendSessionHeader(nil, SessMessage, MaxSessionLen+1); !errors.Is(err, ErrSessLength) {
		t.Fatalf("oversize: %v", err)
	}
}

func TestNegativeAndRetarget(t *testing.T) {
	if b := AppendNegative(nil, SessErrCalledNotPresent); !bytes.Equal(b, []byte{0x83, 0, 0, 1, 0x82}) {
		t.Fatalf("negative % x", b)
	}
	to := netip.MustParseAddrPort("10.77.0.9:1139")
	b, err := AppendRetarget(nil, to)
	if err != nil || !bytes.Equal(b, []byte{0x84, 0, 0, 6, 10, 77, 0, 9, 0x04, 0x73}) {
		t.Fatalf("retarget % x %v", b, err)
	}
	if got, err := ParseRetarget(b[4:]); err != nil || got != to {
		t.Fatalf("ParseRetarget %v %v", got, err)
	}
}

func sessionSeeds() [][]byte {
	r, _ := SessionRequest{Called: MustName("CONCIERGE", 0x20, ""), Calling: MustName("PC", 0, "OFFICE")}.Append(nil)
	return [][]byte{r, {0x85, 0, 0, 0}, {0x00, 1, 0, 0}, AppendNegative(nil, 0x8f)}
}

func FuzzSession(f *testing.F) {
	for _, s := range sessionSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		h, err := ParseSessionHeader(msg)
		if err != nil {
			return
		}
		b, err := AppendSessionHeader(nil, h.Type, h.Length)
		if err != nil || !bytes.Equal(b, msg[:4]) {
			t.Fatalf("header % x packs to % x %v", msg[:4], b, err)
		}
		if h.Type != SessRequest || len(msg)-4 != h.Length {
			return
		}
		r, err := ParseSessionRequest(msg[4:])
		if err != nil {
			return
		}
		b, err = r.Append(nil)
		if err != nil {
			t.Fatalf("repack %+v: %v", r, err)
		}
		r2, err := ParseSessionRequest(b[4:])
		if err != nil || !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip %+v -> %+v %v", r, r2, err)
		}
	})
}

func datagramSeeds() [][]byte {
	d := Datagram{Type: DgmDirectUnique, Flags: DgmFlagFirst, ID: 7, SourceIP: netip.MustParseAddr("10.77.0.2"),
		SourcePort: 138, Source: MustName("PC", 0, ""), Dest: MustName("CONCIERGE", 0x20, ""), Data: []byte("hello")}
	a, _ := d.Pack()
	q := Datagram{Type: DgmQueryRequest, SourceIP: d.SourceIP, SourcePort: 138, Dest: d.Dest}
	b, _ := q.Pack()
	e := Datagram{Type: DgmError, SourceIP: d.SourceIP, SourcePort: 138, Code: DgmErrNotPresent}
	c, _ := e.Pack()
	return [][]byte{a, b, c}
}

func FuzzParseDatagram(f *testing.F) {
	for _, s := range datagramSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		d, err := ParseDatagram(msg)
		if err != nil {
			return
		}
		b, err := d.Pack()
		if err != nil {
			t.Fatalf("repack %+v: %v", d, err)
		}
		d2, err := ParseDatagram(b)
		if err != nil {
			t.Fatalf("reparse: %v", err)
		}
		if len(d.Data) == 0 {
			d.Data = nil
		}
		if len(d2.Data) == 0 {
			d2.Data = nil
		}
		if !reflect.DeepEqual(d, d2) {
			t.Fatalf("round trip\n%+v\n%+v", d, d2)
		}
	})
}

func TestDatagramBytes(t *testing.T) {
	msg := datagramSeeds()[0]
	want := []byte{0x10, 0x02, 0, 7, 10, 77, 0, 2, 0, 138, 0, 73, 0, 0, 32}
	want = append(want, "FAEDCACACACACACACACACACACACACAAA"...)
	want = append(want, 0, 32)
	want = append(want, "EDEPEOEDEJEFFCEHEFCACACACACACACA"...)
	want = append(want, 0)
	want = append(want, "hello"...)
	if !bytes.Equal(msg, want) {
		t.Fatalf("datagram:\n% x\nwant\n% x", msg, want)
	}
	d, err := ParseDatagram(msg)
	if err != nil || string(d.Data) != "hello" || d.Dest.String() != "CONCIERGE<20>" || !d.First() || d.More() {
		t.Fatalf("parse %+v %v", d, err)
	}
	for i, bad := range [][]byte{msg[:len(msg)-1], msg[:9], append([]byte{0x17}, msg[1:]...), {0x13, 0, 0, 0, 1, 2, 3, 4, 0, 138}} {
		if _, err := ParseDatagram(bad); err == nil {
			t.Errorf("bad %d parsed", i)
		}
	}
}

func TestFragment(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 150)
	base := Datagram{Type: DgmDirectUnique, SourceIP: netip.MustParseAddr("10.77.0.1"), SourcePort: 138,
		Source: MustName("A", 0, ""), Dest: MustName("B", 3, "")}
	fs, err := Fragment(base, data)
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 4 {
		t.Fatalf("%d fragments", len(fs))
	}
	var got []byte
	for i, f := range fs {
		b, err := f.Pack()
		if err != nil || len(b) > MaxDatagram {
			t.Fatalf("fragment %d: %d bytes %v", i, len(b), err)
		}
		if f.First() != (i == 0) || f.More() != (i < len(fs)-1) || int(f.Offset) != len(got) {
			t.Fatalf("fragment %d: flags %#x offset %d", i, f.Flags, f.Offset)
		}
		got = append(got, f.Data...)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("fragments do not add up")
	}
	if fs, _ := Fragment(base, nil); len(fs) != 1 || !fs[0].First() || fs[0].More() {
		t.Fatalf("empty data: %+v", fs)
	}
}

func TestUpdateSessionCorpus(t *testing.T) {
	if !*updateCorpus {
		t.Skip("run with -update-corpus to rewrite testdata/fuzz")
	}
	for fz, seeds := range map[string][][]byte{"FuzzSession": sessionSeeds(), "FuzzParseDatagram": datagramSeeds()} {
		dir := filepath.Join("testdata", "fuzz", fz)
		os.MkdirAll(dir, 0o755)
		for i, s := range seeds {
			os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed%d", i)), []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)), 0o644)
		}
	}
}
