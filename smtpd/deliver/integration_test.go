package deliver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"concierge/internal/testnet"
	"concierge/smtpd/queue"
)

// startDNS runs dnsmasq on a free loopback port with the test zone and
// returns its address.
func startDNS(t *testing.T) string {
	t.Helper()
	testnet.Require(t, "/usr/sbin/dnsmasq")
	l, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.LocalAddr().(*net.UDPAddr).Port
	l.Close()
	p := testnet.StartCmd(t, exec.Command("/usr/sbin/dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts",
		"--bind-interfaces", "--listen-address=127.0.0.1", fmt.Sprintf("--port=%d", port), "--user=root", "--group=root",
		"--pid-file=", "--local=/test/",
		"--mx-host=remote.test,a.remote.test,10", "--mx-host=remote.test,b.remote.test,10", "--mx-host=remote.test,c.remote.test,20",
		"--host-record=a.remote.test,127.0.0.11", "--host-record=b.remote.test,127.0.0.12", "--host-record=c.remote.test,127.0.0.13",
		"--host-record=amx.test,127.0.0.14",
		"--dns-rr=nullmx.test,15,000000",
		"--cname=alias.test,remote.test",
		"--cname=mxalias.remote.test,a.remote.test", "--mx-host=viaalias.test,mxalias.remote.test,5",
	))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	r := &Resolver{Servers: []string{addr}, Timeout: time.Second}
	if !testnet.WaitFor(5*time.Second, func() bool { _, err := r.LookupHost(context.Background(), "amx.test"); return err == nil }) {
		t.Fatalf("dnsmasq does not answer:\n%s", p.Out.String())
	}
	return addr
}

func TestResolver(t *testing.T) {
	r := &Resolver{Servers: []string{startDNS(t)}, Timeout: time.Second}
	ctx := context.Background()

	// Preference order, random among equals (RFC 5321 5.1).
	firsts := map[string]int{}
	for range 40 {
		mxs, err := r.LookupMX(ctx, "remote.test")
		if err != nil || len(mxs) != 3 {
			t.Fatalf("LookupMX(remote.test) = %v, %v", mxs, err)
		}
		if mxs[2].Host != "c.remote.test" || mxs[0].Pref != 10 || mxs[1].Pref != 10 {
			t.Fatalf("not sorted by preference: %v", mxs)
		}
		firsts[mxs[0].Host]++
	}
	if firsts["a.remote.test"] == 0 || firsts["b.remote.test"] == 0 {
		t.Errorf("equal preferences are not shuffled: %v", firsts)
	}

	for _, c := range []struct {
		domain string
		want   []string
		code   string // "" for success
		perm   bool
	}{
		{"amx.test", []string{"amx.test"}, "", false},                                          // implicit MX
		{"alias.test", []string{"a.remote.test", "b.remote.test", "c.remote.test"}, "", false}, // CNAME followed
		{"nullmx.test", nil, "5.1.10", true},                                                   // RFC 7505
		{"nxdomain.test", nil, "5.1.2", true},                                                  // NXDOMAIN
	} {
		mxs, err := r.LookupMX(ctx, c.domain)
		if c.code == "" {
			if err != nil || len(mxs) != len(c.want) {
				t.Errorf("LookupMX(%s) = %v, %v; want %v", c.domain, mxs, err, c.want)
			}
			continue
		}
		var e *Error
		if !errors.As(err, &e) || e.Code != c.code || e.Perm != c.perm {
			t.Errorf("LookupMX(%s) = %v, %v; want code %s permanent=%v", c.domain, mxs, err, c.code, c.perm)
		}
	}

	if addrs, err := r.LookupHost(ctx, "c.remote.test"); err != nil || len(addrs) != 1 || addrs[0].String() != "127.0.0.13" {
		t.Errorf("LookupHost(c.remote.test) = %v, %v", addrs, err)
	}
	// An MX target that is an alias is followed.
	if addrs, err := r.LookupHost(ctx, "mxalias.remote.test"); err != nil || len(addrs) != 1 || addrs[0].String() != "127.0.0.11" {
		t.Errorf("LookupHost(mxalias.remote.test) = %v, %v", addrs, err)
	}
	// An IP address is not a host name (RFC 5321 5.1).
	if _, err := r.LookupHost(ctx, "127.0.0.11"); !queue.IsPermanent(err) {
		t.Errorf("LookupHost(IP) = %v, want a permanent error", err)
	}
	if _, err := r.LookupHost(ctx, "nothere.remote.test"); !queue.IsPermanent(err) {
		t.Errorf("LookupHost(nonexistent) = %v, want a permanent error", err)
	}

	// A server that does not answer is a temporary failure.
	dead := &Resolver{Servers: []string{"127.0.0.1:1"}, Timeout: 500 * time.Millisecond}
	_, err := dead.LookupMX(ctx, "remote.test")
	var e *Error
	if !errors.As(err, &e) || e.Perm || e.Code != "4.4.3" {
		t.Errorf("LookupMX with no server = %v, want temporary 4.4.3", err)
	}
}

func TestReplyError(t *testing.T) {
	for _, c := range []struct {
		err  error
		perm bool
		code string
	}{
		{&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}, true, "5.1.1"},
		{&smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "later"}, false, "4.3.0"},
		{&smtp.SMTPError{Code: 552, EnhancedCode: smtp.NoEnhancedCode, Message: "too big"}, true, "5.0.0"},
		{&smtp.SMTPError{Code: 421, EnhancedCode: smtp.NoEnhancedCode, Message: "bye"}, false, "4.0.0"},
		// The reply code decides the class (RFC 3463 2).
		{&smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{5, 2, 1}, Message: "mixed"}, false, "4.2.1"},
		{errors.New("connection reset"), false, "4.4.2"},
	} {
		e := replyError("mx.test", "RCPT", c.err)
		if e.Perm != c.perm || e.Code != c.code {
			t.Errorf("replyError(%v) = perm %v code %s; want %v %s", c.err, e.Perm, e.Code, c.perm, c.code)
		}
	}
}
