package smtpd

import (
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"concierge/smtpd/queue"
)

// testSpool holds branch.test and lets only 127.0.0.2 and logged-in users
// release it.
type testSpool struct {
	mu       sync.Mutex
	released []string
	activity []int
}

func (sp *testSpool) IsRelayDomain(d string) bool { return d == "branch.test" }
func (sp *testSpool) Release(node string, ip netip.Addr, user string) *smtp.SMTPError {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if node != "branch.test" {
		return &smtp.SMTPError{Code: CodeETRNNotAllowed, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Node " + node + " not allowed: not a relay domain here"}
	}
	if ip != netip.MustParseAddr("127.0.0.2") && user == "" {
		return &smtp.SMTPError{Code: CodeETRNNotAllowed, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Node " + node + " not allowed: " + ip.String() + " may not release it"}
	}
	sp.released = append(sp.released, node)
	return &smtp.SMTPError{Code: CodeETRNPendingN, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK, 1 pending messages for node " + node + " started"}
}
func (sp *testSpool) Activity(ip netip.Addr, n int, b int64) {
	sp.mu.Lock()
	sp.activity = append(sp.activity, n)
	sp.mu.Unlock()
}

// ETRN is advertised and answered by the front end: mail for a relay
// domain is accepted from anyone (and queued); ETRN from a client the
// spool refuses gets 459, bad arguments 501, ETRN before EHLO or inside
// a transaction 503; the library never sees the verb (no 500/502).
func TestETRN(t *testing.T) {
	sp := &testSpool{}
	s, dir := newTestServerWith(t, Settings{MaxMessageBytes: 1 << 20, MaxRecipients: 3, IdleTimeout: 2 * time.Second,
		MaxConns: 10, MaxConnsPerIP: 10, Spool: sp})
	out := dialog(t, s, "ETRN branch.test\r\nEHLO c.test\r\nETRN branch.test\r\nETRN other.test\r\nETRN #q\r\nETRN\r\nETRN a..b\r\n"+
		"MAIL FROM:<a@remote.test>\r\nRCPT TO:<x@branch.test>\r\nETRN branch.test\r\nDATA\r\nSubject: t\r\n\r\nbody\r\n.\r\n"+
		"ETRN @Branch.test\r\nQUIT\r\n")
	want := []string{
		"220 ",
		"503 5.5.1 Send EHLO first",
		"250-mx.example.test Hello c.test",
		"250-ETRN",
		"459 5.7.1 Node branch.test not allowed: 127.0.0.1 may not release it",
		"459 5.7.1 Node other.test not allowed: not a relay domain here",
		"501 5.5.4 named queues are not offered; give a domain",
		"501 5.5.4 ETRN needs a domain",
		`501 5.5.4 not a domain: "a..b"`,
		"250 2.1.0 Ok",
		"250 2.1.5 Ok", // a relay domain takes mail from anyone
		"503 5.5.1 ETRN is not allowed within a mail transaction",
		"354 ",
		"250 2.0.0 Ok: queued as ",
		"459 5.7.1 Node @branch.test not allowed",
		"221 ",
	}
	lines := replyStarts(out)
	if len(lines) != len(want) {
		t.Fatalf("%d replies, want %d:\n%s", len(lines), len(want), out)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("reply %d: %q, want %q", i, lines[i], w)
		}
	}
	q, _ := queue.Open(filepath.Join(dir, "queue"))
	ids, _ := q.List()
	if len(ids) != 1 {
		t.Errorf("queued %d messages for the relay domain, want 1", len(ids))
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if len(sp.activity) != 2 || sp.activity[0] != 0 || sp.activity[1] != 1 {
		t.Errorf("activity: %v (want a connection, then a message)", sp.activity)
	}
}

// replyStarts returns the first line of each reply, and the ETRN keyword
// line of the EHLO reply.
func replyStarts(out string) []string {
	var lines []string
	first := true // the line starts a reply
	for _, l := range strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n") {
		if first || l == "250-ETRN" {
			lines = append(lines, l)
		}
		first = len(l) < 4 || l[3] != '-'
	}
	return lines
}

// ParseETRN returns only domains (optionally with '@') in lower case,
// never anything with spaces or control characters.
func FuzzParseETRN(f *testing.F) {
	for _, s := range []string{"branch.test", "@Branch.Test", "#queue", "", "a..b", "[10.0.0.1]", "x y", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		node, err := ParseETRN(arg)
		if err != nil {
			return
		}
		if node != strings.ToLower(node) || strings.ContainsAny(node, " \t\r\n#[") || strings.Contains(node[1:], "@") {
			t.Fatalf("ParseETRN(%q) = %q", arg, node)
		}
	})
}
