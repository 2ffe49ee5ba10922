package smtpd_test

import (
	"strings"
	"testing"
)

// The protocol fixes of issue 9 against the real binary and real clients:
// the end of data with CR CR LF line endings (item 6), STARTTLS resetting
// the session (7), the hop limit (4), no AUTH and no forged local senders
// on port 25 (12), and Postfix-like replies (15).
func TestSMTPProtocolHardening(t *testing.T) {
	m := newMailLAN(t, "10.77.109")
	box := m.box.Addr.String()

	// Item 6: every line ends in CR CR LF, the last one too. The client
	// waits for the reply before it sends anything more.
	out, err := m.client.Output("/usr/bin/python3", "-c", rawSession(10)+`
def cmd(c):
    s.sendall(c + b"\r\n")
    return reply()
print(cmd(b"EHLO client.test"))
print(cmd(b"MAIL FROM:<someone@remote.test>"))
print(cmd(b"RCPT TO:<bob@example.test>"))
print(cmd(b"DATA"))
try:
    print(cmd(b"Subject: crcrlf-token\r\r\n\r\r\nfirst\r\r\n..dot\r\r\nlast\r\r\n."))
    print(cmd(b"NOOP"))
    print(cmd(b"QUIT"))
except socket.timeout:
    print("TIMEOUT")
`, box)
	if err != nil || strings.Contains(out, "TIMEOUT") || !strings.Contains(out, "250 2.0.0 Ok: queued as ") ||
		!strings.Contains(out, "\n250 2.0.0 Ok\n221 ") {
		t.Errorf("CR CR LF message: %v\n%s", err, out)
	}
	for _, msg := range m.box.MaildirText("bob") {
		if strings.Contains(msg, "crcrlf-token") && !strings.HasSuffix(msg, "Subject: crcrlf-token\r\n\r\nfirst\r\n.dot\r\nlast\r\n") {
			t.Errorf("CR CR LF message stored as %q", msg)
		}
	}
	if countContaining(m.box.MaildirText("bob"), "crcrlf-token") != 1 {
		t.Error("CR CR LF message not stored once")
	}

	// Item 7: a transaction begun in clear does not survive STARTTLS.
	out, err = m.client.Output("/usr/bin/python3", "-c", `
import smtplib, ssl, sys
s = smtplib.SMTP(sys.argv[1], 25, timeout=20)
s.ehlo("client.test")
print(s.docmd("MAIL", "FROM:<someone@remote.test>"))
print(s.docmd("RCPT", "TO:<bob@example.test>"))
s.starttls(context=ssl._create_unverified_context())
print("after tls", s.docmd("DATA"))
print("after tls", s.docmd("MAIL", "FROM:<someone@remote.test>"))
s.ehlo("client.test")
print("auth offered:", s.has_extn("auth"))
print("after ehlo", s.docmd("DATA"))
print("auth", s.docmd("AUTH", "PLAIN AGJvYgBjb3JyZWN0IGhvcnNl"))
`, box)
	for _, want := range []string{
		"(250, b'2.1.0 Ok')", "(250, b'2.1.5 Ok')", // item 15
		"after tls (503, b'5.5.1 ", "after tls (503, b'5.5.1 ",
		"auth offered: False", "after ehlo (502, b'5.5.1 ",
		"auth (503, b'5.5.1 Authentication is not available on port 25",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("STARTTLS on port 25: missing %q: %v\n%s", want, err, out)
		}
	}

	// Item 4: a message that looped (51 Received: fields) is refused.
	out, err = m.client.Output("/usr/bin/python3", "-c", `
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], 25, timeout=20)
msg = "".join("Received: from h%d.remote.test by h%d.remote.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n" % (i, i+1) for i in range(51))
msg += "Subject: looping\r\n\r\nround and round\r\n"
try:
    s.sendmail("someone@remote.test", ["bob@example.test"], msg)
    print("accepted")
except smtplib.SMTPDataError as e:
    print(e.smtp_code, e.smtp_error.decode())
`, box)
	if err != nil || !strings.HasPrefix(out, "554 5.4.6 ") {
		t.Errorf("51 Received: fields: %v\n%s", err, out)
	}

	// Item 12: a stranger may not use an office address as sender on
	// port 25; a host in a relay network may.
	out, _ = m.swaks(m.client, "--to", "alice@example.test", "--from", "bob@example.test")
	if !strings.Contains(out, "<** 550 5.7.1 ") {
		t.Errorf("forged local sender from outside: want 550 5.7.1:\n%s", out)
	}
	if out, err := m.swaks(m.relay, "--to", "alice@example.test", "--from", "bob@example.test"); err != nil {
		t.Errorf("local sender from a relay network: %v\n%s", err, out)
	}
}
