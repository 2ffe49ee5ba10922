package replyguard

import (
	"bytes"
	"errors"
	"net"
	"net/textproto"
	"strings"
	"testing"
)

// model is what Scan must say about a whole stream, worked out line by
// line.
func model(stream []byte) error {
	lines := bytes.SplitAfter(stream, []byte("\n"))
	run := 0
	for _, l := range lines {
		if len(l) > MaxLine {
			return ErrLineTooLong
		}
		if !bytes.HasSuffix(l, []byte("\n")) {
			break // the last, unfinished line
		}
		if len(l) > 4 && l[3] == '-' {
			if run++; run >= MaxLines {
				return ErrTooManyLines
			}
		} else {
			run = 0
		}
	}
	return nil
}

// scanSplit scans stream in two pieces cut at at; it checks that the
// octets Scan passes on never include the line that crossed a limit.
func scanSplit(t *testing.T, stream []byte, at int) error {
	var s Scanner
	n1, err := s.Scan(stream[:at])
	if err == nil {
		var n2 int
		n2, err = s.Scan(stream[at:])
		n1 += n2
	}
	if err != nil && n1 > len(stream) {
		t.Fatalf("passed on %d octets of %d", n1, len(stream))
	}
	if err != nil && model(stream[:n1]) != nil {
		t.Fatalf("passed on %q, over the limits", stream[:n1])
	}
	return err
}

func TestScan(t *testing.T) {
	ehlo := "250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 35882577\r\n250-STARTTLS\r\n250 SMTPUTF8\r\n"
	tests := []struct {
		name   string
		stream string
		want   error
	}{
		{"greeting and EHLO", "220 mx.example.test ESMTP\r\n" + ehlo + "250 2.1.0 Ok\r\n", nil},
		{"a line of the longest allowed", "550 " + strings.Repeat("x", MaxLine-6) + "\r\n", nil},
		{"a line one octet over", "550 " + strings.Repeat("x", MaxLine-5) + "\r\n", ErrLineTooLong},
		{"an endless line", strings.Repeat("x", 3*MaxLine), ErrLineTooLong},
		{"the most lines a reply may have", strings.Repeat("250-x\r\n", MaxLines-1) + "250 x\r\n", nil},
		{"one line more", strings.Repeat("250-x\r\n", MaxLines) + "250 x\r\n", ErrTooManyLines},
		{"long replies one after another", strings.Repeat(strings.Repeat("250-x\r\n", MaxLines-1)+"250 x\r\n", 5), nil},
		{"bare LF and short lines end a reply", strings.Repeat(strings.Repeat("250-x\n", MaxLines-1)+"\n", 3), nil},
	}
	for _, tc := range tests {
		stream := []byte(tc.stream)
		if m := model(stream); m != tc.want {
			t.Fatalf("%s: the model says %v, the test %v", tc.name, m, tc.want)
		}
		for _, at := range []int{0, 1, 3, 4, 5, len(stream) / 2, len(stream) - 1, len(stream)} {
			if err := scanSplit(t, stream, at); err != tc.want {
				t.Errorf("%s, cut at %d: %v, want %v", tc.name, at, err, tc.want)
			}
		}
	}
}

// Through a connection, the reply reader gets the guard's error instead of
// reading on: an endless line, then endless continuation lines.
func TestConnStopsTheReader(t *testing.T) {
	for _, tc := range []struct {
		send string
		want error
	}{
		{"220 " + strings.Repeat("x", 1<<20), ErrLineTooLong},
		{"220 ready\r\n" + strings.Repeat("250-more\r\n", 1<<16), ErrTooManyLines},
	} {
		server, client := net.Pipe()
		go func() {
			server.Write([]byte(tc.send))
			server.Close()
		}()
		tp := textproto.NewConn(New(client))
		_, _, err := tp.ReadResponse(220)
		if tc.want == ErrTooManyLines {
			// The greeting before the endless reply is read.
			if err != nil {
				t.Fatalf("greeting: %v", err)
			}
			_, _, err = tp.ReadResponse(250)
		}
		if !errors.Is(err, tc.want) {
			t.Errorf("%.20q...: %v, want %v", tc.send, err, tc.want)
		}
		client.Close()
	}
}

// Scan agrees with the model whatever the stream and wherever it is cut.
func FuzzScan(f *testing.F) {
	f.Add([]byte("220 ok\r\n250-a\r\n250 b\r\n"), 7)
	f.Add([]byte(strings.Repeat("250-x\n", MaxLines)), 3)
	f.Add([]byte(strings.Repeat("y", MaxLine+1)), 100)
	f.Fuzz(func(t *testing.T, stream []byte, at int) {
		if at < 0 {
			at = -at
		}
		if len(stream) > 0 {
			at %= len(stream) + 1
		} else {
			at = 0
		}
		if got, want := scanSplit(t, stream, at), model(stream); got != want {
			t.Fatalf("cut at %d: %v, the model says %v", at, got, want)
		}
	})
}
