// Command link benchmarks the release of held inbound mail on link-up:
// N messages (default 1,000) for the office's domain wait at the ISP's
// Postfix (backup MX with fast flush) while the box's dial-out link is
// down; then the box brings the link up and the held mail is released
// either by the box's own ETRN (link.release_method etrn) or by
// fetchmail's ETRN mode run on the box's host the moment the link is up
// (release_method none), as an ip-up hook would. It measures the time
// from link-up (the box's "link: up" log line) to the last message in
// the user's Maildir, alternately for a few rounds, in network
// namespaces (the box, the ISP, a veth "wan" between them that the box's
// up and down commands raise and lower). Run it as root with
// "go run ./cmd/bench/link" (make bench).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"concierge/internal/measure"
	"concierge/internal/testnet"
)

var (
	messages = flag.Int("messages", 1000, "messages held at the ISP per round")
	rounds   = flag.Int("rounds", 2, "alternating rounds of each trigger")
	size     = flag.Int("size", 2048, "message size in octets")
)

// The box's LAN, the ISP's network and the wan between them.
const (
	boxNet  = "10.77.51"
	ispNet  = "10.77.52"
	ispMX   = ispNet + ".2"
	wanNet  = "10.77.53"
	wanBox  = wanNet + ".1"
	wanISP  = wanNet + ".2"
	domain  = "example.test"
	rcpt    = "bob@" + domain
	timeout = 10 * time.Minute // for one round's flush
)

func main() {
	testing.Main(func(string, string) (bool, error) { return true, nil },
		[]testing.InternalTest{{Name: "LinkRelease", F: bench}}, nil, nil)
}

// trigger is how the held mail is released on link-up.
type trigger struct {
	name   string
	method string             // link.release_method
	etrn   func(t *testing.T) // run at link-up, or nil
}

// result is one round: from link-up to the first and the last message
// in the Maildir, and to the ETRN being answered.
type result struct {
	first, last, etrn time.Duration
}

func bench(t *testing.T) {
	testnet.Require(t, "smtp-source", "postfix", "fetchmail", "/usr/sbin/dnsmasq")
	lan := testnet.NewLAN(t, boxNet+".0/24")
	boxHost := lan.AddHost("box", 1)
	dns := lan.AddHost("dns", 53)
	dns.StartDNS("test")
	isp := testnet.NewLAN(t, ispNet+".0/24").AddHost("isp", 2)
	testnet.WAN(t, boxHost, isp, wanBox, wanISP)
	pf := testnet.StartPostfix(t, isp, 25, nil, nil,
		testnet.SpoolerSettings(domain, wanBox, "127.0.0.0/8, "+ispNet+".0/24, "+wanNet+".0/24")...)

	box := testnet.NewBox(t, boxHost)
	box.SetResolver(dns.Addr.String())
	box.CLI("domain", "add", domain)
	box.CLIInput("correct horse\n", "user", "add", "bob")
	box.CLI("config", "set", "smtp.mx_listen", ":25")
	for _, kv := range [][2]string{
		{"mail_host", ispMX + ":25"},
		{"mode", "on-demand"},
		{"up_command", testnet.WANUpCommand(ispNet+".0/24", wanISP)},
		{"down_command", testnet.WANDownCommand},
		{"idle_time", "5s"},
		{"isp_networks", ispNet + ".0/24," + wanNet + ".0/24"},
	} {
		box.CLI("config", "set", "link."+kv[0], kv[1])
	}
	box.Start(25)

	triggers := []trigger{
		{name: "box's own ETRN", method: "etrn"},
		{name: "fetchmail -p ETRN", method: "none", etrn: func(t *testing.T) {
			home := t.TempDir()
			out, _ := boxHost.Output("env", "HOME="+home, "fetchmail", "--nosyslog", "-v", "-p", "ETRN", "--fetchdomains", domain, ispMX)
			if !strings.Contains(out, "Queuing for "+domain+" started") {
				t.Fatalf("fetchmail's ETRN did not start the ISP's queue run:\n%s", out)
			}
		}},
	}
	res := make([][]result, len(triggers))
	ups := 0
	for range *rounds {
		for i, tr := range triggers {
			ups++
			res[i] = append(res[i], round(t, box, isp, pf, tr, ups))
		}
	}
	fmt.Printf("Held inbound mail released on link-up: %d × %d B held at the ISP's Postfix (fast flush), "+
		"into a Maildir on the box; %d alternating rounds (median, rounds in ms):\n", *messages, *size, *rounds)
	fmt.Printf("  %-20s %12s %12s %12s %8s\n", "trigger", "ETRN done", "first msg", "last msg", "msg/s")
	for i, tr := range triggers {
		var first, last, etrn []float64
		for _, r := range res[i] {
			first = append(first, ms(r.first))
			last = append(last, ms(r.last))
			etrn = append(etrn, ms(r.etrn))
		}
		ml := measure.Median(last)
		fmt.Printf("  %-20s %10.0fms %10.0fms %10.0fms %8.0f  last %v\n", tr.name,
			measure.Median(etrn), measure.Median(first), ml, float64(*messages)/(ml/1000), measure.Rounds(last))
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// round holds the messages at the ISP with the link down, brings the
// link up (the ups-th time) and times the release by tr into bob's
// Maildir, then waits for the link to go down again.
func round(t *testing.T, box *testnet.Box, isp *testnet.Host, pf *testnet.Postfix, tr trigger, ups int) result {
	box.CLI("config", "set", "link.release_method", tr.method)
	isp.Run("smtp-source", "-m", strconv.Itoa(*messages), "-s", "20", "-l", strconv.Itoa(*size),
		"-f", "friend@remote.test", "-t", rcpt, ispMX+":25")
	if !testnet.WaitFor(5*time.Minute, func() bool { return queued(pf, "deferred") >= *messages }) {
		t.Fatalf("the ISP holds %d of %d messages:\n%s", queued(pf, "deferred"), *messages, tail(pf.Log()))
	}
	newDir := filepath.Join(box.Data, "mail", "bob", "new")
	emptyDir(t, newDir)

	const ok, failed = `msg="link: held mail released"`, `msg="link: held mail not released"`
	released := strings.Count(box.Proc.Out.String(), ok)
	box.CLI("link", "up")
	const upLine = `msg="link: up"`
	if !box.Proc.WaitOutput(time.Minute, func(out string) bool { return strings.Count(out, upLine) >= ups }) {
		t.Fatalf("the link did not come up:\n%s", box.Proc.Out.String())
	}
	up := logTime(t, box.Proc.Out.String(), upLine, ups)
	var etrnDone time.Time
	if tr.etrn != nil {
		tr.etrn(t)
		etrnDone = time.Now()
	} else {
		if !box.Proc.WaitOutput(time.Minute, func(out string) bool { return strings.Count(out, ok) > released || strings.Contains(out, failed) }) ||
			strings.Contains(box.Proc.Out.String(), failed) {
			t.Fatalf("the box's ETRN did not release the held mail:\n%s\n%s", box.CLI("link", "status"), tail(pf.Log()))
		}
		etrnDone = logTime(t, box.Proc.Out.String(), ok, -1)
	}
	if !testnet.WaitFor(timeout, func() bool { return count(newDir) >= *messages }) {
		t.Fatalf("%d of %d held messages in the Maildir after %v:\n%s", count(newDir), *messages, timeout, box.CLI("link", "status"))
	}
	first, last := ctimes(t, newDir)
	if !box.Proc.WaitOutput(time.Minute, func(out string) bool { return strings.Count(out, `msg="link: down"`) >= ups }) {
		t.Fatalf("the link did not go down after the idle time:\n%s", box.Proc.Out.String())
	}
	if n := queued(pf, "deferred") + queued(pf, "active") + queued(pf, "incoming"); n != 0 {
		t.Fatalf("%d messages left at the ISP", n)
	}
	return result{first: first.Sub(up), last: last.Sub(up), etrn: etrnDone.Sub(up)}
}

var timeField = regexp.MustCompile(`^time=(\S+)`)

// logTime is the time of the n-th log line (the last with n < 0) that
// contains s.
func logTime(t *testing.T, log, s string, n int) time.Time {
	var lines []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, s) {
			lines = append(lines, l)
		}
	}
	if n < 0 {
		n = len(lines)
	}
	if n < 1 || n > len(lines) {
		t.Fatalf("log line %d with %q missing:\n%s", n, s, log)
	}
	m := timeField.FindStringSubmatch(lines[n-1])
	if m == nil {
		t.Fatalf("no time in log line %q", lines[n-1])
	}
	at, err := time.Parse(time.RFC3339Nano, m[1])
	if err != nil {
		t.Fatalf("log line time: %v", err)
	}
	return at
}

// ctimes returns when the first and the last file in dir appeared (their
// inode change time: the rename into new/).
func ctimes(t *testing.T, dir string) (first, last time.Time) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(dir, e.Name()), &st); err != nil {
			t.Fatal(err)
		}
		c := time.Unix(st.Ctim.Sec, st.Ctim.Nsec)
		if first.IsZero() || c.Before(first) {
			first = c
		}
		if c.After(last) {
			last = c
		}
	}
	return first, last
}

func count(dir string) int {
	ents, _ := os.ReadDir(dir)
	return len(ents)
}

// emptyDir empties a Maildir's new/ between rounds (as a client that
// fetched and deleted the mail would).
func emptyDir(t *testing.T, dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
}

// queued counts the files in one of Postfix's queues.
func queued(pf *testnet.Postfix, queue string) int {
	n := 0
	filepath.Walk(filepath.Join(pf.Dir, "queue", queue), func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n++
		}
		return nil
	})
	return n
}

func tail(s string) string {
	if len(s) > 4000 {
		return "…" + s[len(s)-4000:]
	}
	return s
}
