// Command queue benchmarks outbound delivery: 5,000 queued messages of
// 2 KB for one remote domain are delivered through an MX lookup (dnsmasq)
// to smtp-sink, first by concierge (its queue filled on disk, then the
// server started), then by a private Postfix instance (the same load
// injected with smtp-source while delivery is deferred, then released),
// alternately for a few rounds, on a veth LAN in network namespaces. It
// prints messages per second and the ratio. Run it as root with
// "go run ./cmd/bench/queue" (make bench).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"concierge/internal/measure"
	"concierge/internal/testnet"
	"concierge/smtpd/queue"
)

var (
	messages = flag.Int("messages", 5000, "messages per round")
	rounds   = flag.Int("rounds", 3, "alternating rounds")
	conns    = flag.Int("conns", 20, "connections to the destination (both servers)")
)

const (
	size   = 2048
	subnet = "10.77.41"
)

func main() {
	testing.Main(func(string, string) (bool, error) { return true, nil },
		[]testing.InternalTest{{Name: "QueueDelivery", F: bench}}, nil, nil)
}

func bench(t *testing.T) {
	testnet.Require(t, "smtp-sink", "smtp-source", "postfix", "/usr/sbin/dnsmasq")
	lan := testnet.NewLAN(t, subnet+".0/24")
	box := testnet.NewBox(t, lan.AddHost("box", 1))
	pfHost := lan.AddHost("pf", 2)
	sinkHost := lan.AddHost("sink", 25)
	dns := lan.AddHost("dns", 53)
	dns.StartDNS("test", "--mx-host=bench.test,mx.bench.test,10", "--host-record=mx.bench.test,"+sinkHost.Addr.String())
	box.SetResolver(dns.Addr.String())
	pfHost.SetResolver(dns.Addr.String())
	sink := sinkHost.Start("smtp-sink", "-c", "-u", "nobody", sinkHost.Addr.String()+":25", "1024")
	sinkHost.WaitTCP(25, 10*time.Second)
	count := func() int { return sinkCount(sink.Out.String()) }

	box.CLI("domain", "add", "example.test")
	box.CLIInput("correct horse\n", "user", "add", "bob")
	box.CLI("config", "set", "delivery.max_connections_per_domain", strconv.Itoa(*conns))
	box.CLI("config", "set", "delivery.max_connections", strconv.Itoa(*conns))

	pf := testnet.StartPostfix(t, pfHost, 25, nil, nil,
		"mynetworks = "+subnet+".0/24",
		// Every message waits in the hold queue until released.
		"smtpd_end_of_data_restrictions = check_client_access static:HOLD",
		"default_destination_concurrency_limit = "+strconv.Itoa(*conns),
		"smtp_destination_concurrency_limit = "+strconv.Itoa(*conns),
		"default_process_limit = 200",
		"smtpd_client_connection_count_limit = 100",
		"smtp_tls_security_level = none")

	var ours, theirs []float64
	var rss int64
	for r := 0; r < *rounds; r++ {
		ours = append(ours, runConcierge(t, box, count, &rss))
		theirs = append(theirs, runPostfix(t, pf, pfHost, count))
	}
	mo, mt := measure.Median(ours), measure.Median(theirs)
	fmt.Printf("Outbound delivery, %d × %d B to one domain by MX lookup into smtp-sink, %d connections, %d alternating rounds (median msg/s):\n",
		*messages, size, *conns, *rounds)
	fmt.Printf("  concierge  %7.0f msg/s  %v\n", mo, measure.Rounds(ours))
	fmt.Printf("  postfix    %7.0f msg/s  %v\n", mt, measure.Rounds(theirs))
	fmt.Printf("  ratio      %7.2f×  (target ≥ 1×)\n", mo/mt)
	fmt.Printf("  concierge peak RSS %d MB\n", rss>>10)
}

var mesg = regexp.MustCompile(`mesg=(\d+)`)

// sinkCount is the last message counter smtp-sink -c printed.
func sinkCount(out string) int {
	i := strings.LastIndex(out, "mesg=")
	if i < 0 {
		return 0
	}
	m := mesg.FindStringSubmatch(out[i:])
	n, _ := strconv.Atoi(m[1])
	return n
}

// runConcierge fills the stopped box's queue on disk, starts the server
// and times it until the sink has every message.
func runConcierge(t *testing.T, box *testnet.Box, count func() int, rss *int64) float64 {
	q, err := queue.Open(filepath.Join(box.Data, "queue"))
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!#\r\n", size/66)
	now := time.Now().UTC()
	for i := 0; i < *messages; i++ {
		id := fmt.Sprintf("%d.M%dP%dQ%d.bench", now.Unix(), now.Nanosecond()/1000, os.Getpid(), i) // queue.ValidID
		head := "Return-Path: <bob@example.test>\r\n"
		msg := head + "Received: from client ([" + subnet + ".10])\r\n\tby mail.example.test (Concierge) with ESMTP id " + id + "\r\n" +
			"From: bob@example.test\r\nTo: x@bench.test\r\nSubject: bench " + strconv.Itoa(i) + "\r\n\r\n" + body
		if err := os.WriteFile(q.MsgPath(id), []byte(msg), 0o600); err != nil {
			t.Fatal(err)
		}
		env := &queue.Envelope{ID: id, From: "bob@example.test", Received: now, BodyOffset: int64(len(head)),
			Size: int64(len(msg) - len(head)), Recipients: []queue.Recipient{{Addr: "x@bench.test", State: queue.Pending}}}
		if err := writeEnvelope(q, env); err != nil {
			t.Fatal(err)
		}
	}
	base := count()
	start := time.Now()
	box.Start(0)
	if !testnet.WaitFor(10*time.Minute, func() bool { return count()-base >= *messages }) {
		t.Fatalf("concierge delivered %d of %d", count()-base, *messages)
	}
	el := time.Since(start)
	*rss = max(*rss, measure.StatusKB(box.Proc.Cmd.Process.Pid, "VmHWM"))
	box.Stop()
	if left, _ := q.List(); len(left) != 0 {
		t.Fatalf("%d messages left in concierge's queue", len(left))
	}
	return float64(*messages) / el.Seconds()
}

func writeEnvelope(q *queue.Queue, env *queue.Envelope) error {
	// Not durable (the benchmark sets up the load; the fsyncs are not
	// what is measured).
	tmp := filepath.Join(q.Dir, "tmp", env.ID+".json")
	p, err := q.Stage(env)
	if err != nil {
		return err
	}
	_ = tmp
	return os.Rename(p, q.EnvPath(env.ID))
}

// runPostfix injects the load into Postfix, which puts every message on
// hold, then releases them all and times it until the sink has every
// message.
func runPostfix(t *testing.T, pf *testnet.Postfix, h *testnet.Host, count func() int) float64 {
	h.Run("smtp-source", "-m", strconv.Itoa(*messages), "-s", "20", "-l", strconv.Itoa(size),
		"-f", "bob@example.test", "-t", "x@bench.test", h.Addr.String()+":25")
	if !testnet.WaitFor(5*time.Minute, func() bool { return held(pf) >= *messages }) {
		t.Fatalf("postfix holds only %d of %d", held(pf), *messages)
	}
	base := count()
	start := time.Now()
	h.Run("postsuper", "-c", pf.Dir, "-H", "ALL")
	h.Run("postqueue", "-c", pf.Dir, "-f")
	testnet.WaitFor(time.Minute, func() bool { return count() > base })
	first := time.Since(start)
	testnet.WaitFor(10*time.Minute, func() bool { return count()-base >= *messages/2 })
	half := time.Since(start)
	if os.Getenv("BENCH_DEBUG") != "" {
		fmt.Printf("postfix: first message after %v, half after %v\n", first, half)
	}
	if !testnet.WaitFor(10*time.Minute, func() bool { return count()-base >= *messages }) {
		t.Fatalf("postfix delivered %d of %d", count()-base, *messages)
	}
	el := time.Since(start)
	return float64(*messages) / el.Seconds()
}

// held counts the files in Postfix's hold queue.
func held(pf *testnet.Postfix) int {
	n := 0
	filepath.Walk(filepath.Join(pf.Dir, "queue", "hold"), func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n++
		}
		return nil
	})
	return n
}
