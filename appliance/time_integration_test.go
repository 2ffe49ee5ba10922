package appliance_test

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"concierge/internal/testnet"
)

// The LAN of the time test: the box, Debian's chronyd as the office's
// time server, and an address where nothing answers.
const (
	timeNet    = "10.77.123"
	timeBox    = timeNet + ".1"
	timeServer = timeNet + ".123"
	timeMute   = timeNet + ".124"
	timeDNS    = timeNet + ".53"
	timeAdmin  = "Quiet-Clock-Tower-58"
)

// startChrony runs chronyd on h as an NTP server of its own local clock
// at stratum 8, for the test's subnet only. -x: it never touches the
// clock (the namespaces share the host's); its files are in a temp dir.
func startChrony(t *testing.T, h *testnet.Host, subnet string) *testnet.Proc {
	t.Helper()
	dir := t.TempDir()
	conf := strings.Join([]string{
		"local stratum 8",
		"allow " + subnet,
		"bindaddress " + h.Addr.String(),
		"port 123",
		"cmdport 0",
		"bindcmdaddress /",
		"pidfile " + filepath.Join(dir, "chronyd.pid"),
		"driftfile " + filepath.Join(dir, "drift"),
	}, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "chrony.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p := h.Start("chronyd", "-d", "-x", "-u", "root", "-f", filepath.Join(dir, "chrony.conf"))
	if !p.WaitOutput(10*time.Second, func(out string) bool { return strings.Contains(out, "Disabled control of system clock") }) {
		t.Fatalf("chronyd did not start:\n%s", p.Out.String())
	}
	// chronyd is ready once it answers on its port.
	if !testnet.WaitFor(10*time.Second, func() bool {
		out, _ := h.Output("ss", "-Hunl", "sport = :123")
		return strings.TrimSpace(out) != ""
	}) {
		t.Fatalf("chronyd does not listen on port 123:\n%s", p.Out.String())
	}
	return p
}

// Issue 14 (time): with chronyd as its time server the box says it is
// synchronized with it, with a small offset, in "concierge time" and on
// the status page, and it does not set the clock (not the box's init);
// with a server that does not answer it says so, naming the server.
func TestTimeAgainstChrony(t *testing.T) {
	testnet.Require(t, "chronyd", "ss")
	before := time.Now()
	lan := testnet.NewLAN(t, timeNet+".0/24")
	boxH, ntpH, pc := lan.AddHost("box", 1), lan.AddHost("ntp", 123), lan.AddHost("pc", 10)
	startChrony(t, ntpH, timeNet+".0/24")
	lan.AddHost("dns", 53).StartDNS("test", "--host-record=ntp.office.test,"+timeServer)
	b := testnet.NewBox(t, boxH)
	// The box's own resolv.conf points nowhere, as the image has none.
	b.SetResolver(timeMute)
	b.CLI("config", "set", "web.http_listen", timeBox+":80")
	b.CLI("config", "set", "web.https_listen", "")
	b.CLIInput(timeAdmin+"\n", "admin", "passwd")
	b.Start(80)
	// Off the box, auto leaves the time to the host and asks nobody.
	if out := b.CLI("time"); !strings.Contains(out, "time kept by this machine") {
		t.Errorf("time with the default settings off the box: %q", out)
	}
	// Measuring only: asks the server, never sets this machine's clock.
	b.CLI("config", "set", "time.set_clock", "off")
	b.CLI("config", "set", "time.ntp_servers", timeServer)

	if !b.Proc.WaitOutput(30*time.Second, func(out string) bool {
		return strings.Contains(out, `msg="time: synchronized"`) && strings.Contains(out, "server="+timeServer)
	}) {
		t.Fatalf("the box did not synchronize with chronyd:\n%s", b.Proc.Out.String())
	}
	out := b.CLI("time")
	m := regexp.MustCompile(`synchronized with ` + regexp.QuoteMeta(timeServer) + `, offset (\S+), stratum 8,`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("concierge time does not say synchronized with chronyd at stratum 8:\n%s", out)
	}
	// The same clock on both ends: the offset is the path's asymmetry.
	if off, err := time.ParseDuration(m[1]); err != nil || off.Abs() > 100*time.Millisecond {
		t.Errorf("offset %s: want under 100ms\n%s", m[1], out)
	}
	if !strings.Contains(out, "sets the clock: no (measures only)") {
		t.Errorf("a box that is not the firmware's init must not set the clock:\n%s", out)
	}
	if st := b.CLI("status"); !regexp.MustCompile(`memory: resident \d+\.\d MiB \(peak \d+\.\d MiB\), Go heap`).MatchString(st) {
		t.Errorf("concierge status does not show the memory:\n%s", st)
	}

	web := newPageClient(t, pc, "http://"+timeBox)
	web.login(timeAdmin)
	status, _, doc := web.do(http.MethodGet, "/", nil)
	page := textOf(doc)
	if status != http.StatusOK || !strings.Contains(page, "Clock: synchronized with "+timeServer) || !strings.Contains(page, "resident (at most") {
		t.Errorf("the status page (%d) does not show the clock synchronized and the memory:\n%s", status, page)
	}

	// A server that does not answer.
	b.CLI("config", "set", "time.ntp_servers", timeMute)
	if !b.Proc.WaitOutput(30*time.Second, func(out string) bool {
		return strings.Contains(out, `msg="time: no time server answered"`) && strings.Contains(out, timeMute+": ")
	}) {
		t.Fatalf("no error for a time server that does not answer:\n%s", b.Proc.Out.String())
	}
	out = b.CLI("time")
	if !strings.Contains(out, "not synchronized") || !regexp.MustCompile(`last error \(.*\): `+regexp.QuoteMeta(timeMute)+`: \S`).MatchString(out) {
		t.Errorf("concierge time with a silent server:\n%s", out)
	}
	_, _, doc = web.do(http.MethodGet, "/", nil)
	if page := textOf(doc); !strings.Contains(page, "Clock: not synchronized: "+timeMute+": ") {
		t.Errorf("the status page does not show the error:\n%s", page)
	}
	t.Logf("with a silent server:\n%s", out)

	// A server by name is looked up through the DNS servers given on
	// the network page.
	b.CLI("network", "set", boxH.IF, timeBox+"/24", "--dns", timeDNS)
	b.CLI("config", "set", "time.ntp_servers", "ntp.office.test")
	byName := regexp.MustCompile(`msg="time: synchronized" .*server=ntp\.office\.test `)
	if !b.Proc.WaitOutput(30*time.Second, byName.MatchString) {
		t.Fatalf("the box did not synchronize with chronyd by name:\n%s", b.Proc.Out.String())
	}

	// The host's clock was never set: it only moved forward, by about
	// the test's duration.
	if d := time.Since(before); d < 0 || d > 5*time.Minute {
		t.Errorf("the clock moved by %v during the test", d)
	}
}
