package smtpd

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"concierge/internal/mailaddr"
	"concierge/smtpd/queue"
)

// forwardDir is staticDir with an alias that forwards outside.
type forwardDir struct{ staticDir }

func (d forwardDir) Lookup(a mailaddr.Address) ([]string, []string, bool) {
	if a.Local == "fwd" {
		return []string{"bob"}, []string{"partner@remote.test"}, true
	}
	return d.staticDir.Lookup(a)
}

// RFC 3461: the server offers DSN and keeps RET, ENVID, NOTIFY and ORCPT
// in the queue envelope; a recipient reached through an alias is marked
// forwarded and gets the alias as ORCPT.
func TestDSNParametersQueued(t *testing.T) {
	s, dir := newTestServer(t)
	set := *s.settings.Load()
	set.Dir = forwardDir{staticDir{dir}}
	set.RelayNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	s.Configure(&set)
	out := dialog(t, s, "EHLO c.test\r\nMAIL FROM:<a@remote.test> RET=HDRS ENVID=QQ314159\r\n"+
		"RCPT TO:<x@remote.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;x+2Borig@remote.test\r\n"+
		"RCPT TO:<y@remote.test> NOTIFY=NEVER\r\n"+
		"RCPT TO:<fwd@example.test>\r\n"+
		"DATA\r\nSubject: t\r\n\r\nbody\r\n.\r\nQUIT\r\n")
	if !strings.Contains(out, "250-DSN\r\n") {
		t.Errorf("DSN not offered:\n%s", out)
	}
	if strings.Count(out, "250 2.") < 5 || !strings.Contains(out, "queued") {
		t.Fatalf("transaction refused:\n%s", out)
	}
	q := &queue.Queue{Dir: filepath.Join(dir, "queue")}
	ids, _ := q.List()
	if len(ids) != 1 {
		t.Fatalf("%d messages queued, want 1", len(ids))
	}
	env, err := q.Load(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if env.Ret != "HDRS" || env.EnvID != "QQ314159" {
		t.Errorf("envelope RET %q ENVID %q", env.Ret, env.EnvID)
	}
	want := []queue.Recipient{
		{Addr: "x@remote.test", State: queue.Pending, Notify: "SUCCESS,DELAY", ORcpt: "rfc822;x+orig@remote.test"},
		{Addr: "y@remote.test", State: queue.Pending, Notify: "NEVER"},
		{Addr: "partner@remote.test", State: queue.Pending, Forwarded: true, ORcpt: "rfc822;fwd@example.test"},
	}
	if len(env.Recipients) != len(want) {
		t.Fatalf("recipients %+v", env.Recipients)
	}
	for i, w := range want {
		if env.Recipients[i] != w {
			t.Errorf("recipient %d = %+v, want %+v", i, env.Recipients[i], w)
		}
	}
}
