package route

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"concierge/internal/mailaddr"
	"concierge/smtpd/queue"
	"concierge/smtpd/srs"
)

var now = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

func testData() Data {
	return Data{
		Domains: []Domain{{Name: "example.test"}, {Name: "example.net", AliasOf: "example.test"}, {Name: "other.test"}},
		Users:   []string{"bob", "alice"},
		Aliases: []Alias{
			{"sales@other.test", []string{"alice", "bob", "partner@remote.test"}},
			{"team@example.test", []string{"sales@other.test", "bob"}},
			{"@other.test", []string{"alice"}},
			{"loop1@example.test", []string{"loop2@example.test"}},
			{"loop2@example.test", []string{"loop1@example.test"}},
			{"fwd@example.test", []string{"partner@remote.test"}},
		},
		Postmaster: "bob",
		MailRoot:   "/data/mail",
		SRS:        &srs.Rewriter{Key: bytes.Repeat([]byte{1}, srs.KeySize), Domain: "example.test", Now: func() time.Time { return now }},
	}
}

func parse(t *testing.T, s string) mailaddr.Address {
	t.Helper()
	a, err := mailaddr.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestLookup(t *testing.T) {
	d := New(testData())
	valid := d.ForwardSender("stranger@faraway.test")
	for _, tc := range []struct {
		addr   string
		users  []string
		remote []string
		ok     bool
	}{
		{"bob@example.test", []string{"bob"}, nil, true},
		{"BOB@example.net", []string{"bob"}, nil, true},
		{"bob@other.test", []string{"alice"}, nil, true}, // users live at the primary domain; catch-all here
		{"nobody@example.test", nil, nil, false},
		{"postmaster@other.test", []string{"bob"}, nil, true},
		{"Postmaster@example.net", []string{"bob"}, nil, true},
		{"sales@other.test", []string{"alice", "bob"}, []string{"partner@remote.test"}, true},
		{"team@example.test", []string{"alice", "bob"}, []string{"partner@remote.test"}, true},
		{"loop1@example.test", nil, nil, false},
		{"x@remote.test", nil, []string{"x@remote.test"}, true},
		// SRS: a valid address goes back to the original sender, others
		// (forged, or at another domain) do not exist.
		{valid, nil, []string{"stranger@faraway.test"}, true},
		{"SRS0=aaaaaa=ab=faraway.test=stranger@example.test", nil, nil, false},
		{strings.Replace(valid, "@example.test", "@example.net", 1), nil, nil, false},
	} {
		users, remote, ok := d.Lookup(parse(t, tc.addr))
		slices.Sort(users)
		if ok != tc.ok || !slices.Equal(users, tc.users) || !slices.Equal(remote, tc.remote) {
			t.Errorf("Lookup(%s) = %v %v %v; want %v %v %v", tc.addr, users, remote, ok, tc.users, tc.remote, tc.ok)
		}
	}
	// Without SRS, SRS addresses do not exist.
	data := testData()
	data.SRS = nil
	if _, _, ok := New(data).Lookup(parse(t, valid)); ok {
		t.Errorf("an SRS address exists without SRS")
	}
}

func TestCanSendAs(t *testing.T) {
	d := New(testData())
	for addr, want := range map[string]bool{
		"bob@example.test":   true,
		"bob@example.net":    true,
		"team@example.test":  true,
		"sales@other.test":   true,
		"alice@example.test": false,
		"bob@other.test":     false,
	} {
		if got := d.CanSendAs("bob", parse(t, addr)); got != want {
			t.Errorf("CanSendAs(bob, %s) = %v, want %v", addr, got, want)
		}
	}
	if d.Maildir("bob") != "/data/mail/bob" {
		t.Errorf("Maildir(bob) = %s", d.Maildir("bob"))
	}
}

func TestForwardSender(t *testing.T) {
	d := New(testData())
	for _, c := range []struct {
		from string
		srs  bool
	}{{"stranger@faraway.test", true}, {"bob@example.test", false}, {"x@other.test", false}, {"", false}} {
		got := d.ForwardSender(c.from)
		if isSRS := strings.HasPrefix(got, "SRS0=") && strings.HasSuffix(got, "@example.test"); isSRS != c.srs || !c.srs && got != c.from {
			t.Errorf("ForwardSender(%q) = %q", c.from, got)
		}
	}
}

const msg = "Return-Path: <x>\r\nReceived: by us\r\nSubject: hello\r\n\r\nthe body\r\n"

func notice(kind queue.NoticeKind, from string) queue.Notice {
	return queue.Notice{Kind: kind, Env: queue.Envelope{ID: "1772442900.M1P2Q3.mail", From: from, Received: now,
		BodyOffset: int64(len("Return-Path: <x>\r\n")), Size: int64(len(msg) - len("Return-Path: <x>\r\n"))},
		Recipients: []queue.Recipient{{Addr: "partner@remote.test", State: queue.Failed, Status: "5.1.1", LastError: "deliver: no"}}}
}

// Bounce routing: who gets a notice, and in what form.
func TestNoticeRouting(t *testing.T) {
	d := New(testData())
	set := NoticeSettings{Hostname: "mail.example.test", Now: func() time.Time { return now }}
	srsAddr := d.ForwardSender("stranger@faraway.test")
	for _, c := range []struct {
		kind   queue.NoticeKind
		from   string
		pmCopy bool
		to     string
		users  []string
		remote []string
	}{
		{queue.Failure, "bob@example.test", false, "bob@example.test", []string{"bob"}, nil},
		{queue.Failure, "alice@example.test", true, "alice@example.test", []string{"alice", "bob"}, nil},
		{queue.Delay, "alice@example.test", true, "alice@example.test", []string{"alice"}, nil},
		{queue.Failure, "x@remote.test", false, "x@remote.test", nil, []string{"x@remote.test"}},
		// A notice to our SRS address reaches the original sender only
		// through the reversal.
		{queue.Failure, srsAddr, false, srsAddr, nil, []string{"stranger@faraway.test"}},
		// A failed notice, or one to an address that does not exist,
		// goes to the postmaster.
		{queue.Failure, "", false, "postmaster@example.test", []string{"bob"}, nil},
		{queue.Failure, "SRS0=aaaaaa=ab=faraway.test=victim@example.test", false, "postmaster@example.test", []string{"bob"}, nil},
		{queue.Failure, "ghost@example.test", false, "postmaster@example.test", []string{"bob"}, nil},
	} {
		set.PostmasterCopy = c.pmCopy
		n, err := d.Notice(set, notice(c.kind, c.from), strings.NewReader(msg))
		if err != nil {
			t.Errorf("%v from %q: %v", c.kind, c.from, err)
			continue
		}
		slices.Sort(n.Users)
		if n.To != c.to || !slices.Equal(n.Users, c.users) || !slices.Equal(n.Remote, c.remote) {
			t.Errorf("%v from %q: to %s users %v remote %v; want %s %v %v", c.kind, c.from, n.To, n.Users, n.Remote, c.to, c.users, c.remote)
		}
		if !strings.Contains(string(n.Message), "To: <"+c.to+">\r\n") || !strings.Contains(string(n.Message), "Subject: hello\r\n") {
			t.Errorf("notice message:\n%s", n.Message)
		}
		if strings.Contains(string(n.Message), "Return-Path: <x>") {
			t.Errorf("the notice quotes the local Return-Path")
		}
	}
	// The failure of a forwarded copy goes to the SRS address it went out
	// with, and through its reversal to the original sender.
	fn := notice(queue.Failure, "stranger@faraway.test")
	fn.Recipients[0].Forwarded = true
	n, err := d.Notice(set, fn, strings.NewReader(msg))
	if err != nil || !strings.HasPrefix(n.To, "SRS0=") || !slices.Equal(n.Remote, []string{"stranger@faraway.test"}) {
		t.Errorf("notice of a forwarded copy: %+v %v", n, err)
	}
	// A delay warning for the null sender is nobody's business.
	if n, err := d.Notice(set, notice(queue.Delay, ""), nil); n != nil || err != nil {
		t.Errorf("delay for the null sender: %v %v", n, err)
	}
	data := testData()
	data.Postmaster = ""
	if _, err := New(data).Notice(set, notice(queue.Failure, ""), nil); !errors.Is(err, ErrNobody) {
		t.Errorf("double bounce without a postmaster: %v", err)
	}
}

// RET=FULL returns the message, ENVID and ORCPT come back (RFC 3461).
func TestNoticeDSNParameters(t *testing.T) {
	d := New(testData())
	set := NoticeSettings{Hostname: "mail.example.test"}
	n := notice(queue.Failure, "bob@example.test")
	n.Env.Ret, n.Env.EnvID = "FULL", "QQ42"
	n.Recipients[0].ORcpt = "rfc822;fwd@example.test"
	out, err := d.Notice(set, n, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"the body\r\n", "Content-Type: message/rfc822", "Original-Envelope-Id: QQ42\r\n", "Original-Recipient: rfc822;fwd@example.test\r\n"} {
		if !strings.Contains(string(out.Message), want) {
			t.Errorf("notice lacks %q:\n%s", want, out.Message)
		}
	}
	n.Env.Ret = "HDRS"
	out, _ = d.Notice(set, n, strings.NewReader(msg))
	if strings.Contains(string(out.Message), "the body") || !strings.Contains(string(out.Message), "text/rfc822-headers") {
		t.Errorf("RET=HDRS returned the body:\n%s", out.Message)
	}
	// A success notice for a recipient relayed to a server without DSN.
	s := notice(queue.Success, "bob@example.test")
	s.Recipients[0] = queue.Recipient{Addr: "x@remote.test", State: queue.Delivered, Success: "relayed", Notify: "SUCCESS"}
	out, _ = d.Notice(set, s, strings.NewReader(msg))
	if !strings.Contains(string(out.Message), "Action: relayed\r\nStatus: 2.0.0\r\n") {
		t.Errorf("success notice:\n%s", out.Message)
	}
}
