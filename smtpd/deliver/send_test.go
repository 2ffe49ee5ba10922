package deliver

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"concierge/internal/testnet"
	"concierge/smtpd/queue"
)

// recorder is a go-smtp backend that keeps what it was told.
type recorder struct {
	mu    sync.Mutex
	mail  []smtp.MailOptions
	rcpts []smtp.RcptOptions
	to    []string
	msgs  int
}

func (r *recorder) NewSession(c *smtp.Conn) (smtp.Session, error) { return &recSession{r}, nil }

type recSession struct{ r *recorder }

func (s *recSession) Mail(from string, o *smtp.MailOptions) error {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	if o == nil {
		o = &smtp.MailOptions{}
	}
	s.r.mail = append(s.r.mail, *o)
	return nil
}

func (s *recSession) Rcpt(to string, o *smtp.RcptOptions) error {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	if o == nil {
		o = &smtp.RcptOptions{}
	}
	s.r.rcpts = append(s.r.rcpts, *o)
	s.r.to = append(s.r.to, to)
	return nil
}

func (s *recSession) Data(r io.Reader) error {
	io.Copy(io.Discard, r)
	s.r.mu.Lock()
	s.r.msgs++
	s.r.mu.Unlock()
	return nil
}
func (s *recSession) Reset()        {}
func (s *recSession) Logout() error { return nil }

// startMX runs a go-smtp server at addr ("127.0.0.11:0") and returns its
// port.
func startMX(t *testing.T, addr string, dsn bool) (*recorder, string) {
	t.Helper()
	rec := &recorder{}
	srv := smtp.NewServer(rec)
	srv.Domain = "mx.remote.test"
	srv.EnableDSN = dsn
	srv.AllowInsecureAuth = true
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return rec, port
}

func job(rcpts ...queue.Recipient) *queue.Job {
	body := "Subject: t\r\n\r\nhello\r\n"
	return &queue.Job{Domain: "remote.test", From: "bob@example.test", Rcpts: rcpts, Ret: "HDRS", EnvID: "env-1",
		Body: io.NewSectionReader(strings.NewReader(body), 0, int64(len(body)))}
}

// The DSN parameters go on to a next hop that offers DSN (RFC 3461
// 5.2.1); to one without, the mail goes without them and the result says
// "relayed" (RFC 3461 5.2.2).
func TestSendPassesDSNParameters(t *testing.T) {
	dnsAddr := startDNS(t)
	for _, dsn := range []bool{true, false} {
		rec, port := startMX(t, "127.0.0.11:0", dsn)
		tr := &Transport{Hostname: "mail.example.test", Port: port, Resolver: &Resolver{Servers: []string{dnsAddr}, Timeout: time.Second},
			LocalAddrs: func() []netip.Addr { return nil }, DialTimeout: time.Second}
		res := tr.Send(context.Background(), job(
			queue.Recipient{Addr: "x@remote.test", Notify: "SUCCESS,FAILURE", ORcpt: "rfc822;alias@example.test"},
			queue.Recipient{Addr: "y@remote.test"}))
		tr.CloseIdle()
		for i, r := range res {
			if r.Err != nil {
				t.Fatalf("dsn=%v: recipient %d: %v", dsn, i, r.Err)
			}
			if want := map[bool]string{true: "", false: "relayed"}[dsn]; r.Success != want {
				t.Errorf("dsn=%v: Success %q, want %q", dsn, r.Success, want)
			}
		}
		rec.mu.Lock()
		if len(rec.mail) != 1 || len(rec.rcpts) != 2 || rec.msgs != 1 {
			t.Fatalf("dsn=%v: %d MAIL, %d RCPT, %d messages", dsn, len(rec.mail), len(rec.rcpts), rec.msgs)
		}
		m, r0, r1 := rec.mail[0], rec.rcpts[0], rec.rcpts[1]
		if dsn {
			if m.Return != smtp.DSNReturnHeaders || m.EnvelopeID != "env-1" {
				t.Errorf("MAIL options %+v, want RET=HDRS ENVID=env-1", m)
			}
			if len(r0.Notify) != 2 || r0.Notify[0] != smtp.DSNNotifySuccess || r0.Notify[1] != smtp.DSNNotifyFailure ||
				r0.OriginalRecipientType != smtp.DSNAddressTypeRFC822 || r0.OriginalRecipient != "alias@example.test" {
				t.Errorf("RCPT options %+v", r0)
			}
			if len(r1.Notify) != 0 || r1.OriginalRecipient != "" {
				t.Errorf("second RCPT got options it was not given: %+v", r1)
			}
		} else if m.Return != "" || m.EnvelopeID != "" || len(r0.Notify) != 0 {
			t.Errorf("DSN parameters sent to a server without DSN: %+v %+v", m, r0)
		}
		rec.mu.Unlock()
	}
}

// Never to ourselves: an MX host with one of our addresses, or named like
// us, is not connected to, and with no better host the recipients fail
// with 5.4.6 (RFC 5321 5.1).
func TestSendNeverToSelf(t *testing.T) {
	dnsAddr := startDNS(t)
	rec, port := startMX(t, "127.0.0.11:0", true)
	res := func(tr *Transport) queue.Result {
		tr.Port, tr.DialTimeout = port, time.Second
		tr.Resolver = &Resolver{Servers: []string{dnsAddr}, Timeout: time.Second}
		return tr.Send(context.Background(), job(queue.Recipient{Addr: "x@remote.test"}))[0]
	}
	isLoop := func(r queue.Result) bool {
		var e *Error
		return errors.As(r.Err, &e) && e.Perm && e.Code == "5.4.6"
	}
	// Every MX host of remote.test is on 127/8: ours by default.
	if r := res(&Transport{Hostname: "mail.example.test"}); !isLoop(r) {
		t.Errorf("MX on a loopback address: %v, want a 5.4.6 loop", r.Err)
	}
	// One of our interface addresses.
	ours := func() []netip.Addr {
		return []netip.Addr{netip.MustParseAddr("127.0.0.11"), netip.MustParseAddr("127.0.0.12")}
	}
	if r := res(&Transport{Hostname: "mail.example.test", LocalAddrs: ours}); !isLoop(r) {
		t.Errorf("MX hosts with our addresses: %v, want a 5.4.6 loop", r.Err)
	}
	none := func() []netip.Addr { return nil }
	// Named like us, best preference: nothing better to try.
	if r := res(&Transport{Hostname: "b.remote.test", LocalAddrs: none}); !isLoop(r) {
		t.Errorf("we are the best MX: %v, want a 5.4.6 loop", r.Err)
	}
	rec.mu.Lock()
	if len(rec.mail) != 0 {
		t.Errorf("connected to ourselves: %d transactions", len(rec.mail))
	}
	rec.mu.Unlock()
	// Named like the worst MX: the better ones are tried and take it.
	if r := res(&Transport{Hostname: "c.remote.test", LocalAddrs: none}); r.Err != nil {
		t.Errorf("a better MX than us was not used: %v", r.Err)
	}
}

// An MX host that answers with an endless line, or with endless "250-"
// lines, is dropped after a few KB with a temporary error, not read until
// the command timeout while the box's memory grows.
func TestSendBoundsAHostileMXsReplies(t *testing.T) {
	dnsAddr := startDNS(t)
	for _, tc := range []struct {
		name, first, repeat, want string
	}{
		{"an endless greeting line", "220 ", "xxxxxxxxxxxxxxxx", "over 4096 octets"},
		{"an endless EHLO reply", "220 mx.amx.test ESMTP\r\n", "250-XFEATURE\r\n", "over 128 lines"},
	} {
		l, err := net.Listen("tcp", "127.0.0.14:0")
		if err != nil {
			t.Fatal(err)
		}
		sent := make(chan int64, 1)
		testnet.Serve(t, l, func(c net.Conn) {
			io.WriteString(c, tc.first)
			sent <- testnet.Flood(c, []byte(strings.Repeat(tc.repeat, 4096)))
		})
		_, port, _ := net.SplitHostPort(l.Addr().String())
		tr := &Transport{Hostname: "mail.example.test", Port: port, Resolver: &Resolver{Servers: []string{dnsAddr}, Timeout: time.Second},
			LocalAddrs: func() []netip.Addr { return nil }, DialTimeout: time.Second, CommandTimeout: 30 * time.Second}
		body := "Subject: t\r\n\r\nhello\r\n"
		res := tr.Send(context.Background(), &queue.Job{Domain: "amx.test", From: "bob@example.test",
			Rcpts: []queue.Recipient{{Addr: "x@amx.test"}}, Body: io.NewSectionReader(strings.NewReader(body), 0, int64(len(body)))})
		tr.CloseIdle()
		var e *Error
		if err := res[0].Err; !errors.As(err, &e) || e.Perm || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a temporary error saying %q", tc.name, err, tc.want)
		}
		// What the server got into the socket before we closed it: our
		// reads plus the two sockets' buffers (a few MB on loopback).
		if n := <-sent; n > 64<<20 {
			t.Errorf("%s: the server wrote %d MB before the box hung up", tc.name, n>>20)
		}
	}
}
