// Command ceiling answers every datagram on 137/udp with the datagram
// itself, the response bit set: the least work a name server can do per
// query, with the same batched reads and writes as concierge (recvmmsg,
// sendmmsg, the same choice between polling and sleeping after each
// answer, internal/spin). The nbt benchmark runs it in
// nmbd's place with -ceiling, to show what the machine, the network path
// and the load generator allow whatever the server.
package main

import (
	"errors"
	"log"
	"net"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"concierge/internal/spin"
)

func main() {
	c, err := net.ListenPacket("udp4", ":137")
	if err != nil {
		log.Fatal(err)
	}
	pc := ipv4.NewPacketConn(c)
	const batch = 16
	in := make([]ipv4.Message, batch)
	out := make([]ipv4.Message, batch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, 1500)}
		out[i].Buffers = [][]byte{nil}
	}
	sp := spin.New()
	for {
		flags := 0
		if sp.Poll() {
			flags = unix.MSG_DONTWAIT
		}
		n, err := pc.ReadBatch(in, flags)
		if errors.Is(err, unix.EAGAIN) {
			continue
		}
		if err != nil {
			log.Fatal(err)
		}
		sp.Arrived()
		for i := range n {
			b := in[i].Buffers[0][:in[i].N]
			if len(b) > 2 {
				b[2] |= 0x80
			}
			out[i].Buffers[0] = b
			out[i].Addr = in[i].Addr
		}
		for sent := 0; sent < n; {
			k, err := pc.WriteBatch(out[sent:n], 0)
			if err != nil {
				break
			}
			sent += k
		}
		sp.Answered()
	}
}
