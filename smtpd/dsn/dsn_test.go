package dsn

import (
	"bytes"
	"flag"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var (
	arrival = time.Date(2026, 3, 2, 9, 15, 0, 0, time.UTC)
	sent    = time.Date(2026, 3, 2, 9, 16, 30, 0, time.UTC)
)

const original = "Received: from pc1 ([10.0.0.5])\r\n\tby mail.example.test (Concierge) with ESMTPSA id 1772442900.M1P2Q3.mail\r\n" +
	"From: Bob <bob@example.test>\r\nTo: x@remote.test, y@remote.test, z@remote.test\r\nSubject: Quarterly figures\r\n" +
	"Message-ID: <q1@example.test>\r\n\r\nThe body is not copied.\r\n"

func reports() map[string]*Report {
	hdr, _ := Headers(strings.NewReader(original))
	base := func() *Report {
		return &Report{ReportingMTA: "mail.example.test", From: "MAILER-DAEMON@example.test", To: "bob@example.test",
			QueueID: "1772442900.M1P2Q3.mail", Arrival: arrival, Date: sent, Headers: hdr,
			Boundary: "dsn-0123456789abcdef", MessageID: "<1772442900.M1P2Q3.mail.0001.dsn@mail.example.test>"}
	}
	failure := base()
	failure.Recipients = []Recipient{{Addr: "y@remote.test", Action: Failed, Status: "5.1.1", RemoteMTA: "mx2.remote.test",
		Diagnostic: "550 5.1.1 <y@remote.test>: Recipient address rejected: User unknown", LastAttempt: sent}}
	nullmx := base()
	nullmx.Recipients = []Recipient{{Addr: "a@nullmx.test", Action: Failed, Status: "5.1.10",
		Diagnostic: "556 5.1.10 Recipient address has null MX", Reason: "domain nullmx.test accepts no mail (null MX)", LastAttempt: sent},
		{Addr: "b@nxdomain.test", Action: Failed, Status: "5.1.2", Reason: "domain nxdomain.test does not exist (DNS NXDOMAIN)", LastAttempt: sent}}
	delay := base()
	delay.RetryUntil = arrival.Add(5 * 24 * time.Hour)
	delay.Recipients = []Recipient{{Addr: "x@remote.test", Action: Delayed, Status: "4.3.0", RemoteMTA: "mx1.remote.test",
		Diagnostic: "451 4.3.0 Try again later", LastAttempt: sent}}
	// RFC 3461: ENVID and ORCPT come back in the report; RET=FULL returns
	// the whole message.
	full := base()
	full.EnvelopeID = "QQ314159"
	full.Full = []byte(original)
	full.Recipients = []Recipient{{Original: "rfc822;sales@example.test", Addr: "partner@remote.test", Action: Failed, Status: "5.4.6",
		Reason: "mail for remote.test loops back to myself (MX host mail.example.test is this box)", LastAttempt: sent}}
	relayed := base()
	relayed.EnvelopeID = "QQ271828"
	relayed.Recipients = []Recipient{{Original: "rfc822;x@remote.test", Addr: "x@remote.test", Action: Relayed, Status: "2.0.0",
		RemoteMTA: "mx1.remote.test", LastAttempt: sent, Reason: "passed on to a server without DSN"}}
	return map[string]*Report{"failure": failure, "nullmx": nullmx, "delay": delay, "full": full, "relayed": relayed}
}

func TestGolden(t *testing.T) {
	for name, r := range reports() {
		got := r.Bytes()
		path := filepath.Join("testdata", name+".eml")
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -update to create it)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from %s (go test -update rewrites it):\n%s", name, path, got)
		}
	}
}

// The notices parse as RFC 6522 reports with the parts in order.
func TestStructure(t *testing.T) {
	for name, r := range reports() {
		msg, err := mail.ReadMessage(bytes.NewReader(r.Bytes()))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
		if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
			t.Fatalf("%s: Content-Type %q: %v", name, msg.Header.Get("Content-Type"), err)
		}
		mr := multipart.NewReader(msg.Body, params["boundary"])
		var types []string
		var status string
		for {
			p, err := mr.NextPart()
			if err != nil {
				break
			}
			types = append(types, p.Header.Get("Content-Type"))
			var b bytes.Buffer
			b.ReadFrom(p)
			if strings.HasPrefix(p.Header.Get("Content-Type"), "message/delivery-status") {
				status = b.String()
			}
		}
		third := "text/rfc822-headers"
		if r.Full != nil {
			third = "message/rfc822"
		}
		if len(types) != 3 || !strings.HasPrefix(types[0], "text/plain") || types[1] != "message/delivery-status" || types[2] != third {
			t.Errorf("%s: parts %q", name, types)
		}
		for _, rc := range r.Recipients {
			if !strings.Contains(status, "Final-Recipient: rfc822; "+rc.Addr+"\r\nAction: "+string(rc.Action)) {
				t.Errorf("%s: no report for %s in\n%s", name, rc.Addr, status)
			}
		}
		if copied := strings.Contains(string(r.Bytes()), "The body is not copied"); copied != (r.Full != nil) {
			t.Errorf("%s: the original body copied: %v, RET=FULL: %v", name, copied, r.Full != nil)
		}
		if r.EnvelopeID != "" && !strings.Contains(status, "Original-Envelope-Id: "+r.EnvelopeID+"\r\n") {
			t.Errorf("%s: no Original-Envelope-Id in\n%s", name, status)
		}
		for _, rc := range r.Recipients {
			if rc.Original != "" && !strings.Contains(status, "Original-Recipient: "+rc.Original+"\r\nFinal-Recipient: rfc822; "+rc.Addr) {
				t.Errorf("%s: no Original-Recipient for %s in\n%s", name, rc.Addr, status)
			}
		}
	}
}

func TestHeaders(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"A: 1\r\nB: 2\r\n\r\nbody", "A: 1\r\nB: 2\r\n"},
		{"A: 1\nB: 2\n\nbody", "A: 1\r\nB: 2\r\n"},
		{"A: 1\r\n", "A: 1\r\n"},
		{"A: 1", "A: 1\r\n"},
		{"\r\nbody", ""},
	} {
		got, err := Headers(strings.NewReader(c.in))
		if err != nil || string(got) != c.want {
			t.Errorf("Headers(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	big := strings.Repeat("X-Long: "+strings.Repeat("a", 1000)+"\r\n", 200)
	got, _ := Headers(strings.NewReader(big))
	if len(got) > MaxHeaders+2 {
		t.Errorf("Headers read %d bytes, more than MaxHeaders", len(got))
	}
}

func TestStatusClassFollowsAction(t *testing.T) {
	for _, c := range []struct {
		a    Action
		in   string
		want string
	}{{Failed, "4.4.7", "5.4.7"}, {Delayed, "5.1.1", "4.1.1"}, {Failed, "", "5.0.0"}, {Failed, "5.1.10", "5.1.10"},
		{Relayed, "", "2.0.0"}, {Delivered, "2.1.5", "2.1.5"}} {
		if got := statusFor(Recipient{Action: c.a, Status: c.in}); got != c.want {
			t.Errorf("statusFor(%s, %q) = %q, want %q", c.a, c.in, got, c.want)
		}
	}
}

// Headers reads whatever a sender put in a message: it must stay bounded,
// end every line with CRLF and stop at the first empty line.
func FuzzHeaders(f *testing.F) {
	f.Add([]byte(original))
	f.Add([]byte("A: 1\nB: 2\n\nbody"))
	f.Add([]byte("\r\n\r\n"))
	f.Add([]byte("X: \r\r\n\tcont\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := Headers(bytes.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		if len(out) > MaxHeaders+2 {
			t.Fatalf("%d bytes out of a %d-byte limit", len(out), MaxHeaders)
		}
		for _, l := range strings.SplitAfter(string(out), "\r\n") {
			if l == "" {
				continue
			}
			if !strings.HasSuffix(l, "\r\n") || l == "\r\n" {
				t.Fatalf("bad line %q in %q", l, out)
			}
		}
		// The report built around them still parses as a message.
		r := reports()["failure"]
		r.Headers = out
		if _, err := mail.ReadMessage(bytes.NewReader(r.Bytes())); err != nil {
			t.Fatalf("report does not parse: %v", err)
		}
	})
}
