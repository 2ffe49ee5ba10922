package smtpd

import (
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"concierge/smtpd/queue"
	"concierge/smtpd/store"
)

// mailDSN is the RFC 3461 part of MAIL FROM: RET (4.3) and ENVID (4.4).
type mailDSN struct{ ret, envID string }

func newMailDSN(o *smtp.MailOptions) mailDSN {
	if o == nil {
		return mailDSN{}
	}
	return mailDSN{ret: string(o.Return), envID: o.EnvelopeID}
}

// rcptDSN is the RFC 3461 part of RCPT TO: NOTIFY (4.1) and ORCPT (4.2).
type rcptDSN struct{ notify, orcpt string }

func newRcptDSN(o *smtp.RcptOptions) rcptDSN {
	if o == nil {
		return rcptDSN{}
	}
	var d rcptDSN
	var n []string
	for _, v := range o.Notify {
		n = append(n, string(v))
	}
	d.notify = strings.Join(n, ",")
	if o.OriginalRecipient != "" {
		d.orcpt = strings.ToLower(string(o.OriginalRecipientType)) + ";" + o.OriginalRecipient
	}
	return d
}

// delivery says where the message of the transaction goes: the local
// recipients' Maildirs, and the queue envelope for remote ones (nil when
// there are none). Addresses reached through an alias
// of ours are marked Forwarded (their sender is rewritten when they go
// out, SRS), and every queued recipient keeps its DSN parameters; one
// that an alias expanded gets the alias as ORCPT when the client gave
// none (RFC 3461 5.2.7).
func (ss *session) delivery(set *Settings, bodyOffset int64) store.Delivery {
	d := store.Delivery{DropDir: set.DropDir}
	env := &queue.Envelope{From: ss.from, Received: time.Now().UTC(), BodyOffset: bodyOffset, User: ss.user,
		Ret: ss.dsn.ret, EnvID: ss.dsn.envID}
	for _, rc := range ss.rcpts {
		for _, u := range rc.users {
			if md := set.Dir.Maildir(u); !slices.Contains(d.Maildirs, md) {
				d.Maildirs = append(d.Maildirs, md)
			}
		}
		forwarded := set.Dir.IsLocalDomain(queue.Domain(rc.addr))
		for _, ra := range rc.remote {
			if slices.ContainsFunc(env.Recipients, func(q queue.Recipient) bool { return q.Addr == ra }) {
				continue
			}
			qr := queue.Recipient{Addr: ra, State: queue.Pending, Forwarded: forwarded, Notify: rc.dsn.notify, ORcpt: rc.dsn.orcpt}
			if forwarded && qr.ORcpt == "" {
				qr.ORcpt = "rfc822;" + rc.addr
			}
			env.Recipients = append(env.Recipients, qr)
		}
	}
	if len(env.Recipients) > 0 {
		d.Queue = env
	}
	return d
}

// queued counts the recipients a delivery queues.
func queued(d store.Delivery) int {
	if d.Queue == nil {
		return 0
	}
	return len(d.Queue.Recipients)
}
