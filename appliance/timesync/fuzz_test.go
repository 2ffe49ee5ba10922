package timesync

import (
	"context"
	"encoding/binary"
	"net"
	"testing"
	"time"
)

// answerOnce serves one query on a loopback UDP socket with answer, its
// origin timestamp (octets 24-31) set to the query's transmit timestamp
// (octets 40-47) so that the answer gets past the match check (RFC 5905
// 8) into the rest of the parsing.
func answerOnce(t testing.TB, answer []byte) string {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 1500)
		n, from, err := c.ReadFrom(buf)
		if err != nil || n < 48 {
			return
		}
		a := append([]byte(nil), answer...)
		if len(a) >= 48 {
			copy(a[24:32], buf[40:48])
		}
		c.WriteTo(a, from)
	}()
	return c.LocalAddr().String()
}

// validAnswer is a stratum 8 server answer (mode 4) made now.
func validAnswer() []byte {
	a := make([]byte, 48)
	a[0] = 0<<6 | 4<<3 | 4 // no leap warning, version 4, server
	a[1] = 8
	a[2] = 6
	a[3] = 0xe9 // precision
	copy(a[12:16], "LOCL")
	ntpTime := func(off int, t time.Time) {
		secs := uint64(t.Unix() + 2208988800)
		frac := uint64(t.Nanosecond()) << 32 / 1e9
		binary.BigEndian.PutUint64(a[off:], secs<<32|frac)
	}
	now := time.Now()
	ntpTime(16, now.Add(-time.Minute)) // reference
	ntpTime(32, now)                   // receive
	ntpTime(40, now)                   // transmit
	return a
}

// The answer of a real server is accepted through Query.
func TestQueryValidAnswer(t *testing.T) {
	s, err := Query(context.Background(), answerOnce(t, validAnswer()), 2*time.Second)
	if err != nil || s.Stratum != 8 || s.Offset.Abs() > time.Second {
		t.Fatalf("Query: %+v, %v", s, err)
	}
}

// Whatever a server sends back, Query returns a sample or an error and
// never panics; a sample it returns has a stratum a server can have.
func FuzzQueryAnswer(f *testing.F) {
	f.Add(validAnswer())
	f.Add([]byte{})
	f.Add(make([]byte, 48))
	f.Fuzz(func(t *testing.T, answer []byte) {
		s, err := Query(context.Background(), answerOnce(t, answer), time.Second)
		if err == nil && (s.Stratum < 1 || s.Stratum > 15) {
			t.Fatalf("accepted stratum %d", s.Stratum)
		}
	})
}
