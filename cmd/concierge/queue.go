package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"concierge/appliance"
	"concierge/smtpd/dsn"
	"concierge/smtpd/queue"
)

// queue lists and manages outbound mail. Changes reach a running server
// as request files in DATA/queue/req/, which it carries out within a
// second (queue.RequestPoll); without a server, the files are changed here
// and the next start acts on them.
func (c *cli) queue(args []string) error {
	verb, args, err := c.sub("queue", args, map[string]string{
		"list":  "                (every queued message with its recipients, attempts and last error)",
		"show":  "ID",
		"flush": "[DOMAIN]        (try every message, or those for DOMAIN, now)",
		"retry": "ID              (try one message now)",
		"del":   "ID              (delete a message without telling its sender)",
	})
	if err != nil {
		return err
	}
	// Not queue.Open: that clears tmp/, which a running server is using.
	q := &queue.Queue{Dir: filepath.Join(c.store.Dir, "queue")}
	switch verb {
	case "list":
		if err := nargs(args, 0, 0, "no arguments"); err != nil {
			return err
		}
		return c.queueList(q)
	case "show":
		if err := nargs(args, 1, 1, "one ID"); err != nil {
			return err
		}
		return c.queueShow(q, args[0])
	case "flush":
		if err := nargs(args, 0, 1, "at most one DOMAIN"); err != nil {
			return err
		}
		dom := ""
		if len(args) == 1 {
			dom = strings.ToLower(args[0])
		}
		return c.queueChange(q, queue.ReqFlush, dom)
	case "retry", "del":
		if err := nargs(args, 1, 1, "one ID"); err != nil {
			return err
		}
		if _, err := q.Load(args[0]); err != nil {
			return fmt.Errorf("no queued message %q", args[0])
		}
		return c.queueChange(q, verb, args[0])
	}
	return nil
}

func (c *cli) envelopes(q *queue.Queue) ([]*queue.Envelope, error) {
	ids, err := q.List()
	if err != nil {
		return nil, err
	}
	var envs []*queue.Envelope
	for _, id := range ids {
		if env, err := q.Load(id); err == nil {
			envs = append(envs, env)
		}
	}
	slices.SortFunc(envs, func(a, b *queue.Envelope) int { return a.Received.Compare(b.Received) })
	return envs, nil
}

func ago(t time.Time) string {
	return time.Since(t).Round(time.Second).String()
}

func nextAttempt(env *queue.Envelope) string {
	if d := time.Until(env.NextAttempt); d > 0 {
		return "next attempt in " + d.Round(time.Second).String()
	}
	return "next attempt now"
}

func (c *cli) queueList(q *queue.Queue) error {
	envs, err := c.envelopes(q)
	if err != nil {
		return err
	}
	if len(envs) == 0 {
		fmt.Fprintln(c.stdout, "the queue is empty")
		return nil
	}
	for _, env := range envs {
		fmt.Fprintf(c.stdout, "%s  %d bytes  from <%s>  queued %s ago  %s\n", env.ID, env.Size, env.From, ago(env.Received), nextAttempt(env))
		for _, rc := range env.Recipients {
			c.printRecipient(rc)
		}
	}
	fmt.Fprintf(c.stdout, "%d message(s)\n", len(envs))
	return nil
}

func (c *cli) printRecipient(rc queue.Recipient) {
	fmt.Fprintf(c.stdout, "    %-32s %-9s attempts %d", rc.Addr, rc.State, rc.Attempts)
	if rc.LastError != "" {
		fmt.Fprintf(c.stdout, "  last error: %s", rc.LastError)
	}
	fmt.Fprintln(c.stdout)
}

func (c *cli) queueShow(q *queue.Queue, id string) error {
	env, err := q.Load(id)
	if err != nil {
		return fmt.Errorf("no queued message %q", id)
	}
	fmt.Fprintf(c.stdout, "ID:        %s\nFrom:      <%s>\nReceived:  %s (%s ago)\nSize:      %d bytes\nNext:      %s\n",
		env.ID, env.From, env.Received.Format(time.RFC1123Z), ago(env.Received), env.Size, nextAttempt(env))
	if env.User != "" {
		fmt.Fprintf(c.stdout, "User:      %s\n", env.User)
	}
	if env.Warned {
		fmt.Fprintln(c.stdout, "The sender was told the message is delayed.")
	}
	fmt.Fprintln(c.stdout, "Recipients:")
	for _, rc := range env.Recipients {
		c.printRecipient(rc)
		if !rc.LastTry.IsZero() {
			fmt.Fprintf(c.stdout, "        last try %s ago", ago(rc.LastTry))
			if rc.RemoteMTA != "" {
				fmt.Fprintf(c.stdout, " at %s", rc.RemoteMTA)
			}
			fmt.Fprintln(c.stdout)
		}
	}
	f, err := os.Open(q.MsgPath(id))
	if err != nil {
		return err
	}
	defer f.Close()
	hdr, _ := dsn.Headers(io.NewSectionReader(f, env.BodyOffset, 1<<62))
	fmt.Fprintf(c.stdout, "Headers:\n%s", strings.ReplaceAll(string(hdr), "\r\n", "\n"))
	return nil
}

// queueChange asks a running server to flush, retry or delete, or does it
// on the files when no server runs.
func (c *cli) queueChange(q *queue.Queue, kind, arg string) error {
	sent, err := appliance.QueueRequest(c.store.Dir, kind, arg)
	if err != nil {
		return err
	}
	if sent {
		fmt.Fprintf(c.stdout, "asked the running server to %s %s\n", kind, arg)
		return nil
	}
	if kind == queue.ReqDel {
		if err := q.Remove(arg); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "deleted %s\n", arg)
		return nil
	}
	envs, err := c.envelopes(q)
	if err != nil {
		return err
	}
	n := 0
	for _, env := range envs {
		match := kind == queue.ReqRetry && env.ID == arg ||
			kind == queue.ReqFlush && (arg == "" || slices.ContainsFunc(env.Recipients, func(rc queue.Recipient) bool {
				return rc.State == queue.Pending && queue.Domain(rc.Addr) == arg
			}))
		if !match {
			continue
		}
		env.NextAttempt = time.Time{}
		if err := q.Save(env); err != nil {
			return err
		}
		n++
	}
	fmt.Fprintf(c.stdout, "no server is running: %d message(s) will be tried as soon as it starts\n", n)
	return nil
}
