package smtpd_test

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"concierge/internal/testnet"
)

// loadClient sends messages over parallel sessions and prints the token of
// every message that got 250 after DATA, one per line, as it happens.
const loadClient = `
import smtplib, sys, threading
host, run, sessions, per = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
lock = threading.Lock()
def worker(n):
    try:
        s = smtplib.SMTP(host, 25, timeout=30)
        s.ehlo("load.test")
        for i in range(per):
            tok = "crash-%s-%d-%d" % (run, n, i)
            body = "Subject: %s\r\nMessage-ID: <%s@load.test>\r\n\r\n%s\r\n" % (tok, tok, ("payload " + tok + "\r\n") * 20)
            s.sendmail("load@remote.test", ["bob@example.test"], body)
            with lock:
                sys.stdout.write(tok + "\n"); sys.stdout.flush()
    except Exception as e:
        with lock:
            sys.stderr.write("session %d stopped: %r\n" % (n, e))
threads = [threading.Thread(target=worker, args=(n,)) for n in range(sessions)]
for t in threads: t.start()
for t in threads: t.join()
`

// Acceptance 6: kill -9 during a load; every acknowledged message is in a
// Maildir exactly once after a restart.
func TestCrashKeepsAcknowledgedMail(t *testing.T) {
	t.Parallel()
	m := newMailLAN(t, "10.77.52")
	// Runs 0-2 crash with SIGKILL; run 3 is a clean stop with SIGTERM,
	// which must let sessions end with 421 and lose nothing either.
	for run := 0; run < 4; run++ {
		cmd := m.client.Command("/usr/bin/python3", "-c", loadClient, m.box.Addr.String(), fmt.Sprint(run), "20", "100")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acked := map[string]bool{}
		lines := make(chan string)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// Kill after a random number of acknowledged messages.
		killAt := 100 + rand.IntN(1500)
		killed := false
		var stopped chan struct{} // closed when a SIGTERM stop has returned
		for l := range lines {
			acked[l] = true
			if !killed && len(acked) >= killAt {
				if run == 3 {
					stopped = make(chan struct{})
					go func() { m.box.Stop(); close(stopped) }()
				} else {
					m.box.Kill()
				}
				killed = true
			}
		}
		cmd.Wait()
		m.box.Proc.Wait(30 * time.Second)
		if stopped != nil {
			<-stopped // before Start replaces m.box.Proc
		}
		if !killed {
			t.Fatalf("run %d: the load ended before the kill point (%d acked)", run, len(acked))
		}
		t.Logf("run %d: killed after %d acknowledged messages", run, len(acked))
		m.box.Start(25)
		count := map[string]int{}
		for _, msg := range m.box.MaildirText("bob") {
			i := strings.Index(msg, "Subject: crash-")
			if i < 0 {
				continue
			}
			tok := strings.Fields(msg[i+len("Subject: "):])[0]
			count[tok]++
		}
		for tok := range acked {
			if count[tok] != 1 {
				t.Errorf("run %d: acknowledged %s is in the Maildir %d times", run, tok, count[tok])
			}
		}
		for tok, n := range count {
			if n > 1 {
				t.Errorf("run %d: %s is in the Maildir %d times", run, tok, n)
			}
		}
		if t.Failed() {
			return
		}
	}
}

// Acceptance 8: a slow upload is not cut off; a stalled one is.
func TestSlowClientAndIdleTimeout(t *testing.T) {
	t.Parallel()
	m := newMailLAN(t, "10.77.62", func(b *testnet.Box) {
		b.CLI("config", "set", "smtp.idle_timeout", "3s")
	})
	out, err := m.client.Output("/usr/bin/python3", "-c", rawSession(60)+`
s.sendall(b"EHLO client.test\r\n"); reply()
s.sendall(b"MAIL FROM:<a@remote.test>\r\n"); reply()
s.sendall(b"RCPT TO:<bob@example.test>\r\n"); reply()
s.sendall(b"DATA\r\n"); reply()
s.sendall(b"Subject: slow\r\n\r\n")
line = b"z" * 98 + b"\r\n"
chunk = line * 20            # 2,000 bytes every 0.1 s: 20 KB/s
start = time.time()
for i in range(5 * 1024 * 1024 // len(chunk)):
    s.sendall(chunk)
    time.sleep(max(0, start + (i + 1) * 0.1 - time.time()))
s.sendall(b".\r\n")
print("slow:", reply(), "after %.0fs" % (time.time() - start))
# Now stall mid-message for longer than the idle timeout.
s.sendall(b"MAIL FROM:<a@remote.test>\r\n"); reply()
s.sendall(b"RCPT TO:<bob@example.test>\r\n"); reply()
s.sendall(b"DATA\r\n"); reply()
s.sendall(b"Subject: stalled\r\n\r\npart of it\r\n")
t0 = time.time()
print("stalled:", reply() or "closed", "after %.1fs" % (time.time() - t0))
`, m.box.Addr.String())
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "slow: 250") {
		t.Errorf("slow upload was not accepted:\n%s", out)
	}
	if !strings.Contains(out, "stalled: 421") {
		t.Errorf("stalled client did not get 421:\n%s", out)
	}
	msgs := m.box.MaildirText("bob")
	if len(msgs) != 1 || len(msgs[0]) < 5_000_000 {
		t.Errorf("want one message of 5 MB, got %d", len(msgs))
	}
}
