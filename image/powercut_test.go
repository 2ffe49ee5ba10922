package image_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"net/textproto"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"concierge/internal/testnet"
)

// The power-cut test's parameters.
const (
	powerCuts = 5
	// cutAfter is how many 250s the recording client collects in the
	// first round before QEMU is killed; each later round waits cutStep
	// more, so the cuts fall at different points of the load.
	cutAfter = 15
	cutStep  = 5
	// cutWait bounds the wait for those 250s (TCG on a loaded machine).
	cutWait = 3 * time.Minute
	// loadSessions and loadSize: smtp-source's parallel sessions and
	// message size in bytes; its message count is never reached.
	// loadFirst is how many messages smtp-source has sent before the
	// recording client starts.
	loadSessions = 4
	loadSize     = "2000"
	loadCount    = "1000000"
	loadFirst    = 10
	// pcDomain ends the Message-IDs of the recording client, to tell its
	// messages from smtp-source's.
	pcDomain = "@powercut.test>"
)

// sent is what the recording client knows about its messages of one
// round.
type sent struct {
	acked   []string // got 250: must be in the Maildir after the cut
	pending string   // the final dot was sent, no reply came: may be there
	err     error    // why the client stopped
}

// powerCut is acceptance 5. It boots a copy of the image, sets the box
// up on the setup page, then five times: smtp-source sends load to the
// user while a client of the test sends messages with unique Message-IDs
// one after another and records every 250; after a number of 250s, with
// the next message's final dot sent, QEMU gets SIGKILL (the disk is cache=writethrough: what the guest wrote is
// in the file, what was in its page cache is gone, as in a power cut).
// After the next boot every message that got 250 must be in the user's
// Maildir (read through POP3), none of ours twice, and none that did not
// get 250 unless its reply was cut off.
func powerCut(t *testing.T, img string) {
	if _, err := exec.LookPath("smtp-source"); err != nil {
		t.Fatal("smtp-source not installed (postfix, make test-deps)")
	}
	began := time.Now()
	disk := filepath.Join(t.TempDir(), "disk.img")
	copyFile(t, img, disk)
	v := startVM(t, disk, vmMemory)
	v.waitLines(readyLine, 1, 3*bootDeadline)
	v.browser().setup()
	seen := map[string]int{} // Message-IDs found in the rounds so far
	for round := 1; round <= powerCuts; round++ {
		s, loaded := v.loadUntilCut(round, cutAfter+(round-1)*cutStep)
		v = startVM(t, disk, vmMemory)
		v.waitLines(readyLine, 1, 3*bootDeadline)
		booted := timeSince(v)
		found := map[string]int{} // Message-ID: copies in the Maildir
		load := 0
		for _, id := range v.popCollect(vmUser, vmUserPass) {
			found[id]++
			if !strings.HasSuffix(id, pcDomain) {
				load++
			}
		}
		present := 0
		for _, id := range s.acked {
			if found[id] > 0 {
				present++
			} else {
				t.Errorf("round %d: %s got 250 before the power cut and is not in the Maildir", round, id)
			}
		}
		// smtp-source's Message-IDs (<pid.fd.count@host>) are unique too:
		// the doubles check covers its messages as well.
		pendingThere := false
		for id, n := range found {
			switch {
			case id == "":
				t.Errorf("round %d: %d messages without a Message-ID in the Maildir", round, n)
			case n > 1:
				t.Errorf("round %d: %s is in the Maildir %d times", round, id, n)
			case seen[id] > 0:
				t.Errorf("round %d: %s, collected and deleted after an earlier round, is back", round, id)
			case !strings.HasSuffix(id, pcDomain):
				// smtp-source's: load, counted below
			case id == s.pending:
				pendingThere = true
			case !slices.Contains(s.acked, id):
				t.Errorf("round %d: %s is in the Maildir but never got 250 and was not in flight", round, id)
			}
			seen[id] += n
		}
		// smtp-source records nothing per message; its counter at the cut
		// (-c: it counts a message when it has sent the final dot) may
		// include one message per session that had no 250 yet.
		if load < loaded-loadSessions {
			t.Errorf("round %d: smtp-source had sent %d messages at the cut, %d are in the Maildir", round, loaded, load)
		}
		inFlight := "none"
		if s.pending != "" {
			inFlight = fmt.Sprintf("1 (%s)", map[bool]string{true: "delivered", false: "not delivered"}[pendingThere])
		}
		t.Logf("round %d: QEMU killed after %d 250s to the recording client and %d messages from smtp-source; "+
			"in flight without a reply: %s (the client stopped with: %v); next boot serving after %.1f s; "+
			"in the Maildir: %d of the %d acknowledged, %d of smtp-source's",
			round, len(s.acked), loaded, inFlight, s.err, booted, present, len(s.acked), load)
	}
	v.stop()
	t.Logf("%d power cuts, %d boots: %.0f s", powerCuts, powerCuts+1, time.Since(began).Seconds())
}

// loadUntilCut starts smtp-source and, once that has sent loadFirst
// messages, the recording client; it kills QEMU (SIGKILL) when the client
// has n 250s and has sent the final dot of the next message, and
// smtp-source has sent the round's number less one further messages
// after that dot (which moves the cut across the box's commit of the
// message in flight: receive, spool, syncfs, link, syncfs, 250; the
// result must not depend on where it falls), while smtp-source still
// sends; it returns what the client recorded and smtp-source's count.
func (v *vm) loadUntilCut(round, n int) (sent, int) {
	t := v.t
	t.Helper()
	load := testnet.StartCmd(t, exec.Command("ip", "netns", "exec", v.ns, "smtp-source", "-c", "-s", strconv.Itoa(loadSessions),
		"-m", loadCount, "-l", loadSize, "-f", "load@outside.test", "-t", vmUser+"@"+vmDomain, "127.0.0.1:"+fwdSMTP))
	if !load.WaitOutput(cutWait, func(out string) bool { return loadSent(out) >= loadFirst }) {
		t.Fatalf("round %d: smtp-source did not send %d messages within %v:\n%s", round, loadFirst, cutWait, tail(load.Out.String()))
	}
	reached := make(chan struct{})
	result := make(chan sent, 1)
	go func() { result <- v.record(round, n, reached) }()
	select {
	case <-reached:
	case s := <-result:
		t.Fatalf("round %d: the recording client stopped after %d 250s, before the cut: %v", round, len(s.acked), s.err)
	case <-time.After(cutWait):
		t.Fatalf("round %d: the recording client did not get %d 250s within %v", round, n, cutWait)
	}
	if load.Exited() {
		t.Fatalf("round %d: smtp-source stopped before the cut: %v\n%s", round, load.Err, tail(load.Out.String()))
	}
	after := loadSent(load.Out.String()) + round - 1
	if !load.WaitOutput(cutWait, func(out string) bool { return loadSent(out) >= after }) {
		t.Fatalf("round %d: smtp-source did not reach %d messages within %v:\n%s", round, after, cutWait, tail(load.Out.String()))
	}
	loaded := loadSent(load.Out.String())
	v.cmd.Process.Kill() // SIGKILL: the power cut
	<-v.exited
	load.Cmd.Process.Kill()
	load.Wait(30 * time.Second)
	testnet.DeleteNamespaces(v.ns)
	select {
	case s := <-result:
		return s, loaded
	case <-time.After(time.Minute):
		t.Fatalf("round %d: the recording client did not notice that QEMU is gone", round)
		return sent{}, 0
	}
}

// loadSent reads the count of messages smtp-source -c has sent
// ("1\r2\r...", then maybe error messages).
func loadSent(out string) int {
	n := 0
	for _, f := range strings.Fields(strings.ReplaceAll(out, "\r", " ")) {
		if c, err := strconv.Atoi(f); err == nil {
			n = c
		}
	}
	return n
}

// dotWatch calls onDot after each write that ends a message's data.
type dotWatch struct {
	net.Conn
	onDot func()
}

func (d dotWatch) Write(p []byte) (int, error) {
	n, err := d.Conn.Write(p)
	if err == nil && bytes.HasSuffix(p, []byte("\r\n.\r\n")) {
		d.onDot()
	}
	return n, err
}

// record sends messages to the user one after another on one SMTP
// connection until it fails; after the nth 250 it closes reached as soon
// as the next message's final dot is sent (a message is in flight).
func (v *vm) record(round, n int, reached chan<- struct{}) (s sent) {
	conn, err := v.dial("tcp", fwdSMTP)
	if err != nil {
		s.err = err
		return s
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(cutWait + time.Minute))
	cut := false
	c, err := smtp.NewClient(dotWatch{conn, func() {
		if len(s.acked) >= n && !cut {
			cut = true
			close(reached)
		}
	}}, "box")
	if err == nil {
		err = c.Hello("client.outside.test")
	}
	for i := 1; err == nil; i++ {
		id := fmt.Sprintf("<r%d-m%d%s", round, i, pcDomain)
		if err = c.Mail("client@outside.test"); err != nil {
			break
		}
		if err = c.Rcpt(vmUser + "@" + vmDomain); err != nil {
			break
		}
		var w io.WriteCloser
		if w, err = c.Data(); err != nil {
			break
		}
		if _, err = fmt.Fprintf(w, "From: client@outside.test\r\nTo: %s@%s\r\nMessage-ID: %s\r\nSubject: power cut %d, message %d\r\n\r\nmessage %d\r\n",
			vmUser, vmDomain, id, round, i, i); err != nil {
			break // the final dot was not sent: the message cannot be there
		}
		err = w.Close()
		var reply *textproto.Error
		switch {
		case err == nil:
			s.acked = append(s.acked, id)
		case !errors.As(err, &reply):
			s.pending = id // the dot may have reached the box; no reply came
		}
	}
	s.err = err
	return s
}

// popCollect reads every message's header in user's maildrop through POP3
// (STLS, then USER/PASS; TOP n 0 pipelined, RFC 2449), deletes them all,
// and returns their Message-IDs ("" for a message without one).
func (v *vm) popCollect(user, pass string) (ids []string) {
	t := v.t
	t.Helper()
	conn, err := v.dial("tcp", fwdPOP3)
	if err != nil {
		t.Fatalf("POP3: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Minute))
	tp := textproto.NewConn(conn)
	ok := func(cmd string, args ...any) string {
		t.Helper()
		if cmd != "" {
			if err := tp.PrintfLine(cmd, args...); err != nil {
				t.Fatalf("POP3 %s: %v", cmd, err)
			}
		}
		line, err := tp.ReadLine()
		if err != nil || !strings.HasPrefix(line, "+OK") {
			t.Fatalf("POP3 %q: %q, %v", cmd, line, err)
		}
		return line
	}
	ok("")
	ok("STLS")
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true}) // the box's self-signed certificate
	tp = textproto.NewConn(tc)
	ok("USER %s", user)
	ok("PASS %s", pass)
	var count int
	fmt.Sscanf(ok("STAT"), "+OK %d", &count)
	pipeline := func(cmd string) {
		go func() { // the answers are read while the commands go out
			w := bufio.NewWriter(tc)
			for i := 1; i <= count; i++ {
				fmt.Fprintf(w, cmd+"\r\n", i)
			}
			w.Flush()
		}()
	}
	pipeline("TOP %d 0")
	for i := 1; i <= count; i++ {
		ok("")
		lines, err := tp.ReadDotLines()
		if err != nil {
			t.Fatalf("POP3 TOP %d: %v", i, err)
		}
		id := ""
		for _, l := range lines {
			if k, val, _ := strings.Cut(l, ":"); strings.EqualFold(k, "Message-ID") {
				id = strings.TrimSpace(val)
			}
		}
		ids = append(ids, id)
	}
	pipeline("DELE %d")
	for i := 1; i <= count; i++ {
		ok("")
	}
	ok("QUIT")
	return ids
}
