package smtpd_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"concierge/internal/testnet"
)

// mailLAN is a box serving example.test (primary), example.net (alias of
// it) and other.test, with users bob and alice, on a LAN with a client.
type mailLAN struct {
	lan    *testnet.LAN
	box    *testnet.Box
	client *testnet.Host
	relay  *testnet.Host // a host in a relay network
}

const (
	bobPass   = "correct horse"
	alicePass = "battery staple"
)

func newMailLAN(t *testing.T, subnet string, extra ...func(b *testnet.Box)) *mailLAN {
	t.Helper()
	testnet.Require(t, "swaks", "/usr/bin/python3")
	m := &mailLAN{lan: testnet.NewLAN(t, subnet+".0/24")}
	m.box = testnet.NewBox(t, m.lan.AddHost("box", 1))
	m.client = m.lan.AddHost("client", 10)
	m.relay = m.lan.AddHost("relay", 20)
	b := m.box
	b.CLI("domain", "add", "example.test")
	b.CLI("domain", "add", "example.net", "--alias-of", "example.test")
	b.CLI("domain", "add", "other.test")
	b.CLIInput(bobPass+"\n", "user", "add", "bob")
	b.CLIInput(alicePass+"\n", "user", "add", "alice")
	b.CLI("alias", "add", "sales@other.test", "alice", "bob")
	b.CLI("alias", "add", "info@example.test", "alice")
	b.CLI("relay", "add", m.relay.Addr.String()+"/32")
	for _, f := range extra {
		f(b)
	}
	b.Start(25)
	return m
}

// swaks runs swaks from host h against the box and returns its transcript
// and whether it succeeded.
func (m *mailLAN) swaks(h *testnet.Host, args ...string) (string, error) {
	args = append([]string{"--server", m.box.Addr.String(), "--timeout", "20"}, args...)
	cmd := h.Command("swaks", args...)
	cmd.Stdin = nil
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// rawSession is the start of a Python client that speaks SMTP by hand to
// port 25 of the box given as its first argument: s is the socket and
// reply() reads one (multi-line) reply; the greeting is already read.
func rawSession(timeout int) string {
	return fmt.Sprintf(`
import socket, sys, time
s = socket.create_connection((sys.argv[1], 25), timeout=%d)
f = s.makefile("rb")
def reply():
    l = f.readline()
    while l[3:4] == b"-":
        l = f.readline()
    return l.decode().strip()
reply()
`, timeout)
}

func countContaining(msgs []string, s string) int {
	n := 0
	for _, m := range msgs {
		if strings.Contains(m, s) {
			n++
		}
	}
	return n
}

// Acceptance 1: local user, domain alias, alias; unknown user; postmaster.
func TestDeliveryToLocalAddresses(t *testing.T) {
	m := newMailLAN(t, "10.77.2")
	cases := []struct {
		to    string
		users []string
	}{
		{"bob@example.test", []string{"bob"}},
		{"Bob@Example.NET", []string{"bob"}},
		{"sales@other.test", []string{"alice", "bob"}},
		{"info@example.test", []string{"alice"}},
		{"postmaster@example.test", []string{"bob"}},
		{"postmaster@example.net", []string{"bob"}},
		{"postmaster@other.test", []string{"bob"}},
	}
	for i, c := range cases {
		token := fmt.Sprintf("token-%d-%d", i, time.Now().UnixNano())
		out, err := m.swaks(m.client, "--to", c.to, "--from", "someone@remote.test", "--header", "Subject: "+token)
		if err != nil {
			t.Fatalf("swaks to %s: %v\n%s", c.to, err, out)
		}
		for _, u := range []string{"bob", "alice"} {
			want := 0
			for _, w := range c.users {
				if w == u {
					want = 1
				}
			}
			if got := countContaining(m.box.MaildirText(u), token); got != want {
				t.Errorf("to %s: %s's Maildir has the message %d times, want %d", c.to, u, got, want)
			}
		}
	}
	// A bare <postmaster> (RFC 5321 4.5.1) is accepted too.
	out, err := m.client.Output("/usr/bin/python3", "-c", `
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], 25, timeout=20)
s.ehlo("client.test")
s.mail("someone@remote.test")
code, msg = s.rcpt("postmaster")
print(code, msg.decode())
s.quit()
`, m.box.Addr.String())
	if err != nil || !strings.HasPrefix(out, "250") {
		t.Errorf("RCPT TO:<postmaster>: %v %s", err, out)
	}
	out, _ = m.swaks(m.client, "--to", "nobody@example.test", "--from", "someone@remote.test")
	if !strings.Contains(out, "<** 550 5.1.1") {
		t.Errorf("unknown user: want 550 5.1.1, got:\n%s", out)
	}
	// The Maildir is a real one: tmp, new and cur, files in new.
	for _, d := range []string{"tmp", "new", "cur"} {
		if fi, err := os.Stat(filepath.Join(m.box.Data, "mail", "bob", d)); err != nil || !fi.IsDir() {
			t.Errorf("bob's Maildir lacks %s/", d)
		}
	}
	msgs := m.box.MaildirText("bob")
	if len(msgs) == 0 || !strings.Contains(msgs[0], "Received: from ") || !strings.Contains(msgs[0], "by mail.example.test (Concierge)") {
		t.Errorf("delivered message lacks our Received: header:\n%.400s", msgs)
	}
}

var relayTricks = []string{
	"user%remote.test@example.test",
	"remote.test!user@example.test",
	"@example.test:user@remote.test",
	`"user@remote.test"@example.test`,
	"user@remote.test@example.test",
	"user@remote.test",
}

func queuedRecipients(t *testing.T, b *testnet.Box) []string {
	t.Helper()
	var rcpts []string
	envs, _ := filepath.Glob(filepath.Join(b.Data, "queue", "env", "*.json"))
	for _, e := range envs {
		data, err := os.ReadFile(e)
		if err != nil {
			t.Fatal(err)
		}
		rcpts = append(rcpts, string(data))
	}
	return rcpts
}

// Acceptance 2: no open relay, and relaying for trusted clients.
func TestNoOpenRelay(t *testing.T) {
	m := newMailLAN(t, "10.77.12")
	for _, to := range relayTricks {
		out, _ := m.swaks(m.client, "--to", to, "--from", "someone@remote.test")
		if !strings.Contains(out, "<** 55") {
			t.Errorf("relay attempt to %s from an untrusted client was not refused:\n%s", to, out)
		}
	}
	if q := queuedRecipients(t, m.box); len(q) != 0 {
		t.Fatalf("untrusted relay attempts were queued: %v", q)
	}
	for _, b := range m.box.Maildir("bob") {
		t.Errorf("relay attempt landed in a mailbox: %s", b)
	}
	// From a relay network every one of them is queued for user@remote.test.
	for _, to := range relayTricks {
		out, err := m.swaks(m.relay, "--to", to, "--from", "someone@example.test")
		if err != nil {
			t.Errorf("relay network to %s: %v\n%s", to, err, out)
		}
	}
	// After AUTH too.
	for _, to := range relayTricks {
		out, err := m.swaks(m.client, "--port", "587", "--tls", "--auth", "PLAIN", "--auth-user", "bob", "--auth-password", bobPass, "--to", to, "--from", "bob@example.test")
		if err != nil {
			t.Errorf("authenticated relay to %s: %v\n%s", to, err, out)
		}
	}
	q := queuedRecipients(t, m.box)
	if len(q) != 2*len(relayTricks) {
		t.Fatalf("queued %d messages, want %d", len(q), 2*len(relayTricks))
	}
	for _, e := range q {
		if !strings.Contains(e, `"addr":"user@remote.test"`) {
			t.Errorf("queued envelope is not for user@remote.test: %s", e)
		}
	}
}

// Acceptance 3: submission on 587 and 465, AUTH rules, failed logins slowed.
func TestSubmission(t *testing.T) {
	m := newMailLAN(t, "10.77.22")
	out, err := m.swaks(m.client, "--port", "587", "--tls", "--auth", "PLAIN", "--auth-user", "bob", "--auth-password", bobPass, "--from", "bob@example.net", "--to", "alice@example.test")
	if err != nil {
		t.Fatalf("587 STARTTLS + AUTH PLAIN: %v\n%s", err, out)
	}
	out, err = m.swaks(m.client, "--port", "465", "--tlsc", "--auth", "LOGIN", "--auth-user", "alice", "--auth-password", alicePass, "--from", "sales@other.test", "--to", "bob@example.test")
	if err != nil {
		t.Fatalf("465 implicit TLS + AUTH LOGIN: %v\n%s", err, out)
	}
	if len(m.box.Maildir("alice")) != 1 || len(m.box.Maildir("bob")) != 1 {
		t.Fatalf("submitted mail not delivered: alice %d, bob %d", len(m.box.Maildir("alice")), len(m.box.Maildir("bob")))
	}
	// Without AUTH, 587 refuses to take mail.
	out, _ = m.swaks(m.client, "--port", "587", "--tls", "--from", "bob@example.test", "--to", "alice@example.test")
	if !strings.Contains(out, "<~* 530 5.7.0") {
		t.Errorf("587 without AUTH: want 530 5.7.0:\n%s", out)
	}
	// A user may not send as someone else.
	out, _ = m.swaks(m.client, "--port", "587", "--tls", "--auth", "PLAIN", "--auth-user", "bob", "--auth-password", bobPass, "--from", "alice@example.test", "--to", "alice@example.test")
	if !strings.Contains(out, "<~* 553 5.7.1") {
		t.Errorf("sending as another user: want 553 5.7.1:\n%s", out)
	}
	// AUTH before STARTTLS: not offered, and refused when tried.
	out, err = m.client.Output("/usr/bin/python3", "-c", `
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], 587, timeout=20)
s.ehlo("client.test")
print("auth advertised:", s.has_extn("auth"))
print("starttls advertised:", s.has_extn("starttls"))
code, msg = s.docmd("AUTH", "PLAIN AGJvYgBjb3JyZWN0IGhvcnNl")
print(code, msg.decode())
`, m.box.Addr.String())
	if err != nil || !strings.Contains(out, "auth advertised: False") || !strings.Contains(out, "starttls advertised: True") || !strings.Contains(out, "538 5.7.11") {
		t.Errorf("AUTH before STARTTLS on 587: %v\n%s", err, out)
	}
	// Issue 9 item 2: wrong passwords are refused (535), and the user's
	// key backs off after each: meanwhile attempts are refused for now
	// (454 4.7.0) before any password check. The back-off doubles with
	// each failure (1 s, 2 s, 4 s); after three it outlasts a swaks run,
	// and then even the right password is refused for now.
	var got []string
	deadline := time.Now().Add(time.Minute)
	for fails := 0; fails < 3; {
		if time.Now().After(deadline) {
			t.Fatalf("wrong passwords answered %v", got)
		}
		out, _ = m.swaks(m.client, "--port", "587", "--tls", "--auth", "PLAIN", "--auth-user", "bob", "--auth-password", "wrong password", "--to", "bob@example.test")
		switch {
		case strings.Contains(out, "<~* 535 5.7.8"):
			got = append(got, "535")
			fails++
		case strings.Contains(out, "<~* 454 4.7.0"):
			got = append(got, "454")
		default:
			t.Fatalf("wrong password: want 535 5.7.8 or 454 4.7.0:\n%s", out)
		}
	}
	out, _ = m.swaks(m.client, "--port", "465", "--tlsc", "--auth", "LOGIN", "--auth-user", "bob@example.test", "--auth-password", bobPass, "--to", "bob@example.test")
	if !strings.Contains(out, "<~* 454 4.7.0") {
		t.Errorf("right password while the user backs off (after %v): want 454 4.7.0:\n%s", got, out)
	}
}

// Issue 9 item 13: mail programs log in with the full address; any
// address that reaches exactly one user logs in as that user, who may
// then send as any of the user's own addresses.
func TestSubmissionLoginWithAddress(t *testing.T) {
	m := newMailLAN(t, "10.77.143")
	for _, c := range []struct{ args []string }{
		{[]string{"--port", "587", "--tls", "--auth", "PLAIN", "--auth-user", "bob@example.test", "--auth-password", bobPass, "--from", "bob@example.net", "--to", "alice@example.test"}},
		{[]string{"--port", "465", "--tlsc", "--auth", "LOGIN", "--auth-user", "Bob@Example.NET", "--auth-password", bobPass, "--from", "bob@example.test", "--to", "alice@example.test"}},
		// info@example.test is an alias of alice alone.
		{[]string{"--port", "587", "--tls", "--auth", "LOGIN", "--auth-user", "info@example.test", "--auth-password", alicePass, "--from", "info@example.test", "--to", "bob@example.test"}},
	} {
		if out, err := m.swaks(m.client, c.args...); err != nil {
			t.Fatalf("swaks %v: %v\n%s", c.args, err, out)
		}
	}
	if n, k := len(m.box.Maildir("alice")), len(m.box.Maildir("bob")); n != 2 || k != 1 {
		t.Fatalf("delivered to alice %d, bob %d; want 2, 1", n, k)
	}
	// Logged in by address, bob is still only bob.
	out, _ := m.swaks(m.client, "--port", "587", "--tls", "--auth", "PLAIN", "--auth-user", "bob@example.test", "--auth-password", bobPass, "--from", "alice@example.test", "--to", "alice@example.test")
	if !strings.Contains(out, "<~* 553 5.7.1") {
		t.Errorf("sending as another user after an address login: want 553 5.7.1:\n%s", out)
	}
	// sales@other.test reaches two users: not a login.
	out, _ = m.swaks(m.client, "--port", "587", "--tls", "--auth", "PLAIN", "--auth-user", "sales@other.test", "--auth-password", alicePass, "--to", "alice@example.test")
	if !strings.Contains(out, "<~* 535 5.7.8") {
		t.Errorf("login as an address of two users: want 535 5.7.8:\n%s", out)
	}
}

// Acceptance 4: a 10 MB message with PIPELINING; over the limit gets 552.
func TestLargeMessageAndSizeLimit(t *testing.T) {
	m := newMailLAN(t, "10.77.32", func(b *testnet.Box) {
		b.CLI("config", "set", "smtp.max_message_size", "12000000")
	})
	out, err := m.client.Output("/usr/bin/python3", "-c", `
import smtplib, sys, hashlib
line = ("x" * 76 + "\r\n").encode()
body = b"Subject: big\r\n\r\n" + line * (10 * 1024 * 1024 // len(line))
s = smtplib.SMTP(sys.argv[1], 25, timeout=60)
s.ehlo("client.test")
assert s.has_extn("pipelining"), "no PIPELINING"
print("size ext:", s.esmtp_features.get("size"))
s.sendmail("someone@remote.test", ["bob@example.test"], body)
print("sent", len(body), hashlib.sha256(body).hexdigest())
big = body + line * (3 * 1024 * 1024 // len(line))
try:
    s.sendmail("someone@remote.test", ["bob@example.test"], big)
    print("big accepted")
except smtplib.SMTPSenderRefused as e:
    print("big refused at MAIL", e.smtp_code, e.smtp_error.decode())
except smtplib.SMTPDataError as e:
    print("big refused at DATA", e.smtp_code, e.smtp_error.decode())
`, m.box.Addr.String())
	if err != nil {
		t.Fatalf("smtplib: %v\n%s", err, out)
	}
	if !strings.Contains(out, "size ext: 12000000") || !strings.Contains(out, "big refused at MAIL 552") {
		t.Errorf("size limit not advertised or not enforced:\n%s", out)
	}
	msgs := m.box.MaildirText("bob")
	if len(msgs) != 1 {
		t.Fatalf("bob has %d messages, want 1", len(msgs))
	}
	if !strings.Contains(msgs[0], "Subject: big\r\n\r\n") || len(msgs[0]) < 10*1024*1024-100 {
		t.Errorf("stored message is %d bytes, too short", len(msgs[0]))
	}
	// A client that lies about SIZE (or gives none) is stopped at DATA.
	out, err = m.client.Output("/usr/bin/python3", "-c", rawSession(60)+`
s.sendall(b"EHLO client.test\r\n"); reply()
s.sendall(b"MAIL FROM:<a@remote.test>\r\n"); reply()
s.sendall(b"RCPT TO:<bob@example.test>\r\n"); reply()
s.sendall(b"DATA\r\n"); print(reply())
chunk = b"y" * 998 + b"\r\n"
try:
    for i in range(13000):
        s.sendall(chunk)
    s.sendall(b".\r\n")
except OSError as e:
    print("send stopped:", e)
print("final:", reply())
`, m.box.Addr.String())
	if err != nil || !strings.Contains(out, "final: 552") {
		t.Errorf("oversized DATA without SIZE: want 552:\n%v %s", err, out)
	}
}

// Acceptance 5: bare LF/CR dots do not end DATA (SMTP smuggling).
func TestSmuggling(t *testing.T) {
	m := newMailLAN(t, "10.77.42")
	out, err := m.client.Output("/usr/bin/python3", "-c", rawSession(20)+`
s.sendall(b"EHLO client.test\r\n"); reply()
s.sendall(b"MAIL FROM:<a@remote.test>\r\n"); reply()
s.sendall(b"RCPT TO:<bob@example.test>\r\n"); reply()
s.sendall(b"DATA\r\n"); print(reply())
s.sendall(b"Subject: outer\r\n\r\nfirst\n.\nMAIL FROM:<evil@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
          b"second\r.\r\nMAIL FROM:<evil@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n")
print("end:", reply())
s.sendall(b"QUIT\r\n"); print(reply())
`, m.box.Addr.String())
	if err != nil || !strings.Contains(out, "end: 250") {
		t.Fatalf("smuggling session: %v\n%s", err, out)
	}
	if n := len(m.box.Maildir("alice")); n != 0 {
		t.Errorf("a smuggled message reached alice (%d messages)", n)
	}
	msgs := m.box.MaildirText("bob")
	if len(msgs) != 1 || !strings.Contains(msgs[0], "evil") {
		t.Fatalf("bob should have one message holding all the text, has %d", len(msgs))
	}
	// Bare line endings were made CRLF, so no later hop can split it.
	body := msgs[0][strings.Index(msgs[0], "Subject: outer"):]
	if strings.Contains(strings.ReplaceAll(body, "\r\n", ""), "\n") || strings.Contains(strings.ReplaceAll(body, "\r\n", ""), "\r") {
		t.Errorf("stored message still has bare LF or CR: %q", body)
	}
}

// CLI changes reach the running server without a restart; the drop
// directory gets a copy of each message.
func TestLiveReconfiguration(t *testing.T) {
	m := newMailLAN(t, "10.77.72")
	out, _ := m.swaks(m.client, "--to", "carol@example.test", "--from", "someone@remote.test")
	if !strings.Contains(out, "<** 550 5.1.1") {
		t.Fatalf("carol exists before she was added:\n%s", out)
	}
	drop := t.TempDir()
	m.box.CLIInput("a fine password\n", "user", "add", "carol")
	m.box.CLI("config", "set", "smtp.drop_dir", drop)
	m.box.WaitSettingsApplied()
	if out, err := m.swaks(m.client, "--to", "carol@example.test", "--from", "someone@remote.test", "--header", "Subject: dropped"); err != nil {
		t.Fatalf("a new user is not live once the settings are applied:\n%s", out)
	}
	if n := len(m.box.Maildir("carol")); n != 1 {
		t.Errorf("carol has %d messages, want 1", n)
	}
	emls, _ := filepath.Glob(filepath.Join(drop, "*.eml"))
	if len(emls) != 1 {
		t.Fatalf("drop dir holds %d .eml files, want 1", len(emls))
	}
	if data, _ := os.ReadFile(emls[0]); !strings.Contains(string(data), "Subject: dropped") {
		t.Errorf("drop file lacks the message: %q", data)
	}
	// A bad hand edit of the file is refused and the old settings stay.
	cfgPath := filepath.Join(m.box.Data, "concierge.json")
	good, _ := os.ReadFile(cfgPath)
	os.WriteFile(cfgPath, []byte(strings.Replace(string(good), `"max_recipients": 100`, `"max_recipients": -5`, 1)), 0o600)
	m.box.ReloadSettings(false)
	if _, err := m.swaks(m.client, "--to", "carol@example.test", "--from", "someone@remote.test"); err != nil {
		t.Errorf("server stopped accepting mail after a bad settings file")
	}
	if !strings.Contains(m.box.Proc.Out.String(), "smtp.max_recipients") {
		t.Errorf("the reload error does not name the field:\n%s", m.box.Proc.Out.String())
	}
}
