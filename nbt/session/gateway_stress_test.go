package session

import (
	"bufio"
	"flag"
	"io"
	"testing"
	"time"

	"concierge/nbt/wire"
)

var (
	gatewayRuns  = flag.Int("gateway-runs", 8, "sessions TestGatewayStress pushes through the gateway (many, to show that no copy loop stalls)")
	gatewayBytes = flag.Int("gateway-mib", 16, "MiB TestGatewayStress pushes through each session")
)

// TestGatewayStress pushes megabytes through many gateway sessions in a
// row, each with a deadline: the caller writes SESSION MESSAGEs of 16 KiB
// while it reads the echo, as the benchmark does. A copy loop that stops
// waking (the splice experiment stalled about one run in fifteen) fails
// the run at its deadline with how far it got. The normal suite runs a
// few sessions; -gateway-runs 60 runs many (docs/benchmarks-nbt.md).
func TestGatewayStress(t *testing.T) {
	const (
		chunk    = 16 << 10
		deadline = 20 * time.Second
	)
	_, addr, _ := start(t, Config{Gateways: []Gateway{{Name: gwName, Addr: echoServer(t)}}})
	perRun := *gatewayBytes << 20
	frame := message(make([]byte, chunk))
	for run := range *gatewayRuns {
		c, h, _ := call(t, addr, gwName)
		if h.Type != wire.SessPositive {
			t.Fatalf("run %d: response %#x", run, h.Type)
		}
		c.SetDeadline(time.Now().Add(deadline))
		werr := make(chan error, 1)
		go func() {
			for range perRun / chunk {
				if _, err := c.Write(frame); err != nil {
					werr <- err
					return
				}
			}
			werr <- nil
		}()
		br := bufio.NewReaderSize(c, 64<<10)
		got := 0
		var err error
		for got < perRun && err == nil {
			var hb [wire.SessHeaderLen]byte
			if _, err = io.ReadFull(br, hb[:]); err != nil {
				break
			}
			var sh wire.SessionHeader
			if sh, err = wire.ParseSessionHeader(hb[:]); err != nil {
				break
			}
			if sh.Type != wire.SessMessage {
				continue
			}
			_, err = br.Discard(sh.Length)
			got += sh.Length
		}
		if err != nil {
			t.Fatalf("run %d of %d: %d of %d bytes back, then %v", run+1, *gatewayRuns, got, perRun, err)
		}
		if err := <-werr; err != nil {
			t.Fatalf("run %d: write: %v", run+1, err)
		}
		c.Close()
	}
	t.Logf("%d sessions of %d MiB each", *gatewayRuns, perRun>>20)
}
