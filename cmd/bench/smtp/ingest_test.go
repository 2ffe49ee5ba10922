// Package smtp benchmarks end-to-end SMTP ingest: smtp-source (Postfix's
// load client) sends 5,000 messages of 2 KB over 20 sessions, and the time
// runs from its start until the last message is in its Maildir. The same
// load goes alternately to concierge and to a private Postfix instance
// that delivers to Maildir through its virtual transport, both on a veth
// LAN in network namespaces. Run with "make bench".
package smtp

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"concierge/internal/measure"
	"concierge/internal/testnet"
)

const (
	messages = 5000
	sessions = 20
	size     = 2048
	rounds   = 3
)

func BenchmarkIngest(b *testing.B) {
	testnet.Require(b, "smtp-source", "postfix")
	lan := testnet.NewLAN(b, "10.77.70.0/24")
	box := testnet.NewBox(b, lan.AddHost("box", 1))
	pfHost := lan.AddHost("pf", 2)
	client := lan.AddHost("client", 10)
	box.CLI("domain", "add", "example.test")
	box.CLIInput("correct horse\n", "user", "add", "bob")
	box.CLI("config", "set", "smtp.max_connections_per_ip", "100")
	box.Start(25)
	pf := startPostfix(b, pfHost)

	var ours, theirs []float64
	var rss int64
	for r := 0; r < rounds; r++ {
		ours = append(ours, run(b, client, box.Addr.String(), func() int { return len(box.Maildir("bob")) }))
		rss = max(rss, measure.StatusKB(box.Proc.Cmd.Process.Pid, "VmHWM"))
		theirs = append(theirs, run(b, client, pfHost.Addr.String(), func() int { return pf.count() }))
	}
	mo, mt := measure.Median(ours), measure.Median(theirs)
	fmt.Printf("SMTP ingest, %d × %d B over %d sessions, %d alternating rounds (median msg/s):\n", messages, size, sessions, rounds)
	fmt.Printf("  concierge  %7.0f msg/s  %v\n", mo, measure.Rounds(ours))
	fmt.Printf("  postfix    %7.0f msg/s  %v\n", mt, measure.Rounds(theirs))
	fmt.Printf("  ratio      %7.2f×  (target ≥ 2×)\n", mo/mt)
	fmt.Printf("  concierge peak RSS %d MB (target < 64 MB)\n", rss>>10)
	b.ReportMetric(mo, "concierge-msg/s")
	b.ReportMetric(mt, "postfix-msg/s")
	b.ReportMetric(mo/mt, "ratio")
	b.ReportMetric(float64(rss>>10), "peak-RSS-MB")
}

// run sends the load and returns messages per second until count()
// reaches the number sent.
func run(b *testing.B, client *testnet.Host, server string, count func() int) float64 {
	b.Helper()
	before := count()
	start := time.Now()
	out, err := client.Output("smtp-source", "-s", fmt.Sprint(sessions), "-l", fmt.Sprint(size), "-m", fmt.Sprint(messages),
		"-f", "load@remote.test", "-t", "bob@example.test", server+":25")
	if err != nil {
		b.Fatalf("smtp-source: %v\n%s", err, out)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for count()-before < messages {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d messages arrived", count()-before, messages)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return messages / time.Since(start).Seconds()
}

type postfix struct{ dir string }

func (p *postfix) count() int {
	m, _ := os.ReadDir(filepath.Join(p.dir, "mail", "bob", "new"))
	return len(m)
}

// startPostfix runs a private Postfix instance on h:25 that delivers mail
// for example.test into DIR/mail/bob/ (a Maildir).
func startPostfix(b *testing.B, h *testnet.Host) *postfix {
	b.Helper()
	dir, err := os.MkdirTemp("/tmp", "pfbench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if !b.Failed() {
			os.RemoveAll(dir)
		}
	})
	os.Chmod(dir, 0o755) // the postfix user must reach data/
	conf := filepath.Join(dir, "conf")
	for _, d := range []string{conf, filepath.Join(dir, "queue"), filepath.Join(dir, "data"), filepath.Join(dir, "mail")} {
		os.MkdirAll(d, 0o755)
	}
	exec.Command("chown", "postfix", filepath.Join(dir, "data")).Run()
	exec.Command("chown", "65534:65534", filepath.Join(dir, "mail")).Run()
	main := fmt.Sprintf(`compatibility_level = 3.6
config_directory = %[1]s/conf
queue_directory = %[1]s/queue
data_directory = %[1]s/data
maillog_file = %[1]s/postfix.log
maillog_file_prefixes = /tmp
inet_interfaces = %[2]s
inet_protocols = ipv4
myhostname = pf.example.test
mydestination =
mynetworks = 10.77.70.0/24
smtpd_recipient_restrictions = permit_mynetworks, reject
virtual_mailbox_domains = example.test
virtual_mailbox_base = %[1]s/mail
virtual_mailbox_maps = static:bob/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
smtputf8_enable = no
biff = no
`, dir, h.Addr)
	os.WriteFile(filepath.Join(conf, "main.cf"), []byte(main), 0o644)
	master, err := os.ReadFile("/usr/share/postfix/master.cf.dist")
	if err != nil {
		b.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(master), "\n") {
		f := strings.Fields(l)
		if len(f) >= 8 && !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, " ") {
			if f[0] == "smtp" && f[1] == "inet" {
				f[0] = h.Addr.String() + ":25"
			}
			f[4] = "n" // no chroot
			l = strings.Join(f, " ")
		}
		lines = append(lines, l)
	}
	os.WriteFile(filepath.Join(conf, "master.cf"), []byte(strings.Join(lines, "\n")), 0o644)
	if out, err := h.Output("postfix", "-c", conf, "check"); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "postfix.log"))
		b.Fatalf("postfix check: %v\n%s%s", err, out, log)
	}
	h.Run("postfix", "-c", conf, "start")
	b.Cleanup(func() { h.Output("postfix", "-c", conf, "stop") })
	h.WaitTCP(25, 20*time.Second)
	return &postfix{dir: dir}
}
