package config

import (
	"net/netip"
	"strings"
	"testing"
)

func TestSetInterface(t *testing.T) {
	c := Default()
	if err := c.SetInterface("eth0", "10.77.0.5/24", "10.77.0.254", "10.77.0.53, 10.77.0.54"); err != nil {
		t.Fatal(err)
	}
	if errs := c.Validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
	ifc := c.Network.Interface("eth0")
	if ifc == nil || ifc.Prefix() != netip.MustParsePrefix("10.77.0.5/24") || ifc.GatewayAddr() != netip.MustParseAddr("10.77.0.254") || strings.Join(ifc.DNS, " ") != "10.77.0.53 10.77.0.54" {
		t.Fatalf("eth0 = %+v", ifc)
	}
	// Each refusal names the form's field.
	for _, tt := range []struct{ name, addr, gw, dns, field string }{
		{"eth 0", "10.77.0.5/24", "", "", "interface"},
		{"eth0", "10.77.0.5", "", "", "address"},
		{"eth0", "10.77.0.255/24", "", "", "address"},
		{"eth0", "10.77.0.5/24", "10.78.0.1", "", "gateway"},
		{"eth0", "10.77.0.5/24", "", "10.77.0.53,resolver", "dns"},
		{"eth1", "10.78.0.5/24", "10.78.0.1", "", "gateway"}, // eth0 has the default route
	} {
		err := c.SetInterface(tt.name, tt.addr, tt.gw, tt.dns)
		fe, ok := err.(*FieldError)
		if !ok || fe.Field != tt.field {
			t.Errorf("SetInterface(%q, %q, %q, %q) = %v, want an error about %s", tt.name, tt.addr, tt.gw, tt.dns, err, tt.field)
		}
	}
	if len(c.Network.Interfaces) != 1 {
		t.Errorf("refused changes were kept: %+v", c.Network.Interfaces)
	}
	if err := c.Set("network.interfaces", "eth0"); err == nil || !strings.Contains(err.Error(), "network set") {
		t.Errorf("config set network.interfaces: %v", err)
	}
	if err := c.Set("network.rollback_after", "5s"); err != nil || c.Network.RollbackAfter.D().Seconds() != 5 {
		t.Errorf("config set network.rollback_after 5s: %v", err)
	}
}

func TestMoveListeners(t *testing.T) {
	c := Default()
	c.SMTP.MX, c.SMTP.Submission = "10.77.0.1:25", "127.0.0.1:587"
	c.POP3.Listen, c.Web.HTTPListen = "10.77.0.1:110", "10.77.0.1:80"
	moved := c.MoveListeners(netip.MustParseAddr("10.77.0.1"), netip.MustParseAddr("10.77.0.5"))
	if strings.Join(moved, " ") != "smtp.mx_listen pop3.listen web.http_listen" {
		t.Errorf("moved %v", moved)
	}
	if c.SMTP.MX != "10.77.0.5:25" || c.POP3.Listen != "10.77.0.5:110" || c.Web.HTTPListen != "10.77.0.5:80" ||
		c.SMTP.Submission != "127.0.0.1:587" || c.SMTP.SubmissionTLS != ":465" {
		t.Errorf("after the move: smtp %+v pop3 %q web %q", c.SMTP, c.POP3.Listen, c.Web.HTTPListen)
	}
}

// Outbound delivery asks delivery.dns_servers when set, else the DNS
// servers the network page gives the interfaces, each once.
func TestResolvers(t *testing.T) {
	c := Default()
	if r := c.Resolvers(); len(r) != 0 {
		t.Errorf("default: %v, want none (resolv.conf)", r)
	}
	if err := c.SetInterface("eth0", "10.77.0.5/24", "10.77.0.1", "10.77.0.1, 10.77.0.2"); err != nil {
		t.Fatal(err)
	}
	if err := c.SetInterface("eth1", "10.78.0.5/24", "", "10.77.0.2 10.78.0.1"); err != nil {
		t.Fatal(err)
	}
	if r := strings.Join(c.Resolvers(), " "); r != "10.77.0.1 10.77.0.2 10.78.0.1" {
		t.Errorf("from the interfaces: %q", r)
	}
	c.Delivery.DNSServers = []string{"192.0.2.53:5353"}
	if r := strings.Join(c.Resolvers(), " "); r != "192.0.2.53:5353" {
		t.Errorf("with delivery.dns_servers: %q", r)
	}
}
