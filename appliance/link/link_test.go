package link

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"concierge/internal/testnet"
)

// fakeISP answers the greeting, EHLO and each ETRN with the reply given
// for its domain, like a spooling MTA.
func fakeISP(t *testing.T, replies map[string]string) string {
	t.Helper()
	return testnet.ServeLoopback(t, func(c net.Conn) {
		fmt.Fprint(c, "220 isp.test ESMTP\r\n")
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			verb, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
			switch strings.ToUpper(verb) {
			case "EHLO":
				fmt.Fprint(c, "250-isp.test\r\n250 ETRN\r\n")
			case "ETRN":
				fmt.Fprint(c, replies[arg]+"\r\n")
			case "QUIT":
				fmt.Fprint(c, "221 bye\r\n")
				return
			}
		}
	})
}

// Each RFC 1985 reply is understood and said in words; 458 and 459 are
// failures, and no answer at all is one too.
func TestETRNReplies(t *testing.T) {
	addr := fakeISP(t, map[string]string{
		"a.test": "250 Queuing started", "b.test": "251 OK, no messages waiting for node b.test",
		"c.test": "253 OK, 4 pending messages for node c.test started",
		"d.test": "458 Unable to queue messages for node d.test", "e.test": "459 Node e.test not allowed: unknown",
		"f.test": "554 5.7.1 <f.test>: Access denied",
	})
	res := ETRN(context.Background(), addr, "box.test", []string{"a.test", "b.test", "c.test", "d.test", "e.test", "f.test"})
	want := []struct {
		code  int
		ok    bool
		words string
	}{
		{250, true, "started sending"}, {251, true, "holds no mail"}, {253, true, "started sending the pending"},
		{458, false, "could not start"}, {459, false, "does not hold mail"}, {554, false, "refused ETRN for f.test from this box"},
	}
	if len(res) != len(want) {
		t.Fatalf("%d results: %+v", len(res), res)
	}
	for i, w := range want {
		if res[i].Code != w.code || res[i].OK != w.ok || !strings.Contains(res[i].Words, w.words) {
			t.Errorf("%s: %+v, want %d %v %q", res[i].Domain, res[i], w.code, w.ok, w.words)
		}
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()
	res = ETRN(context.Background(), dead, "box.test", []string{"a.test"})
	if len(res) != 1 || res[0].OK || !strings.Contains(res[0].Words, "did not answer") {
		t.Errorf("no answer: %+v", res)
	}
	// A host that greets but never answers ETRN: the release timeout ends it.
	silent := mute(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	res = ETRN(ctx, silent, "box.test", []string{"a.test"})
	if len(res) != 1 || res[0].OK || !strings.Contains(res[0].Words, "did not answer ETRN for a.test in time") {
		t.Errorf("silent host: %+v", res)
	}
	// A host that answers ETRN with an endless line: the box stops
	// reading after a few KB and says the host did not answer.
	sent := make(chan int64, 1)
	flood := testnet.ServeLoopback(t, func(c net.Conn) {
		fmt.Fprint(c, "220 isp.test ESMTP\r\n")
		r := bufio.NewReader(c)
		r.ReadString('\n') // EHLO
		fmt.Fprint(c, "250 isp.test\r\n")
		r.ReadString('\n') // ETRN
		sent <- testnet.Flood(c, []byte(strings.Repeat("y", 64<<10)))
	})
	res = ETRN(context.Background(), flood, "box.test", []string{"a.test"})
	if len(res) != 1 || res[0].OK || !strings.Contains(res[0].Reply, "over 4096 octets") {
		t.Errorf("endless reply: %+v", res)
	}
	if n := <-sent; n > 64<<20 {
		t.Errorf("the host wrote %d MB of its reply before the box hung up", n>>20)
	}
}

// mute is a mail host that greets and answers EHLO, then says nothing.
func mute(t *testing.T) string {
	t.Helper()
	return testnet.ServeLoopback(t, func(c net.Conn) {
		fmt.Fprint(c, "220 isp.test ESMTP\r\n")
		r := bufio.NewReader(c)
		if _, err := r.ReadString('\n'); err != nil {
			return
		}
		fmt.Fprint(c, "250 isp.test\r\n")
		io.Copy(io.Discard, r)
	})
}

// The accounts survive a restart; a record left open by a crash is
// closed and marked; the day totals add up.
func TestAccounts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "accounts.json")
	a, err := OpenAccounts(path)
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	a.Put(Record{Start: day, End: day.Add(2 * time.Minute), Reason: "schedule", MessagesOut: 3, BytesOut: 300, MessagesIn: 1, BytesIn: 50})
	a.Put(Record{Start: day.Add(time.Hour), Reason: "outbound mail waiting", MessagesOut: 1, BytesOut: 10})
	b, err := OpenAccounts(path)
	if err != nil {
		t.Fatal(err)
	}
	recent := b.Recent(10)
	if len(recent) != 2 || !strings.Contains(recent[0].DownReason, "restarted") || recent[0].End.IsZero() {
		t.Fatalf("after a restart: %+v", recent)
	}
	days := b.Days(7, day.Add(2*time.Hour))
	if len(days) != 1 || days[0].LinkUps != 2 || days[0].MessagesOut != 4 || days[0].BytesOut != 310 || days[0].MessagesIn != 1 ||
		time.Duration(days[0].UpTime) != 2*time.Minute {
		t.Errorf("day totals: %+v", days)
	}
}
