package pop3d

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// BenchmarkRetrieveAndDelete runs one pipelined session that retrieves and
// deletes 1,000 messages of 5 KB (without a password hash; the side by
// side figures against Dovecot come from cmd/bench/pop3).
func BenchmarkRetrieveAndDelete(b *testing.B) {
	ts := newTestServer(b, nil)
	body := "Subject: bench\r\n\r\n" + strings.Repeat(strings.Repeat("x", 70)+"\r\n", 70)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for j := range 1000 {
			put(b, ts.root, "alice", fmt.Sprintf("%d.M%dP1Q%d.bench", 1700000000+j, j, i), body, time.Duration(1000-j)*time.Second)
		}
		b.StartTimer()
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			b.Fatal(err)
		}
		r := bufio.NewReaderSize(c, 64<<10)
		w := bufio.NewWriterSize(c, 64<<10)
		r.ReadString('\n')
		w.WriteString("USER alice\r\nPASS secret 1\r\n")
		go func() {
			for j := 1; j <= 1000; j++ {
				fmt.Fprintf(w, "RETR %d\r\nDELE %d\r\n", j, j)
			}
			w.WriteString("QUIT\r\n")
			w.Flush()
		}()
		r.ReadString('\n')
		if l, _ := r.ReadString('\n'); !strings.HasPrefix(l, "+OK") {
			b.Fatal(l)
		}
		for j := 1; j <= 1000; j++ {
			r.ReadString('\n')
			for {
				l, err := r.ReadSlice('\n')
				if err != nil {
					b.Fatal(err)
				}
				if len(l) == 3 && l[0] == '.' {
					break
				}
			}
			r.ReadString('\n')
		}
		if l, _ := r.ReadString('\n'); !strings.HasPrefix(l, "+OK") {
			b.Fatal(l)
		}
		c.Close()
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "msg/s")
}
