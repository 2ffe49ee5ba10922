package appliance_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"concierge/internal/testnet"
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

// Acceptance 1, 2, 3 and 5 of the dial-out issue, against a real Postfix
// as the ISP's spooler and smarthost and a real ETRN client (fetchmail).
func TestLinkOnDemandSpooling(t *testing.T) {
	testnet.Require(t, "swaks", "postfix", "/usr/sbin/dnsmasq", "fetchmail", "openssl")
	lan := testnet.NewLAN(t, dlNet+".0/24")
	boxHost := lan.AddHost("box", 1)
	client := lan.AddHost("client", 10)
	branch := lan.AddHost("branch", 20)
	stranger := lan.AddHost("stranger", 21)
	dns := lan.AddHost("dns", 53)
	dns.StartDNS("test", "--mx-host=branch.test,mx.branch.test,10", "--host-record=mx.branch.test,"+dlBranchIP)
	ispLAN := testnet.NewLAN(t, ispNet+".0/24")
	isp := ispLAN.AddHost("isp", 2)

	// The wan link, down until the box dials.
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	run("ip", "link", "add", "wan", "netns", boxHost.NS, "type", "veth", "peer", "name", "wan", "netns", isp.NS)
	run("ip", "-n", boxHost.NS, "addr", "add", wanBox+"/24", "dev", "wan")
	run("ip", "-n", isp.NS, "addr", "add", wanISP+"/24", "dev", "wan")
	run("ip", "-n", isp.NS, "link", "set", "wan", "up")

	cert, key := selfSigned(t, ispMX)
	ispPF := testnet.StartPostfix(t, isp, 25, []string{"remote.test"}, nil,
		"smtpd_tls_cert_file = "+cert, "smtpd_tls_key_file = "+key, "smtpd_tls_security_level = may",
		"mynetworks = 127.0.0.0/8, 10.77.15.0/24",
		"relay_domains = example.test",
		"transport_maps = inline:{example.test=relay:["+wanBox+"]:25}",
		"fast_flush_domains = $relay_domains",
		"smtpd_etrn_restrictions = permit_mynetworks, reject",
		"smtp_connect_timeout = 2s",
		"smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination")
	branchPF := testnet.StartPostfix(t, branch, 25, []string{"branch.test"}, nil)

	box := testnet.NewBox(t, boxHost)
	box.SetResolver(dlDNS)
	b := box
	b.CLI("domain", "add", "example.test")
	b.CLIInput(bobPass+"\n", "user", "add", "bob")
	b.CLI("config", "set", "smtp.mx_listen", ":25")
	b.CLI("config", "set", "delivery.smarthost", ispMX+":25")
	b.CLI("config", "set", "delivery.smarthost_ca_file", cert)
	b.CLI("config", "set", "delivery.retry_schedule", "1s")
	b.CLI("config", "set", "link.mail_host", ispMX+":25")
	b.CLI("config", "set", "link.mode", "on-demand")
	b.CLI("config", "set", "link.up_command", "ip link set wan up && ip route replace "+ispNet+".0/24 via "+wanISP+" dev wan")
	b.CLI("config", "set", "link.down_command", "ip link set wan down")
	b.CLI("config", "set", "link.idle_time", "3s")
	b.CLI("config", "set", "link.confirm_timeout", "10s")
	b.CLI("config", "set", "link.retry_wait", "1s")
	b.CLI("config", "set", "link.isp_networks", ispNet+".0/24")
	b.CLI("config", "set", "link.relay_domains", "branch.test")
	b.CLI("config", "set", "link.etrn_networks", dlBranchIP+"/32")

	// Acceptance 2: mail to the office waits at the ISP while the link is
	// down (the box is unreachable).
	inToken := fmt.Sprintf("in-%d", time.Now().UnixNano())
	if out, err := isp.Command("swaks", "--server", ispMX, "--port", "25", "--from", "friend@remote.test", "--to", "bob@example.test",
		"--header", tokenHdr+": "+inToken, "--timeout", "20").CombinedOutput(); err != nil {
		t.Fatalf("swaks to the ISP: %v\n%s", err, out)
	}
	if !testnet.WaitFor(20*time.Second, func() bool { return strings.Contains(ispPF.Log(), "status=deferred") }) {
		t.Fatalf("the ISP did not hold the office's mail:\n%s", ispPF.Log())
	}

	b.Start(587)
	start := time.Now()
	outToken := fmt.Sprintf("out-%d", time.Now().UnixNano())
	if out, err := client.Command("swaks", "--server", dlBox, "--port", "587", "--tls", "--auth", "PLAIN",
		"--auth-user", "bob", "--auth-password", bobPass, "--from", "bob@example.test", "--to", "x@remote.test",
		"--header", tokenHdr+": "+outToken, "--timeout", "20").CombinedOutput(); err != nil {
		t.Fatalf("swaks submission: %v\n%s", err, out)
	}
	// Acceptance 3: the link comes up, the outbound mail reaches the ISP,
	// ETRN releases the held mail into bob's Maildir, the link goes down
	// after the idle time.
	if !testnet.WaitFor(30*time.Second, func() bool { return len(containing(ispPF.Delivered("x@remote.test"), outToken)) == 1 }) {
		t.Fatalf("outbound mail did not reach the ISP:\n%s\n%s", b.CLI("link", "status"), b.Proc.Out.String())
	}
	t.Logf("outbound at the ISP %v after submission", time.Since(start).Round(time.Millisecond))
	if !testnet.WaitFor(30*time.Second, func() bool { return len(containing(b.MaildirText("bob"), inToken)) == 1 }) {
		t.Fatalf("held mail not released into the Maildir:\n%s\n%s\n%s", b.CLI("link", "status"), b.Proc.Out.String(), ispPF.Log())
	}
	t.Logf("held inbound mail in the Maildir %v after submission", time.Since(start).Round(time.Millisecond))
	if !b.Proc.WaitOutput(30*time.Second, func(out string) bool { return strings.Contains(out, `msg="link: down"`) }) {
		t.Fatalf("the link did not go down after the idle time:\n%s", b.Proc.Out.String())
	}
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
