package appliance_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"concierge/internal/testnet"
	"concierge/smtpd/queue"
)

// The LAN of the outbound tests: the box, a LAN client, a DNS server with
// the test zones, and hosts for the remote mail servers.
const (
	outNet   = "10.77.4"
	boxIP    = outNet + ".1"
	dnsIP    = outNet + ".53"
	mx1IP    = outNet + ".21" // refuses connections
	mx2IP    = outNet + ".22"
	aHostIP  = outNet + ".23" // the A record of a domain without MX
	ispIP    = outNet + ".30" // the ISP's relay
	bobPass  = "correct horse"
	tokenHdr = "X-Test-Token"
)

// zone is the test DNS data (dnsmasq options).
var zone = []string{
	"--mx-host=remote.test,mx1.remote.test,10",
	"--mx-host=remote.test,mx2.remote.test,20",
	"--host-record=mx1.remote.test," + mx1IP,
	"--host-record=mx2.remote.test," + mx2IP,
	"--host-record=amx.test," + aHostIP,
	"--dns-rr=nullmx.test,15,000000",
	// An alias for a mail domain, and an MX whose target is an IP address.
	"--cname=alias.test,remote.test",
	"--mx-host=iplit.test," + mx2IP + ",10",
	// Domains whose MX is the box itself: by its name, and by its address
	// under another name.
	"--mx-host=byname.test,mail.example.test,10",
	"--host-record=mail.example.test," + boxIP,
	"--mx-host=byaddr.test,other-name.byaddr.test,10",
	"--host-record=other-name.byaddr.test," + boxIP,
	// The domain of an outside sender, whose mail host is aHostIP.
	"--mx-host=faraway.test,mx.faraway.test,10",
	"--host-record=mx.faraway.test," + aHostIP,
}

type outLAN struct {
	lan    *testnet.LAN
	box    *testnet.Box
	client *testnet.Host
	dns    *testnet.Host
	mx1    *testnet.Host
	mx2    *testnet.Host
}

// newOutLAN sets up the LAN; configure runs CLI commands on the box
// before it starts. The box finds the DNS server through the resolv.conf
// of its namespace (the default, no delivery.dns_servers).
func newOutLAN(t *testing.T, configure ...func(b *testnet.Box)) *outLAN {
	t.Helper()
	testnet.Require(t, "swaks", "smtp-sink", "/usr/sbin/dnsmasq", "postfix", "smtp-source")
	o := &outLAN{lan: testnet.NewLAN(t, outNet+".0/24")}
	o.box = testnet.NewBox(t, o.lan.AddHost("box", 1))
	o.client = o.lan.AddHost("client", 10)
	o.dns = o.lan.AddHost("dns", 53)
	o.mx1 = o.lan.AddHost("mx1", 21)
	o.mx2 = o.lan.AddHost("mx2", 22)
	o.dns.StartDNS("test", zone...)
	o.box.SetResolver(dnsIP)
	b := o.box
	b.CLI("domain", "add", "example.test")
	b.CLIInput(bobPass+"\n", "user", "add", "bob")
	b.CLIInput("other pass 1\n", "user", "add", "alice")
	b.CLI("config", "set", "postmaster", "alice")
	b.CLI("config", "set", "delivery.retry_schedule", "1s,2s,3s")
	for _, f := range configure {
		f(b)
	}
	return o
}

func (o *outLAN) start() { o.box.Start(587) }

// submit sends a message from bob through authenticated submission and
// returns its token.
func (o *outLAN) submit(t *testing.T, to ...string) string {
	t.Helper()
	token := fmt.Sprintf("tok-%d", time.Now().UnixNano())
	cmd := o.client.Command("swaks", "--server", boxIP, "--port", "587", "--tls", "--auth", "PLAIN",
		"--auth-user", "bob", "--auth-password", bobPass, "--from", "bob@example.test",
		"--to", strings.Join(to, ","), "--header", tokenHdr+": "+token, "--header", "Subject: test "+token, "--timeout", "20")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("swaks to %v: %v\n%s", to, err, out)
	}
	return token
}

// delivered waits up to d for exactly one message with token at pf and
// returns it; the test fails with the queue and pf's log otherwise.
func (o *outLAN) delivered(t *testing.T, pf *testnet.Postfix, token string, d time.Duration) string {
	t.Helper()
	if !testnet.WaitFor(d, func() bool { return len(containing(pf.Delivered(""), token)) == 1 }) {
		t.Fatalf("not delivered:\n%s\n%s", o.box.CLI("queue", "list"), pf.Log())
	}
	return containing(pf.Delivered(""), token)[0]
}

// bounce waits up to d for a message with token in bob's Maildir and
// returns it; the test fails with the queue otherwise.
func (o *outLAN) bounce(t *testing.T, token string, d time.Duration) string {
	t.Helper()
	var msg string
	if !testnet.WaitFor(d, func() bool {
		m := containing(o.box.MaildirText("bob"), token)
		if len(m) > 0 {
			msg = m[0]
		}
		return len(m) > 0
	}) {
		t.Fatalf("no notice for %s in bob's Maildir:\n%s", token, o.box.CLI("queue", "list"))
	}
	return msg
}

func containing(msgs []string, s string) []string {
	var out []string
	for _, m := range msgs {
		if strings.Contains(m, s) {
			out = append(out, m)
		}
	}
	return out
}

func envelopes(t *testing.T, b *testnet.Box) []*queue.Envelope {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(b.Data, "queue", "env", "*.json"))
	var out []*queue.Envelope
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var env queue.Envelope
		if json.Unmarshal(data, &env) == nil {
			out = append(out, &env)
		}
	}
	return out
}

func waitQueueEmpty(t *testing.T, b *testnet.Box, d time.Duration) {
	t.Helper()
	if !testnet.WaitFor(d, func() bool { return len(envelopes(t, b)) == 0 }) {
		t.Fatalf("queue not empty after %v:\n%s", d, b.CLI("queue", "list"))
	}
}

// Acceptance 1: MX 10 refuses connections, MX 20 takes the mail; the
// message arrives there with our Received: header.
func TestDeliveryMXPreference(t *testing.T) {
	o := newOutLAN(t)
	sink := o.mx2.StartSink(25)
	o.start()
	token := o.submit(t, "x@remote.test")
	if !testnet.WaitFor(15*time.Second, func() bool { return len(containing(sink.Messages(), token)) > 0 }) {
		t.Fatalf("message not delivered to MX 20:\n%s", o.box.Proc.Out.String())
	}
	msg := containing(sink.Messages(), token)[0]
	for _, want := range []string{"X-Rcpt-Args: <x@remote.test>", "X-Mail-Args: <bob@example.test>", "X-Helo-Args: mail.example.test",
		"by mail.example.test (Concierge) with ESMTPSA id "} {
		if !strings.Contains(msg, want) {
			t.Errorf("delivered message lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "Return-Path:") {
		t.Errorf("the Return-Path: meant for local mailboxes went out:\n%s", msg)
	}
	waitQueueEmpty(t, o.box, 5*time.Second)
	if !strings.Contains(o.box.Proc.Out.String(), "mx1.remote.test") {
		t.Errorf("MX 10 was not tried first (no mention in the debug log)")
	}
	if out := o.box.CLI("queue", "list"); !strings.Contains(out, "the queue is empty") {
		t.Errorf("queue list: %s", out)
	}
	// RFC 5321 5.1: a domain that is a CNAME is processed as its target.
	token = o.submit(t, "y@alias.test")
	if !testnet.WaitFor(15*time.Second, func() bool { return len(containing(sink.Messages(), token)) > 0 }) {
		t.Fatalf("message for a CNAME domain not delivered to its target's MX:\n%s", o.box.CLI("queue", "list"))
	}
}

// An office that types its DNS server on the network page, and not on
// the delivery page, gets its mail out: with no delivery.dns_servers and
// a resolv.conf that points nowhere, delivery asks the network page's
// DNS servers.
func TestDeliveryAsksTheNetworkPageDNS(t *testing.T) {
	o := newOutLAN(t, func(b *testnet.Box) {
		b.CLI("network", "set", b.IF, boxIP+"/24", "--dns", dnsIP)
	})
	o.box.SetResolver("10.77.99.99")
	sink := o.lan.AddHost("amx", 23).StartSink(25)
	o.start()
	token := o.submit(t, "someone@amx.test")
	if !testnet.WaitFor(15*time.Second, func() bool { return len(containing(sink.Messages(), token)) > 0 }) {
		t.Fatalf("not delivered through the network page's DNS server:\n%s\n%s", o.box.CLI("queue", "list"), o.box.Proc.Out.String())
	}
}

var dsnStatus = regexp.MustCompile(`(?m)^Status: (\S+)`)

// Acceptance 2: no MX but an A record; null MX and NXDOMAIN bounce at once.
func TestDeliveryImplicitMXAndBounces(t *testing.T) {
	o := newOutLAN(t, func(b *testnet.Box) {
		// This box asks the DNS server named in its settings; its
		// resolv.conf points nowhere.
		b.CLI("config", "set", "delivery.dns_servers", dnsIP)
		b.CLI("config", "set", "delivery.retry_schedule", "1h")
	})
	o.box.SetResolver("10.77.99.99")
	ahost := o.lan.AddHost("amx", 23)
	sink := ahost.StartSink(25)
	o.start()
	token := o.submit(t, "someone@amx.test")
	if !testnet.WaitFor(15*time.Second, func() bool { return len(containing(sink.Messages(), token)) > 0 }) {
		t.Fatalf("message for a domain without MX not delivered to its A host:\n%s", o.box.Proc.Out.String())
	}

	cases := []struct{ to, status, words string }{
		{"a@nullmx.test", "5.1.10", "null MX"},
		{"b@nxdomain.test", "5.1.2", "does not exist"},
		// RFC 5321 5.1: MX data must be a host name; an IP address there
		// is unusable, and with no other MX that is an error.
		{"c@iplit.test", "5.4.4", "is an IP address"},
	}
	for _, c := range cases {
		start := time.Now()
		token := o.submit(t, c.to)
		bounce := o.bounce(t, token, 10*time.Second)
		t.Logf("%s bounced after %v", c.to, time.Since(start).Round(time.Millisecond))
		checkBounce(t, bounce, token, []string{c.to}, c.status)
		if !strings.Contains(bounce, c.words) {
			t.Errorf("%s: the bounce does not say %q:\n%s", c.to, c.words, bounce)
		}
	}
	waitQueueEmpty(t, o.box, 5*time.Second)
}

// checkBounce checks an RFC 3464 report for the given failed recipients.
func checkBounce(t *testing.T, bounce, token string, failed []string, status string) {
	t.Helper()
	for _, want := range []string{
		"Return-Path: <>\r\n",
		"From: Mail Delivery System <MAILER-DAEMON@example.test>\r\n",
		"To: <bob@example.test>\r\n",
		"Auto-Submitted: auto-replied\r\n",
		"Content-Type: multipart/report;\r\n",
		"\treport-type=delivery-status\r\n",
		"Content-Type: message/delivery-status\r\n",
		"Reporting-MTA: dns; mail.example.test\r\n",
		"Content-Type: text/rfc822-headers\r\n",
		tokenHdr + ": " + token + "\r\n",
	} {
		if !strings.Contains(bounce, want) {
			t.Errorf("bounce lacks %q:\n%s", want, bounce)
		}
	}
	got := regexp.MustCompile(`(?m)^Final-Recipient: rfc822; (\S+)\r$`).FindAllStringSubmatch(bounce, -1)
	if len(got) != len(failed) {
		t.Fatalf("bounce names %d recipients, want %v:\n%s", len(got), failed, bounce)
	}
	for i, g := range got {
		if g[1] != failed[i] {
			t.Errorf("bounce names %s, want %s", g[1], failed[i])
		}
	}
	if m := dsnStatus.FindStringSubmatch(bounce); status != "" && (m == nil || strings.TrimSpace(m[1]) != status) {
		t.Errorf("bounce Status %v, want %s:\n%s", m, status, bounce)
	}
	if !strings.Contains(bounce, "Action: failed\r\n") {
		t.Errorf("bounce lacks Action: failed")
	}
}

// attemptTimes polls the envelope of the only queued message and records
// when its attempt count went up, until it reaches n or d passes.
func attemptTimes(t *testing.T, b *testnet.Box, n int, d time.Duration) []time.Time {
	t.Helper()
	var times []time.Time
	last := 0
	testnet.WaitFor(d, func() bool {
		envs := envelopes(t, b)
		if len(envs) != 1 {
			return false
		}
		a := envs[0].Recipients[0].Attempts
		for ; last < a; last++ {
			times = append(times, envs[0].Recipients[0].LastTry)
		}
		return a >= n
	})
	return times
}

// Acceptance 3a: a server answering 451 is retried on the schedule, and
// the mail goes once it accepts (here after "queue flush").
func TestDeliveryRetriesOn451(t *testing.T) {
	o := newOutLAN(t, func(b *testnet.Box) {
		b.CLI("config", "set", "delivery.retry_schedule", "1s,2s,3s,1h")
	})
	// Both MX hosts answer every RCPT with 451.
	sink1 := o.mx1.StartSink(25, "-r", "rcpt", "-b", "451 4.3.0 Try again later")
	sink2 := o.mx2.StartSink(25, "-r", "rcpt", "-b", "451 4.3.0 Try again later")
	o.start()
	start := time.Now()
	token := o.submit(t, "x@remote.test")
	times := attemptTimes(t, o.box, 4, 20*time.Second)
	if len(times) < 4 {
		t.Fatalf("only %d attempts after %v:\n%s", len(times), time.Since(start), o.box.CLI("queue", "list"))
	}
	// Waits of 1s, 2s, 3s between the attempts (the schedule).
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 3 * time.Second} {
		gap := times[i+1].Sub(times[i])
		if gap < want-100*time.Millisecond || gap > want+time.Second {
			t.Errorf("wait before attempt %d was %v, want %v (schedule)", i+2, gap, want)
		}
	}
	list := o.box.CLI("queue", "list")
	if !strings.Contains(list, "attempts 4") || !strings.Contains(list, "451 4.3.0 Try again later") {
		t.Errorf("queue list does not show the attempts and last error:\n%s", list)
	}
	// The next wait is an hour: nothing happens by itself.
	if envs := envelopes(t, o.box); len(envs) != 1 || envs[0].Recipients[0].Attempts != 4 {
		t.Fatalf("attempts went on beyond the schedule")
	} else if next := envs[0].NextAttempt.Sub(envs[0].Recipients[0].LastTry); next < time.Hour-time.Second {
		t.Fatalf("next attempt %v after the fourth, want 1h (the last entry of the schedule)", next)
	}
	if n := len(o.box.MaildirText("bob")); n != 0 {
		t.Errorf("a temporary failure sent %d notices to the sender", n)
	}
	sink2.Restart()
	_ = sink1
	out := o.box.CLI("queue", "flush", "remote.test")
	if !strings.Contains(out, "asked the running server") {
		t.Errorf("queue flush: %s", out)
	}
	if !testnet.WaitFor(10*time.Second, func() bool { return len(containing(sink2.Messages(), token)) == 1 }) {
		t.Fatalf("not delivered after the server recovered and a flush:\n%s", o.box.CLI("queue", "list"))
	}
	waitQueueEmpty(t, o.box, 5*time.Second)
}

// Acceptance 3b: a real Postfix refuses one of three recipients with 550:
// the other two are delivered in one transaction, and one bounce names
// only the refused one.
func TestDeliveryOneRecipientRefused(t *testing.T) {
	o := newOutLAN(t)
	pf := testnet.StartPostfix(t, o.mx2, 25, []string{"remote.test"}, nil,
		"smtpd_recipient_restrictions = check_recipient_access inline:{ { bad@remote.test = 550 5.1.1 No such user here } }, reject_unauth_destination")
	o.start()
	token := o.submit(t, "good1@remote.test", "bad@remote.test", "good2@remote.test")
	var bounce string
	if !testnet.WaitFor(20*time.Second, func() bool {
		m := containing(o.box.MaildirText("bob"), token)
		if len(m) > 0 {
			bounce = m[0]
		}
		return len(m) > 0 && len(containing(pf.Delivered(""), token)) >= 2
	}) {
		t.Fatalf("no bounce, or not delivered to the others:\n%s\n%s", o.box.CLI("queue", "list"), pf.Log())
	}
	checkBounce(t, bounce, token, []string{"bad@remote.test"}, "5.1.1")
	if !strings.Contains(bounce, "Diagnostic-Code: smtp; 550 5.1.1") || !strings.Contains(bounce, "Remote-MTA: dns; mx2.remote.test") {
		t.Errorf("bounce lacks the remote reply:\n%s", bounce)
	}
	for _, a := range []string{"good1@remote.test", "good2@remote.test"} {
		if n := len(containing(pf.Delivered(a), token)); n != 1 {
			t.Errorf("%s got %d copies, want 1", a, n)
		}
	}
	waitQueueEmpty(t, o.box, 10*time.Second) // nothing left that could bounce again
	if n := len(containing(o.box.MaildirText("bob"), token)); n != 1 {
		t.Errorf("bob got %d bounces, want 1", n)
	}
	// One transaction for the three recipients (Postfix logs nrcpt).
	if !strings.Contains(pf.Log(), "nrcpt=2") {
		t.Errorf("the two accepted recipients did not share one transaction:\n%s", pf.Log())
	}
	// The postmaster copy is off by default.
	if n := len(containing(o.box.MaildirText("alice"), token)); n != 0 {
		t.Errorf("postmaster got %d copies with postmaster_copy off", n)
	}
	waitQueueEmpty(t, o.box, 5*time.Second)
}

var queueID = regexp.MustCompile(`by mail\.example\.test \(Concierge\) with E?SMTP\S* id (\S+)`)

// Acceptance 4: kill -9 in the middle of delivering 500 messages, then a
// restart: every message arrives at least once.
func TestDeliverySurvivesKill(t *testing.T) {
	o := newOutLAN(t, func(b *testnet.Box) {
		b.CLI("relay", "add", outNet+".10/32")
		b.CLI("config", "set", "delivery.max_connections_per_domain", "20")
	})
	// A slow receiver (1s before each DATA reply) keeps delivery going
	// long enough to kill it in the middle.
	sink := o.mx2.StartSink(25, "-w", "1")
	o.start()
	const n = 500
	out, err := o.client.Output("smtp-source", "-m", fmt.Sprint(n), "-s", "10", "-l", "2000",
		"-f", "bob@example.test", "-t", "x@remote.test", boxIP+":25")
	if err != nil {
		t.Fatalf("smtp-source: %v\n%s", err, out)
	}
	if !testnet.WaitFor(60*time.Second, func() bool { return sink.Count() >= 60 }) {
		t.Fatalf("delivery did not start: %d", sink.Count())
	}
	o.box.Kill()
	before := sink.Count()
	queued := len(envelopes(t, o.box))
	t.Logf("killed with %d delivered, %d queued", before, queued)
	if queued == 0 || queued == n {
		t.Fatalf("kill was not in the middle of delivery (%d queued)", queued)
	}
	o.box.Start(587)
	ids := map[string]int{}
	ok := testnet.WaitFor(120*time.Second, func() bool {
		clear(ids)
		for _, m := range sink.Messages() {
			if id := queueID.FindStringSubmatch(m); id != nil {
				ids[id[1]]++
			}
		}
		return len(ids) >= n
	})
	if !ok {
		t.Fatalf("%d distinct messages arrived, want %d:\n%s", len(ids), n, o.box.CLI("queue", "list"))
	}
	dup := sink.Count() - len(ids)
	t.Logf("%d messages arrived, %d transactions (%d duplicates from the kill)", len(ids), sink.Count(), dup)
	waitQueueEmpty(t, o.box, 20*time.Second)
}

// Acceptance 5: smarthost mode through a real Postfix that requires AUTH
// over TLS; no MX lookups happen (the box has no working DNS).
func TestDeliverySmarthost(t *testing.T) {
	testnet.Require(t, "dovecot", "openssl")
	o := newOutLAN(t)
	o.box.SetResolver("10.77.99.99")
	isp := o.lan.AddHost("isp", 30)
	cert, key := selfSigned(t, ispIP)
	auth := testnet.StartDovecotAuth(t, isp, map[string]string{"office": "isp secret"})
	pf := testnet.StartPostfix(t, isp, 587, []string{"remote.test", "faraway.test"}, nil,
		"smtpd_tls_cert_file = "+cert, "smtpd_tls_key_file = "+key, "smtpd_tls_security_level = may",
		"smtpd_tls_auth_only = yes", "smtpd_sasl_auth_enable = yes", "smtpd_sasl_type = dovecot",
		"smtpd_sasl_path = "+auth,
		"smtpd_relay_restrictions = permit_sasl_authenticated, reject",
		"smtpd_recipient_restrictions = permit_sasl_authenticated, reject")
	b := o.box
	b.CLI("config", "set", "delivery.smarthost", ispIP+":587")
	b.CLI("config", "set", "delivery.smarthost_user", "office")
	b.CLI("config", "set", "delivery.smarthost_password", "isp secret")
	b.CLI("config", "set", "delivery.smarthost_ca_file", cert)
	o.start()
	token := o.submit(t, "x@remote.test", "y@faraway.test")
	if !testnet.WaitFor(20*time.Second, func() bool { return len(containing(pf.Delivered(""), token)) == 2 }) {
		t.Fatalf("not delivered through the smarthost:\n%s\n%s", b.CLI("queue", "list"), pf.Log())
	}
	msg := containing(pf.Delivered("x@remote.test"), token)
	if len(msg) != 1 || !strings.Contains(msg[0], "(Postfix) with ESMTPSA id") {
		t.Errorf("the smarthost did not receive it over TLS with AUTH:\n%s", msg)
	}
	if !strings.Contains(pf.Log(), "sasl_username=office") {
		t.Errorf("no SASL login in the smarthost's log:\n%s", pf.Log())
	}
	waitQueueEmpty(t, b, 5*time.Second)

	// A wrong password keeps the mail queued (temporary), with the reason.
	b.CLI("config", "set", "delivery.smarthost_password", "wrong")
	b.WaitSettingsApplied()
	token = o.submit(t, "z@remote.test")
	if !testnet.WaitFor(10*time.Second, func() bool {
		envs := envelopes(t, b)
		return len(envs) == 1 && envs[0].Recipients[0].Attempts >= 1
	}) {
		t.Fatalf("no failed attempt recorded:\n%s", b.CLI("queue", "list"))
	}
	if list := b.CLI("queue", "list"); !strings.Contains(list, "535") {
		t.Errorf("queue list does not show the refused login:\n%s", list)
	}
	if n := len(containing(b.MaildirText("bob"), token)); n != 0 {
		t.Errorf("a refused smarthost login bounced the mail")
	}
}

// selfSigned writes a certificate and key for a peer at ip into a
// directory that unprivileged Postfix processes may read.
func selfSigned(t *testing.T, ip string) (cert, key string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "cert-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if out, err := exec.Command("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
		"-keyout", key, "-out", cert, "-subj", "/CN="+ip, "-addext", "subjectAltName=IP:"+ip).CombinedOutput(); err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	return cert, key
}

// The sender is warned once after warn_after, and the mail fails after
// give_up_after, both shortened through the settings.
func TestDeliveryDelayWarningAndGiveUp(t *testing.T) {
	o := newOutLAN(t, func(b *testnet.Box) {
		b.CLI("config", "set", "delivery.retry_schedule", "1s")
		b.CLI("config", "set", "delivery.warn_after", "3s")
		b.CLI("config", "set", "delivery.give_up_after", "10s")
	})
	o.mx1.StartSink(25, "-r", "rcpt", "-b", "451 4.3.0 Try again later")
	o.mx2.StartSink(25, "-r", "rcpt", "-b", "451 4.3.0 Try again later")
	o.start()
	start := time.Now()
	token := o.submit(t, "x@remote.test")
	var warning string
	if !testnet.WaitFor(15*time.Second, func() bool {
		for _, m := range containing(o.box.MaildirText("bob"), token) {
			if strings.Contains(m, "Action: delayed") {
				warning = m
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no delay warning:\n%s", o.box.CLI("queue", "list"))
	}
	if el := time.Since(start); el < 3*time.Second || el > 9*time.Second {
		t.Errorf("delay warning after %v, want after about 3s", el)
	}
	for _, want := range []string{"Subject: Delayed Mail", "Status: 4.3.0", "Will-Retry-Until: ", "Diagnostic-Code: smtp; 451 4.3.0", "Return-Path: <>"} {
		if !strings.Contains(warning, want) {
			t.Errorf("delay warning lacks %q:\n%s", want, warning)
		}
	}
	var failure string
	if !testnet.WaitFor(20*time.Second, func() bool {
		for _, m := range containing(o.box.MaildirText("bob"), token) {
			if strings.Contains(m, "Action: failed") {
				failure = m
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no failure report after give_up_after:\n%s", o.box.CLI("queue", "list"))
	}
	if el := time.Since(start); el < 10*time.Second {
		t.Errorf("gave up after %v, before give_up_after", el)
	}
	checkBounce(t, failure, token, []string{"x@remote.test"}, "5.4.7")
	waitQueueEmpty(t, o.box, 5*time.Second)
	if n := len(containing(o.box.MaildirText("bob"), token)); n != 2 {
		t.Errorf("bob got %d notices, want one warning and one failure", n)
	}
}

// A bounce for a remote sender goes out with the null sender; when that
// fails too, the postmaster gets it (never a bounce to a bounce). With
// postmaster_copy, the postmaster also sees local senders' bounces.
func TestDeliveryDoubleBounceAndPostmasterCopy(t *testing.T) {
	o := newOutLAN(t, func(b *testnet.Box) {
		b.CLI("relay", "add", outNet+".10/32")
	})
	// remote.test refuses every recipient for good.
	o.mx2.StartSink(25, "-f", "rcpt", "-B", "550 5.1.1 No such user")
	o.start()
	token := fmt.Sprintf("tok-%d", time.Now().UnixNano())
	cmd := o.client.Command("swaks", "--server", boxIP, "--from", "someone@remote.test", "--to", "a@nullmx.test",
		"--header", tokenHdr+": "+token, "--timeout", "20")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	// The double bounce carries the headers of the failed bounce (not the
	// original's), and names the bounce's recipient.
	var dbl string
	if !testnet.WaitFor(20*time.Second, func() bool {
		m := containing(o.box.MaildirText("alice"), "Final-Recipient: rfc822; someone@remote.test")
		if len(m) > 0 {
			dbl = m[0]
		}
		return len(m) > 0
	}) {
		t.Fatalf("the double bounce did not reach the postmaster:\n%s", o.box.CLI("queue", "list"))
	}
	for _, want := range []string{"To: <postmaster@example.test>", "Final-Recipient: rfc822; someone@remote.test",
		"Action: failed", "Diagnostic-Code: smtp; 550 5.1.1", "From: Mail Delivery System <MAILER-DAEMON@example.test>",
		// the headers of the failed bounce, which name the original
		"Subject: Undelivered Mail Returned to Sender"} {
		if !strings.Contains(dbl, want) {
			t.Errorf("double bounce lacks %q:\n%s", want, dbl)
		}
	}
	waitQueueEmpty(t, o.box, 5*time.Second)
	if n := len(o.box.MaildirText("alice")); n != 1 {
		t.Errorf("postmaster got %d messages for one double bounce", n)
	}

	// postmaster_copy (set live): bob's bounce is copied to the postmaster.
	o.box.CLI("config", "set", "delivery.postmaster_copy", "true")
	o.box.WaitSettingsApplied()
	tok2 := o.submit(t, "b@nxdomain.test")
	if !testnet.WaitFor(10*time.Second, func() bool {
		return len(containing(o.box.MaildirText("bob"), tok2)) == 1 && len(containing(o.box.MaildirText("alice"), tok2)) == 1
	}) {
		t.Fatalf("bounce and postmaster copy: bob %d, alice %d", len(containing(o.box.MaildirText("bob"), tok2)),
			len(containing(o.box.MaildirText("alice"), tok2)))
	}
}

// Opportunistic STARTTLS with a real Postfix that offers it.
func TestDeliveryStartTLS(t *testing.T) {
	o := newOutLAN(t)
	cert, key := selfSigned(t, mx2IP)
	pf := testnet.StartPostfix(t, o.mx2, 25, []string{"remote.test"}, nil,
		"smtpd_tls_cert_file = "+cert, "smtpd_tls_key_file = "+key, "smtpd_tls_security_level = may",
		"smtpd_tls_received_header = yes", "smtpd_tls_loglevel = 1")
	o.start()
	token := o.submit(t, "x@remote.test")
	msg := o.delivered(t, pf, token, 15*time.Second)
	if !strings.Contains(msg, "(Postfix) with ESMTPS id") || !strings.Contains(msg, "(using TLS") {
		t.Errorf("not received over TLS:\n%s", msg)
	}
	if !strings.Contains(pf.Log(), "TLS connection established from mail.example.test") &&
		!strings.Contains(pf.Log(), "TLS connection established from unknown") {
		t.Errorf("no TLS in the receiver's log:\n%s", pf.Log())
	}
	if !strings.Contains(msg, "Received: from mail.example.test (") {
		t.Errorf("EHLO did not name our host:\n%s", msg)
	}
}

// Smarthost with implicit TLS (port 465, Postfix in wrapper mode).
func TestDeliverySmarthostImplicitTLS(t *testing.T) {
	testnet.Require(t, "dovecot", "openssl")
	o := newOutLAN(t)
	o.box.SetResolver("10.77.99.99")
	isp := o.lan.AddHost("isp", 30)
	cert, key := selfSigned(t, ispIP)
	auth := testnet.StartDovecotAuth(t, isp, map[string]string{"office": "isp secret"})
	pf := testnet.StartPostfix(t, isp, 465, []string{"remote.test"}, []string{"-o smtpd_tls_wrappermode=yes"},
		"smtpd_tls_cert_file = "+cert, "smtpd_tls_key_file = "+key, "smtpd_tls_security_level = encrypt",
		"smtpd_sasl_auth_enable = yes", "smtpd_sasl_type = dovecot", "smtpd_sasl_path = "+auth,
		"smtpd_relay_restrictions = permit_sasl_authenticated, reject",
		"smtpd_recipient_restrictions = permit_sasl_authenticated, reject")
	b := o.box
	b.CLI("config", "set", "delivery.smarthost", ispIP+":465")
	b.CLI("config", "set", "delivery.smarthost_tls", "tls")
	b.CLI("config", "set", "delivery.smarthost_user", "office")
	b.CLI("config", "set", "delivery.smarthost_password", "isp secret")
	b.CLI("config", "set", "delivery.smarthost_ca_file", cert)
	o.start()
	token := o.submit(t, "x@remote.test")
	if msg := o.delivered(t, pf, token, 20*time.Second); !strings.Contains(msg, "(Postfix) with ESMTPSA id") {
		t.Errorf("not received over TLS with AUTH:\n%s", msg)
	}
	// Without the CA the certificate is not trusted: the mail waits.
	b.CLI("config", "set", "delivery.smarthost_ca_file", "")
	b.WaitSettingsApplied()
	token = o.submit(t, "y@remote.test")
	if !testnet.WaitFor(10*time.Second, func() bool {
		envs := envelopes(t, b)
		return len(envs) == 1 && envs[0].Recipients[0].Attempts >= 1
	}) {
		t.Fatalf("no failed attempt recorded:\n%s", b.CLI("queue", "list"))
	}
	if list := b.CLI("queue", "list"); !strings.Contains(list, "certificate") {
		t.Errorf("queue list does not show the certificate problem:\n%s", list)
	}
	if len(containing(pf.Delivered(""), token)) != 0 {
		t.Errorf("delivered to an unverified smarthost")
	}
}

// A server that offers STARTTLS but whose handshake fails gets the mail
// over a second, plain connection.
func TestDeliveryStartTLSFallback(t *testing.T) {
	o := newOutLAN(t)
	cert, key := selfSigned(t, mx2IP)
	// Only TLS 1.0 and 1.1 on the server: our client (TLS 1.2 at least)
	// cannot agree with it.
	pf := testnet.StartPostfix(t, o.mx2, 25, []string{"remote.test"}, nil,
		"smtpd_tls_cert_file = "+cert, "smtpd_tls_key_file = "+key, "smtpd_tls_security_level = may",
		"smtpd_tls_protocols = !SSLv2, !SSLv3, !TLSv1.2, !TLSv1.3", "smtpd_tls_mandatory_protocols = !SSLv2, !SSLv3, !TLSv1.2, !TLSv1.3")
	o.start()
	token := o.submit(t, "x@remote.test")
	msg := o.delivered(t, pf, token, 15*time.Second)
	if !strings.Contains(msg, "(Postfix) with ESMTP id") {
		t.Errorf("expected a plain delivery after the failed handshake:\n%s", msg)
	}
	if !strings.Contains(o.box.Proc.Out.String(), "STARTTLS failed; trying again without TLS") {
		t.Errorf("no TLS fallback in the log")
	}
	if n := envelopes(t, o.box); len(n) != 0 {
		t.Errorf("queue not empty")
	}
}

var sinkSessions = regexp.MustCompile(`sess=(\d+) quit=\d+ mesg=(\d+)`)

// Connections to one domain stay within max_connections_per_domain, and
// one connection carries several messages.
func TestDeliveryConnectionLimitAndReuse(t *testing.T) {
	o := newOutLAN(t, func(b *testnet.Box) {
		b.CLI("relay", "add", outNet+".10/32")
		b.CLI("config", "set", "delivery.max_connections_per_domain", "3")
	})
	sink := o.mx2.StartSink(25, "-c", "-w", "1")
	o.start()
	const n = 30
	if out, err := o.client.Output("smtp-source", "-m", fmt.Sprint(n), "-s", "5", "-f", "bob@example.test", "-t", "x@remote.test", boxIP+":25"); err != nil {
		t.Fatalf("smtp-source: %v\n%s", err, out)
	}
	most := 0
	testnet.WaitFor(60*time.Second, func() bool {
		out, _ := o.mx2.Output("ss", "-Htn", "state", "established", "( sport = :25 )")
		if c := len(strings.Fields(strings.TrimSpace(out))) / 4; c > most {
			most = c
		}
		return sink.Count() >= n
	})
	if sink.Count() < n {
		t.Fatalf("%d of %d delivered", sink.Count(), n)
	}
	if most > 3 || most < 2 {
		t.Errorf("at most %d connections at once, want 2 or 3 (limit 3)", most)
	}
	// Idle connections end: the sink has no session left open, and its
	// counters include every session.
	var last []string
	if !testnet.WaitFor(30*time.Second, func() bool {
		out, _ := o.mx2.Output("ss", "-Htn", "state", "established", "state", "close-wait", "( sport = :25 )")
		m := sinkSessions.FindAllStringSubmatch(sink.Proc.Out.String(), -1)
		if strings.TrimSpace(out) != "" || len(m) == 0 {
			return false
		}
		last = m[len(m)-1]
		return last[1] != "0"
	}) {
		t.Fatalf("sessions still open, or no counters from smtp-sink -c:\n%s", sink.Proc.Out.String())
	}
	t.Logf("%d messages over %s sessions, at most %d at once", n, last[1], most)
	if sess, _ := strconv.Atoi(last[1]); sess > 10 {
		t.Errorf("%d sessions for %d messages: connections are not reused", sess, n)
	}
}

// The queue commands against a running server and without one.
func TestDeliveryQueueCommands(t *testing.T) {
	o := newOutLAN(t, func(b *testnet.Box) {
		b.CLI("config", "set", "delivery.retry_schedule", "1h")
	})
	o.mx1.StartSink(25, "-r", "rcpt", "-b", "451 4.3.0 Try again later")
	o.mx2.StartSink(25, "-r", "rcpt", "-b", "451 4.3.0 Try again later")
	o.start()
	token := o.submit(t, "x@remote.test", "y@remote.test")
	var id string
	if !testnet.WaitFor(10*time.Second, func() bool {
		envs := envelopes(t, o.box)
		if len(envs) == 1 && envs[0].Recipients[0].Attempts == 1 {
			id = envs[0].ID
			return true
		}
		return false
	}) {
		t.Fatalf("no first attempt")
	}
	show := o.box.CLI("queue", "show", id)
	for _, want := range []string{"ID:        " + id, "From:      <bob@example.test>", "x@remote.test", "y@remote.test",
		"attempts 1", "451 4.3.0 Try again later", "at mx2.remote.test", tokenHdr + ": " + token} {
		if !strings.Contains(show, want) {
			t.Errorf("queue show lacks %q:\n%s", want, show)
		}
	}
	// retry: one more attempt at once, despite the hour's wait.
	if out := o.box.CLI("queue", "retry", id); !strings.Contains(out, "asked the running server") {
		t.Errorf("queue retry: %s", out)
	}
	if !testnet.WaitFor(5*time.Second, func() bool {
		envs := envelopes(t, o.box)
		return len(envs) == 1 && envs[0].Recipients[0].Attempts == 2
	}) {
		t.Errorf("queue retry did not cause an attempt:\n%s", o.box.CLI("queue", "list"))
	}
	if _, err := o.box.CLITry("", "queue", "retry", "no-such-id"); err == nil {
		t.Errorf("queue retry of an unknown ID succeeded")
	}
	// del: gone, and no notice to the sender.
	o.box.CLI("queue", "del", id)
	waitQueueEmpty(t, o.box, 5*time.Second)
	if n := len(o.box.MaildirText("bob")); n != 0 {
		t.Errorf("queue del sent %d notices", n)
	}

	// Without a server: flush marks the message due and the next start
	// delivers it.
	token = o.submit(t, "z@remote.test")
	testnet.WaitFor(10*time.Second, func() bool {
		envs := envelopes(t, o.box)
		return len(envs) == 1 && envs[0].Recipients[0].Attempts == 1
	})
	o.box.Stop()
	if out := o.box.CLI("queue", "flush"); !strings.Contains(out, "no server is running: 1 message(s)") {
		t.Errorf("queue flush without a server: %s", out)
	}
	envs := envelopes(t, o.box)
	if len(envs) != 1 || !envs[0].NextAttempt.IsZero() {
		t.Fatalf("flush without a server did not mark the message due")
	}
	list := o.box.CLI("queue", "list")
	if !strings.Contains(list, "next attempt now") || !strings.Contains(list, "1 message(s)") {
		t.Errorf("queue list:\n%s", list)
	}
	o.box.CLI("queue", "del", envs[0].ID)
	if len(envelopes(t, o.box)) != 0 {
		t.Errorf("queue del without a server left the message")
	}
}

// SIZE (RFC 1870): a message larger than the receiver's limit is not
// sent; the sender gets a bounce at once.
func TestDeliverySizeLimit(t *testing.T) {
	o := newOutLAN(t)
	pf := testnet.StartPostfix(t, o.mx2, 25, []string{"remote.test"}, nil, "message_size_limit = 4000")
	o.start()
	token := fmt.Sprintf("tok-%d", time.Now().UnixNano())
	cmd := o.client.Command("swaks", "--server", boxIP, "--port", "587", "--tls", "--auth", "PLAIN",
		"--auth-user", "bob", "--auth-password", bobPass, "--from", "bob@example.test", "--to", "x@remote.test",
		"--header", tokenHdr+": "+token, "--body", strings.Repeat("twelve bytes\n", 800), "--timeout", "20")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	bounce := o.bounce(t, token, 15*time.Second)
	checkBounce(t, bounce, token, []string{"x@remote.test"}, "5.3.4")
	// Our own check, from the SIZE the server announced: the server never
	// saw a MAIL FROM for it (it would have answered 552).
	if !strings.Contains(bounce, "exceeds the server's SIZE limit of 4000") {
		t.Errorf("the bounce does not come from the SIZE check:\n%s", bounce)
	}
	// A 552 reply or a queued message (message-id=) in Postfix's log; not
	// "552" anywhere, which a process ID in the log can hold.
	if regexp.MustCompile(`\b552 5\.|message-id=`).MatchString(pf.Log()) {
		t.Errorf("the message was offered to the receiver:\n%s", pf.Log())
	}
	if len(pf.Delivered("")) != 0 {
		t.Errorf("the receiver took the message")
	}
}

// SIGTERM in the middle of deliveries: the server stops within its grace
// period, what was not delivered stays queued without a counted attempt,
// and the next start delivers it.
func TestDeliveryShutdownKeepsQueue(t *testing.T) {
	o := newOutLAN(t, func(b *testnet.Box) {
		b.CLI("relay", "add", outNet+".10/32")
		b.CLI("config", "set", "delivery.max_connections_per_domain", "2")
	})
	sink := o.mx2.StartSink(25, "-w", "2")
	o.start()
	const n = 10
	if out, err := o.client.Output("smtp-source", "-m", fmt.Sprint(n), "-s", "2", "-f", "bob@example.test", "-t", "x@remote.test", boxIP+":25"); err != nil {
		t.Fatalf("smtp-source: %v\n%s", err, out)
	}
	testnet.WaitFor(10*time.Second, func() bool { return sink.Count() >= 1 })
	start := time.Now()
	o.box.Stop()
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("SIGTERM took %v with deliveries in flight", el)
	}
	envs := envelopes(t, o.box)
	t.Logf("stopped with %d delivered, %d queued", sink.Count(), len(envs))
	if len(envs) == 0 {
		t.Fatalf("nothing left in the queue: the stop was not in the middle of delivery")
	}
	for _, e := range envs {
		if a := e.Recipients[0].Attempts; a != 0 {
			t.Errorf("%s: an interrupted delivery counted as attempt %d (%s)", e.ID, a, e.Recipients[0].LastError)
		}
	}
	o.box.Start(587)
	ids := map[string]bool{}
	if !testnet.WaitFor(60*time.Second, func() bool {
		for _, m := range sink.Messages() {
			if id := queueID.FindStringSubmatch(m); id != nil {
				ids[id[1]] = true
			}
		}
		return len(ids) >= n
	}) {
		t.Fatalf("%d of %d arrived after the restart", len(ids), n)
	}
	waitQueueEmpty(t, o.box, 10*time.Second)
}

// A pooled connection that the receiver closed while it sat idle (Postfix
// answers 421 after smtpd_timeout) is replaced by a new one: the next
// message is not held back until the next retry.
func TestDeliveryStaleConnection(t *testing.T) {
	o := newOutLAN(t, func(b *testnet.Box) {
		b.CLI("config", "set", "delivery.retry_schedule", "1h")
	})
	pf := testnet.StartPostfix(t, o.mx2, 25, []string{"remote.test"}, nil, "smtpd_timeout = 2s")
	o.start()
	first := o.submit(t, "x@remote.test")
	if !testnet.WaitFor(15*time.Second, func() bool { return len(containing(pf.Delivered(""), first)) == 1 }) {
		t.Fatalf("first message not delivered:\n%s", o.box.CLI("queue", "list"))
	}
	// Postfix ends the idle session.
	if !testnet.WaitFor(15*time.Second, func() bool { return strings.Contains(pf.Log(), "timeout after") }) {
		t.Fatalf("Postfix did not time the idle session out:\n%s", pf.Log())
	}
	second := o.submit(t, "y@remote.test")
	if !testnet.WaitFor(10*time.Second, func() bool { return len(containing(pf.Delivered(""), second)) == 1 }) {
		t.Fatalf("second message held back by the stale connection:\n%s", o.box.CLI("queue", "list"))
	}
}

// Mail queued for a domain that has since become local is delivered into
// the Maildir and never touches the network.
func TestDeliveryQueuedForNowLocalDomain(t *testing.T) {
	o := newOutLAN(t, func(b *testnet.Box) {
		b.CLI("config", "set", "delivery.retry_schedule", "1h")
	})
	o.mx1.StartSink(25, "-r", "rcpt", "-b", "451 4.3.0 Try again later")
	sink := o.mx2.StartSink(25, "-r", "rcpt", "-b", "451 4.3.0 Try again later")
	o.start()
	token := o.submit(t, "carol@remote.test")
	if !testnet.WaitFor(10*time.Second, func() bool {
		envs := envelopes(t, o.box)
		return len(envs) == 1 && envs[0].Recipients[0].Attempts == 1
	}) {
		t.Fatalf("no first attempt")
	}
	o.box.CLI("domain", "add", "remote.test", "--alias-of", "example.test")
	o.box.CLIInput("blue meadow 77\n", "user", "add", "carol")
	o.box.WaitSettingsApplied()
	o.box.CLI("queue", "flush")
	if !testnet.WaitFor(10*time.Second, func() bool { return len(containing(o.box.MaildirText("carol"), token)) == 1 }) {
		t.Fatalf("not delivered locally:\n%s", o.box.CLI("queue", "list"))
	}
	waitQueueEmpty(t, o.box, 5*time.Second)
	if sink.Count() != 0 {
		t.Errorf("the receiver got %d transactions", sink.Count())
	}
	if strings.Count(o.box.Proc.Out.String(), "RCPT TO refused") != 1 {
		t.Errorf("the network was tried again after the domain became local")
	}
}

// Never to ourselves by MX (RFC 5321 5.1): mail for a domain whose mail
// host is this box, by its name or by one of its addresses, bounces with
// 5.4.6 at once instead of looping through our own port 25.
func TestDeliveryNeverToSelf(t *testing.T) {
	o := newOutLAN(t)
	o.start()
	for _, to := range []string{"x@byname.test", "y@byaddr.test"} {
		token := o.submit(t, to)
		bounce := o.bounce(t, token, 15*time.Second)
		checkBounce(t, bounce, token, []string{to}, "5.4.6")
		if !strings.Contains(bounce, "loops back to myself") {
			t.Errorf("%s: the bounce does not name the loop:\n%s", to, bounce)
		}
	}
	waitQueueEmpty(t, o.box, 5*time.Second)
	// Only the two submissions passed the SMTP server: nothing came back
	// in on our own port 25 (the bounces are stored directly).
	if n := strings.Count(o.box.Proc.Out.String(), "msg=message "); n != 2 {
		t.Errorf("%d messages passed the SMTP server, want the 2 submissions", n)
	}
}

// SRS (item 5 of issue 9): a stranger's mail to an alias that forwards
// outside goes out with our SRS sender; a failure of the onward delivery
// comes back by way of that address and reaches the stranger only
// through its reversal; a bounce from the next hop to the SRS address is
// accepted and passed back; a forged SRS address is refused.
func TestDeliverySRSForwarding(t *testing.T) {
	o := newOutLAN(t, func(b *testnet.Box) {
		b.CLI("alias", "add", "fwd@example.test", "x@remote.test")
		b.CLI("alias", "add", "fwdbad@example.test", "bad@remote.test")
	})
	pf := testnet.StartPostfix(t, o.mx2, 25, []string{"remote.test"}, nil,
		"smtpd_recipient_restrictions = check_recipient_access inline:{ { bad@remote.test = 550 5.1.1 No such user here } }, reject_unauth_destination")
	far := o.lan.AddHost("faraway", 23)
	farSink := far.StartSink(25)
	o.start()
	send := func(from, to, token string) (string, error) {
		out, err := o.client.Command("swaks", "--server", boxIP, "--from", from, "--to", to,
			"--header", tokenHdr+": "+token, "--timeout", "20").CombinedOutput()
		return string(out), err
	}
	token := fmt.Sprintf("tok-%d", time.Now().UnixNano())
	if out, err := send("stranger@faraway.test", "fwd@example.test,fwdbad@example.test", token); err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	msg := o.delivered(t, pf, token, 20*time.Second)
	rp := regexp.MustCompile(`(?m)^Return-Path: <(SRS0=[^>]+@example\.test)>`).FindStringSubmatch(msg)
	if rp == nil {
		t.Fatalf("the forwarded copy did not go out with an SRS sender:\n%s", msg)
	}
	srsAddr := rp[1]
	if !strings.Contains(srsAddr, "=faraway.test=stranger@") {
		t.Errorf("SRS address %s does not hold the original sender", srsAddr)
	}
	// Our bounce for bad@remote.test reaches the stranger's mail host,
	// with the null sender, naming the alias it was sent to.
	var bounce string
	if !testnet.WaitFor(20*time.Second, func() bool {
		for _, m := range farSink.Messages() {
			if strings.Contains(m, token) && strings.Contains(m, "Final-Recipient: rfc822; bad@remote.test") {
				bounce = m
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no bounce reached the original sender:\n%s\n%s", o.box.CLI("queue", "list"), o.box.Proc.Out.String())
	}
	for _, want := range []string{"X-Mail-Args: <>", "X-Rcpt-Args: <stranger@faraway.test>", "Original-Recipient: rfc822;fwdbad@example.test",
		"To: <" + srsAddr[:strings.Index(srsAddr, "=")]} {
		if !strings.Contains(bounce, want) {
			t.Errorf("bounce lacks %q:\n%s", want, bounce)
		}
	}
	// The next hop's own bounce to the SRS address comes back to us and
	// goes on to the stranger.
	tok2 := token + "-remote-bounce"
	if out, err := send("<>", srsAddr, tok2); err != nil {
		t.Fatalf("a bounce to a valid SRS address was refused: %v\n%s", err, out)
	}
	if !testnet.WaitFor(20*time.Second, func() bool { return len(containing(farSink.Messages(), tok2)) == 1 }) {
		t.Fatalf("the bounce to the SRS address did not reach the original sender:\n%s", o.box.CLI("queue", "list"))
	}
	// Forged and foreign SRS addresses do not exist.
	forged := strings.Replace(srsAddr, "=stranger@", "=victim@", 1)
	for _, to := range []string{forged, "SRS0=aaaaaa=ab=faraway.test=victim@example.test"} {
		out, err := send("<>", to, token+"-forged")
		if err == nil || !strings.Contains(out, "550 5.1.1") {
			t.Errorf("forged SRS address %s: %v\n%s", to, err, out)
		}
	}
	waitQueueEmpty(t, o.box, 10*time.Second)
	if n := len(containing(farSink.Messages(), token+"-forged")); n != 0 {
		t.Errorf("mail to a forged SRS address went out")
	}
}
