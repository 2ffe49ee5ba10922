// Package deliver sends queued mail to other servers: it finds the
// recipient domain's mail hosts with MX lookups (RFC 5321 5.1, null MX of
// RFC 7505) through github.com/miekg/dns, and runs SMTP transactions with
// go-smtp's client (EHLO, opportunistic STARTTLS of RFC 3207, SIZE of
// RFC 1870), or hands everything to a smarthost with AUTH (RFC 4954).
//
// Every failure is an *Error that says whether it is permanent (the
// recipient fails and the sender gets a bounce) or temporary (the queue
// retries later), with the enhanced status code of RFC 3463;
// queue.IsPermanent is the one test of it.
//
// RFC 3461 (DSN): the RET, ENVID, NOTIFY and ORCPT parameters a message
// came with are passed on to a next hop that offers DSN, which then owes
// the sender any notice of success. A next hop without DSN gets the
// message without them, and the result says "relayed": the queue then
// sends the success notice itself when one was asked for (RFC 3461 5.2.2).
//
// Mail is never sent to ourselves: an MX host that is this box (its host
// name, one of its addresses, or a loopback address) ends the list of
// hosts to try (RFC 5321 5.1), and when no better host is left the
// recipients fail with 5.4.6 (a routing loop, RFC 3463).
package deliver

import (
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-smtp"
)

// Error is a failed delivery to one recipient (or to every recipient of a
// transaction).
type Error struct {
	// Perm is true for failures that retrying will not fix (5xx replies,
	// NXDOMAIN, null MX).
	Perm bool
	// Code is the status code of RFC 3463, e.g. "5.1.1".
	Code string
	// Reply is the remote server's reply ("550 5.1.1 No such user"),
	// empty when the failure is ours (DNS, connection).
	Reply string
	// Remote is the host that gave the reply, if any.
	Remote string
	// Msg explains the failure for logs and bounces.
	Msg string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("deliver: ")
	if e.Remote != "" {
		b.WriteString(e.Remote + ": ")
	}
	b.WriteString(e.Msg)
	if e.Reply != "" {
		b.WriteString(": " + e.Reply)
	}
	return b.String()
}

// Permanent reports whether retrying cannot help.
func (e *Error) Permanent() bool { return e.Perm }

// Status is the RFC 3463 status code.
func (e *Error) Status() string { return e.Code }

// Diagnostic is the remote reply, for the Diagnostic-Code of a DSN.
func (e *Error) Diagnostic() string { return e.Reply }

// RemoteMTA is the host that answered, for the Remote-MTA of a DSN.
func (e *Error) RemoteMTA() string { return e.Remote }

func temporary(code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

func permanent(code, format string, args ...any) *Error {
	return &Error{Perm: true, Code: code, Msg: fmt.Sprintf(format, args...)}
}

// replyError turns a server reply into an Error: 5xx is permanent,
// anything else temporary.
func replyError(host, what string, err error) *Error {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return &Error{Code: "4.4.2", Remote: host, Msg: what + ": " + err.Error()}
	}
	e := &Error{Remote: host, Msg: what, Perm: se.Code >= 500 && se.Code < 600}
	code := se.EnhancedCode
	if code == smtp.NoEnhancedCode || code[0] == 0 {
		// RFC 3463: without an enhanced code, the class follows the reply.
		if e.Perm {
			e.Code = "5.0.0"
		} else {
			e.Code = "4.0.0"
		}
	} else {
		e.Code = fmt.Sprintf("%d.%d.%d", code[0], code[1], code[2])
	}
	if e.Perm && strings.HasPrefix(e.Code, "4.") || !e.Perm && strings.HasPrefix(e.Code, "5.") {
		// The reply code decides (RFC 3463 2: the class must match).
		class := "4"
		if e.Perm {
			class = "5"
		}
		e.Code = class + e.Code[1:]
	}
	msg := strings.ReplaceAll(se.Message, "\n", " ")
	e.Reply = fmt.Sprintf("%d %s %s", se.Code, e.Code, msg)
	return e
}
