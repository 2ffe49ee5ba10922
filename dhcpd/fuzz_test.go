package dhcpd

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// FuzzHandle feeds arbitrary packets to the server's packet handler, with
// a lease table that carries over between inputs: it must never panic
// (handle's recover would count it: the test fails on any), and every
// answer must be a reply the codec reads back, from this server, to the
// client that asked.
func FuzzHandle(f *testing.F) {
	hw := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}
	d, _ := dhcpv4.NewDiscovery(hw, dhcpv4.WithOption(dhcpv4.OptHostName("pc1")))
	f.Add(d.ToBytes())
	o, _ := dhcpv4.NewReplyFromRequest(d, dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer),
		dhcpv4.WithYourIP(ip("10.77.0.100")), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ip("10.77.0.1"))))
	r, _ := dhcpv4.NewRequestFromOffer(o)
	f.Add(r.ToBytes())
	f.Add(o.ToBytes())
	f.Add(initReboot(nil, hw, "10.77.0.100").ToBytes())
	f.Add(renew(nil, hw, "10.77.0.100").ToBytes())
	inf, _ := dhcpv4.NewInform(hw, ip("10.77.0.30"))
	f.Add(inf.ToBytes())
	f.Add([]byte{1, 1, 6, 0})

	clk := &clock{t: time.Unix(1e9, 0)}
	cfg := testConfig(nil, clk, 8)
	cfg.Reservations = []Reservation{{MAC: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 9}, IP: netipAddr("10.77.0.9")}}
	s, err := New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	f.Fuzz(func(t *testing.T, data []byte) {
		clk.add(time.Minute)
		out, to := s.handle(context.Background(), data, peer)
		if n := s.Status().Counters.Panics; n > 0 {
			t.Fatalf("handler panicked (%d)", n)
		}
		if out == nil {
			return
		}
		req, err := dhcpv4.FromBytes(data)
		if err != nil {
			t.Fatalf("answered a packet the codec refuses: %v", err)
		}
		rep, err := dhcpv4.FromBytes(out)
		if err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
		if rep.OpCode != dhcpv4.OpcodeBootReply || rep.TransactionID != req.TransactionID ||
			!rep.ServerIdentifier().Equal(ip("10.77.0.1")) || to == nil {
			t.Fatalf("bad reply %v to %v", rep, to)
		}
		if y := addrOf(rep.YourIPAddr); y.IsValid() && !boxAddr.Contains(y) {
			t.Fatalf("gave out %s, outside the LAN", y)
		}
	})
}
