package appliance_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"concierge/internal/testnet"
	"concierge/smtpd/queue"
)

// The dial-out network: the office LAN (box, a user's PC, the branch
// office's mail server, a stranger, DNS), the ISP's network (its mail
// host), and between box and ISP a point-to-point veth pair, "wan", that
// the box's up and down commands raise and lower.
const (
	dlNet      = "10.77.13"
	dlBox      = dlNet + ".1"
	dlBranchIP = dlNet + ".20" // branch.test's primary MX; may send ETRN
	dlStranger = dlNet + ".21" // may not
	dlDNS      = dlNet + ".53"
	ispNet     = "10.77.14"
	ispMX      = ispNet + ".2"
	wanBox     = "10.77.15.1"
	wanISP     = "10.77.15.2"
)

// dialOut is the dial-out network with the ISP's Postfix (backup MX for
// example.test, flushing on ETRN, and the box's smarthost), the branch
// office's Postfix, and a box configured for the link in the given mode
// (not started).
type dialOut struct {
	box                               *testnet.Box
	boxHost, client, branch, stranger *testnet.Host
	isp                               *testnet.Host
	ispPF, branchPF                   *testnet.Postfix
}

// The box's up command: raise the wan and route the ISP's network over it.
var dlUpCommand = testnet.WANUpCommand(ispNet+".0/24", wanISP)

func newDialOut(t *testing.T, mode string) *dialOut {
	t.Helper()
	testnet.Require(t, "swaks", "postfix", "/usr/sbin/dnsmasq", "fetchmail", "openssl")
	lan := testnet.NewLAN(t, dlNet+".0/24")
	d := &dialOut{boxHost: lan.AddHost("box", 1), client: lan.AddHost("client", 10),
		branch: lan.AddHost("branch", 20), stranger: lan.AddHost("stranger", 21)}
	dns := lan.AddHost("dns", 53)
	dns.StartDNS("test", "--mx-host=branch.test,mx.branch.test,10", "--host-record=mx.branch.test,"+dlBranchIP,
		"--host-record=mail.isp.test,"+ispMX)
	ispLAN := testnet.NewLAN(t, ispNet+".0/24")
	d.isp = ispLAN.AddHost("isp", 2)

	testnet.WAN(t, d.boxHost, d.isp, wanBox, wanISP) // down until the box dials

	cert, key := selfSigned(t, ispMX)
	d.ispPF = testnet.StartPostfix(t, d.isp, 25, []string{"remote.test"}, nil,
		append(testnet.SpoolerSettings("example.test", wanBox, "127.0.0.0/8, 10.77.15.0/24"),
			"smtpd_tls_cert_file = "+cert, "smtpd_tls_key_file = "+key, "smtpd_tls_security_level = may")...)
	d.branchPF = testnet.StartPostfix(t, d.branch, 25, []string{"branch.test"}, nil)

	b := testnet.NewBox(t, d.boxHost)
	d.box = b
	// The office typed its DNS server on the network page only; the
	// box's own resolv.conf points at a host without one, as the image
	// has none: every name (the branch's MX, the ISP's mail host) goes
	// through the settings.
	b.SetResolver(dlStranger)
	b.CLI("network", "set", d.boxHost.IF, dlBox+"/24", "--dns", dlDNS)
	b.CLI("domain", "add", "example.test")
	b.CLIInput(bobPass+"\n", "user", "add", "bob")
	b.CLI("config", "set", "smtp.mx_listen", ":25")
	b.CLI("config", "set", "delivery.smarthost", ispMX+":25")
	b.CLI("config", "set", "delivery.smarthost_ca_file", cert)
	b.CLI("config", "set", "delivery.retry_schedule", "1s")
	b.CLI("config", "set", "link.mail_host", "mail.isp.test:25")
	b.CLI("config", "set", "link.mode", mode)
	b.CLI("config", "set", "link.up_command", dlUpCommand)
	b.CLI("config", "set", "link.down_command", testnet.WANDownCommand)
	b.CLI("config", "set", "link.idle_time", "3s")
	b.CLI("config", "set", "link.confirm_timeout", "10s")
	b.CLI("config", "set", "link.retry_wait", "1s")
	b.CLI("config", "set", "link.isp_networks", ispNet+".0/24")
	b.CLI("config", "set", "link.relay_domains", "branch.test")
	b.CLI("config", "set", "link.etrn_networks", dlBranchIP+"/32")
	return d
}

// holdAtISP sends a message for bob@example.test to the ISP and waits
// until the ISP holds it (a new deferral in its log: the box is
// unreachable); it returns the message's token.
func (d *dialOut) holdAtISP(t *testing.T) string {
	t.Helper()
	before := strings.Count(d.ispPF.Log(), "to=<bob@example.test>")
	token := fmt.Sprintf("in-%d", time.Now().UnixNano())
	if out, err := d.isp.Command("swaks", "--server", ispMX, "--port", "25", "--from", "friend@remote.test", "--to", "bob@example.test",
		"--header", tokenHdr+": "+token, "--timeout", "20").CombinedOutput(); err != nil {
		t.Fatalf("swaks to the ISP: %v\n%s", err, out)
	}
	if !testnet.WaitFor(20*time.Second, func() bool {
		l := d.ispPF.Log()
		return strings.Count(l, "to=<bob@example.test>") > before && strings.Contains(l, "status=deferred")
	}) {
		t.Fatalf("the ISP did not hold the office's mail:\n%s", d.ispPF.Log())
	}
	return token
}

// submit sends a message from bob on the LAN to x@remote.test; it
// returns the message's token.
func (d *dialOut) submit(t *testing.T) string {
	t.Helper()
	token := fmt.Sprintf("out-%d", time.Now().UnixNano())
	if out, err := d.client.Command("swaks", "--server", dlBox, "--port", "587", "--tls", "--auth", "PLAIN",
		"--auth-user", "bob", "--auth-password", bobPass, "--from", "bob@example.test", "--to", "x@remote.test",
		"--header", tokenHdr+": "+token, "--timeout", "20").CombinedOutput(); err != nil {
		t.Fatalf("swaks submission: %v\n%s", err, out)
	}
	return token
}

// inMaildir waits until the message with token is in bob's Maildir.
func (d *dialOut) inMaildir(t *testing.T, token string) {
	t.Helper()
	b := d.box
	if !testnet.WaitFor(30*time.Second, func() bool { return len(containing(b.MaildirText("bob"), token)) == 1 }) {
		t.Fatalf("held mail %s not released into the Maildir:\n%s\n%s\n%s", token, b.CLI("link", "status"), b.Proc.Out.String(), d.ispPF.Log())
	}
}

// atISP waits until the outbound message with token reached the ISP.
func (d *dialOut) atISP(t *testing.T, token string) {
	t.Helper()
	if !testnet.WaitFor(30*time.Second, func() bool { return len(containing(d.ispPF.Delivered("x@remote.test"), token)) == 1 }) {
		t.Fatalf("outbound mail %s did not reach the ISP:\n%s\n%s", token, d.box.CLI("link", "status"), d.box.Proc.Out.String())
	}
}

// waitLog waits until the box's log shows want n times.
func (d *dialOut) waitLog(t *testing.T, n int, want string) {
	t.Helper()
	if !d.box.Proc.WaitOutput(30*time.Second, func(out string) bool { return strings.Count(out, want) >= n }) {
		t.Fatalf("the box's log does not show %q %d times:\n%s", want, n, d.box.Proc.Out.String())
	}
}

// Acceptance 1, 2, 3 and 5 of the dial-out issue, against a real Postfix
// as the ISP's spooler and smarthost and a real ETRN client (fetchmail).
func TestLinkOnDemandSpooling(t *testing.T) {
	d := newDialOut(t, "on-demand")
	b, boxHost, branch, stranger, branchPF := d.box, d.boxHost, d.branch, d.stranger, d.branchPF

	// Acceptance 2: mail to the office waits at the ISP while the link is
	// down (the box is unreachable).
	inToken := d.holdAtISP(t)

	b.Start(587)
	start := time.Now()
	outToken := d.submit(t)
	// Acceptance 3: the link comes up, the outbound mail reaches the ISP,
	// ETRN releases the held mail into bob's Maildir, the link goes down
	// after the idle time.
	d.atISP(t, outToken)
	t.Logf("outbound at the ISP %v after submission", time.Since(start).Round(time.Millisecond))
	d.inMaildir(t, inToken)
	t.Logf("held inbound mail in the Maildir %v after submission", time.Since(start).Round(time.Millisecond))
	d.waitLog(t, 1, `msg="link: down"`)
	log := b.Proc.Out.String()
	steps := []string{`msg="link: bringing up" service=link reason="outbound mail waiting"`, `msg="link: up command"`, `msg="link: up"`,
		`msg="link: flushing the outbound queue"`, `msg="link: held mail released" service=link method=etrn domain=example.test`,
		`msg="link: taking down" service=link reason="idle for 3s"`, `msg="link: down command"`, `msg="link: down"`}
	at := 0
	for _, s := range steps {
		i := strings.Index(log[at:], s)
		if i < 0 {
			t.Fatalf("log step %q missing or out of order:\n%s", s, log)
		}
		at += i
	}
	if out, _ := boxHost.Output("ip", "link", "show", "wan"); !strings.Contains(out, "state DOWN") {
		t.Errorf("wan is not down:\n%s", out)
	}
	st := b.CLI("link", "status")
	t.Logf("link status:\n%s", st)
	if !strings.Contains(st, "mode on-demand, link down") || !strings.Contains(st, "the ISP started sending") {
		t.Errorf("link status:\n%s", st)
	}

	// Acceptance 5: mail for the relay domain is held; ETRN from the
	// stranger is refused, from the branch's server it releases the mail.
	relToken := fmt.Sprintf("rel-%d", time.Now().UnixNano())
	if out, err := stranger.Command("swaks", "--server", dlBox, "--port", "25", "--from", "a@remote.test", "--to", "c@branch.test",
		"--header", tokenHdr+": "+relToken, "--timeout", "20").CombinedOutput(); err != nil {
		t.Fatalf("swaks to the relay domain: %v\n%s", err, out)
	}
	if n := len(envelopes(t, b)); n != 1 {
		t.Fatalf("%d messages queued for the relay domain, want 1:\n%s", n, b.CLI("queue", "list"))
	}
	etrn := func(h *testnet.Host) string {
		home := t.TempDir()
		cmd := h.Command("fetchmail", "-v", "-p", "ETRN", "--fetchdomains", "branch.test", dlBox)
		cmd.Env = append(os.Environ(), "HOME="+home)
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	if out := etrn(stranger); !strings.Contains(out, "459") {
		t.Errorf("ETRN from the stranger was not refused with 459:\n%s", out)
	}
	if len(containing(branchPF.Delivered(""), relToken)) != 0 {
		t.Fatal("relay-domain mail delivered after a refused ETRN")
	}
	if out := etrn(branch); !strings.Contains(out, "253") {
		t.Errorf("ETRN from the branch did not start the delivery:\n%s", out)
	}
	if !testnet.WaitFor(20*time.Second, func() bool { return len(containing(branchPF.Delivered("c@branch.test"), relToken)) == 1 }) {
		t.Fatalf("relay-domain mail not delivered after ETRN:\n%s\n%s", b.CLI("queue", "list"), b.Proc.Out.String())
	}
	waitQueueEmpty(t, b, 10*time.Second)
}

// Acceptance 2 and 7: with the link down (its up command fails) LAN mail
// to an outside address waits with no failed attempt and mail for the
// office is held at the ISP; then the ISP's Postfix refuses ETRN with
// 459, fails it with 458, does not answer it at all: each is said in
// words in the link status, and the next link-up asks again and gets the
// held mail.
func TestLinkDownAndETRNRefused(t *testing.T) {
	d := newDialOut(t, "on-demand")
	b := d.box
	b.CLI("config", "set", "link.up_command", "echo the modem does not answer >&2; exit 1")
	b.CLI("config", "set", "link.retries", "1")
	b.CLI("config", "set", "link.release_timeout", "2s")
	b.Start(587)

	outToken := d.submit(t)
	d.waitLog(t, 1, `msg="link: could not bring the link up"`)
	inToken := d.holdAtISP(t)
	envs := envelopes(t, b)
	if len(envs) != 1 {
		t.Fatalf("%d messages queued, want 1:\n%s", len(envs), b.CLI("queue", "list"))
	}
	show := b.CLI("queue", "show", envs[0].ID)
	if !strings.Contains(show, "x@remote.test") || !strings.Contains(show, "attempts 0") || strings.Contains(show, "last error") {
		t.Errorf("queued mail counts a failed attempt while the link is down:\n%s", show)
	}
	// The link is down, or dialing again for the waiting mail.
	if st := b.CLI("link", "status"); strings.Contains(st, "link up") || !strings.Contains(st, "problem: the link did not come up") ||
		!strings.Contains(st, "the modem does not answer") {
		t.Errorf("link status does not say why the link is down:\n%s", st)
	}
	if n := len(d.ispPF.Delivered("x@remote.test")); n != 0 {
		t.Fatalf("%d outbound messages reached the ISP with the link down", n)
	}
	if out, _ := d.boxHost.Output("ip", "link", "show", "wan"); !strings.Contains(out, "state DOWN") {
		t.Errorf("wan is not down:\n%s", out)
	}

	// Acceptance 7. The ISP refuses: the domain is not one it flushes.
	d.ispPF.Configure("fast_flush_domains =")
	b.CLI("config", "set", "link.up_command", dlUpCommand)
	d.atISP(t, outToken)
	failed := []struct {
		isp   []string
		words string
	}{
		{nil, "does not hold mail for example.test for this box (459)"},
		{[]string{"fast_flush_domains = $relay_domains", "flush_service_name = noflush"}, "could not start sending the mail for example.test now (458)"},
		{[]string{"flush_service_name = flush", "smtpd_etrn_restrictions = sleep 10, permit_mynetworks, reject"}, "did not answer ETRN for example.test in time"},
	}
	for i, f := range failed {
		if f.isp != nil {
			d.ispPF.Configure(f.isp...)
			b.CLI("link", "up")
		}
		d.waitLog(t, i+1, `msg="link: held mail not released"`)
		if st := b.CLI("link", "status"); !strings.Contains(st, f.words) || !strings.Contains(st, "the next link-up asks again") {
			t.Errorf("link status after a failed ETRN does not say %q:\n%s", f.words, st)
		}
		d.waitLog(t, i+1, `msg="link: down"`)
		if len(containing(b.MaildirText("bob"), inToken)) != 0 {
			t.Fatalf("held mail arrived although ETRN failed")
		}
	}
	// The next link-up asks again, and the ISP now sends the mail.
	d.ispPF.Configure("smtpd_etrn_restrictions = permit_mynetworks, reject")
	b.CLI("link", "up")
	d.inMaildir(t, inToken)
	if st := b.CLI("link", "status"); !strings.Contains(st, "the ISP started sending the mail it held for example.test") {
		t.Errorf("link status after ETRN:\n%s", st)
	}
	d.waitLog(t, len(failed)+1, `msg="link: down"`)
}

// Acceptance 4 and 6: a short schedule brings the link up with no
// outbound mail waiting, ETRN releases the held mail and the link goes
// down, twice; then, in on-demand mode, a SIGKILL of the box while the
// link is up and a message is queued (the ISP defers it) leaves the queue
// intact, and the next link-up delivers the message once.
func TestLinkScheduleAndCrash(t *testing.T) {
	d := newDialOut(t, "schedule")
	b := d.box
	b.CLI("config", "set", "link.every", "10s")
	b.CLI("config", "set", "link.max_up", "1m")
	in1 := d.holdAtISP(t)
	b.Start(587)
	d.inMaildir(t, in1)
	d.waitLog(t, 1, `msg="link: down"`)
	in2 := d.holdAtISP(t)
	d.inMaildir(t, in2)
	d.waitLog(t, 2, `msg="link: down"`)
	log := b.Proc.Out.String()
	if n := strings.Count(log, `msg="link: bringing up" service=link reason=schedule`); n != 2 {
		t.Errorf("%d scheduled link-ups, want 2:\n%s", n, log)
	}
	if strings.Contains(log, "outbound mail waiting") || len(envelopes(t, b)) != 0 {
		t.Errorf("outbound mail was waiting:\n%s", log)
	}

	// Acceptance 6.
	d.ispPF.Configure("smtpd_recipient_restrictions = defer")
	b.CLI("config", "set", "link.mode", "on-demand")
	token := d.submit(t)
	d.waitLog(t, 1, `msg="delivery deferred"`)
	if st := b.CLI("link", "status"); !strings.Contains(st, "link up") {
		t.Fatalf("the link is not up with mail being tried:\n%s", st)
	}
	envs := envelopes(t, b)
	if len(envs) != 1 {
		t.Fatalf("%d messages queued, want 1", len(envs))
	}
	b.Kill()
	after := envelopes(t, b)
	if len(after) != 1 || after[0].ID != envs[0].ID || after[0].Recipients[0].State != queue.Pending {
		t.Fatalf("the queue after SIGKILL: %+v", after)
	}
	d.ispPF.Configure("smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination")
	b.Start(587)
	d.atISP(t, token)
	waitQueueEmpty(t, b, 10*time.Second)
	if !strings.Contains(b.Proc.Out.String(), `msg="link: bringing up" service=link reason="outbound mail waiting"`) {
		t.Errorf("the restarted box did not bring the link up for the queued mail:\n%s", b.Proc.Out.String())
	}
}
