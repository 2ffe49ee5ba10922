package main

import (
	"fmt"
	"strings"
	"time"

	"concierge/appliance/control"
)

// queue lists and manages outbound mail through the queue ops of the
// control API: with a server running, its runner tries the messages at
// once; without one, they are made on the files and the next start acts
// on them.
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
	switch verb {
	case "list":
		if err := nargs(args, 0, 0, "no arguments"); err != nil {
			return err
		}
		return c.queueList()
	case "show":
		if err := nargs(args, 1, 1, "one ID"); err != nil {
			return err
		}
		return c.queueShow(args[0])
	case "flush":
		if err := nargs(args, 0, 1, "at most one DOMAIN"); err != nil {
			return err
		}
		dom := ""
		if len(args) == 1 {
			dom = args[0]
		}
		return c.queueChange(control.OpQueueFlush, control.Args{"domain": dom}, "flush "+dom)
	case "retry":
		if err := nargs(args, 1, 1, "one ID"); err != nil {
			return err
		}
		return c.queueChange(control.OpQueueRetry, control.Args{"id": args[0]}, "retry "+args[0])
	case "del":
		if err := nargs(args, 1, 1, "one ID"); err != nil {
			return err
		}
		return c.queueChange(control.OpQueueDel, control.Args{"id": args[0]}, "del "+args[0])
	}
	return nil
}

func (c *cli) queueChange(op string, args control.Args, what string) error {
	var ch control.QueueChange
	if err := c.call(op, args, &ch); err != nil {
		return err
	}
	switch {
	case ch.Live:
		fmt.Fprintf(c.stdout, "asked the running server to %s\n", strings.TrimSpace(what))
		return nil
	case op == control.OpQueueDel:
		fmt.Fprintf(c.stdout, "deleted %s\n", args["id"])
		return nil
	}
	fmt.Fprintf(c.stdout, "no server is running: %d message(s) will be tried as soon as it starts\n", ch.Messages)
	return nil
}

func ago(t time.Time) string {
	return time.Since(t).Round(time.Second).String()
}

func nextAttempt(m control.QueuedMessage) string {
	if d := time.Until(m.NextAttempt); d > 0 {
		return "next attempt in " + d.Round(time.Second).String()
	}
	return "next attempt now"
}

func (c *cli) queueList() error {
	var msgs []control.QueuedMessage
	if err := c.call(control.OpQueueList, nil, &msgs); err != nil {
		return err
	}
	if len(msgs) == 0 {
		fmt.Fprintln(c.stdout, "the queue is empty")
		return nil
	}
	for _, m := range msgs {
		fmt.Fprintf(c.stdout, "%s  %d bytes  from <%s>  queued %s ago  %s\n", m.ID, m.Size, m.From, ago(m.Received), nextAttempt(m))
		for _, rc := range m.Recipients {
			c.printRecipient(rc)
		}
	}
	fmt.Fprintf(c.stdout, "%d message(s)\n", len(msgs))
	return nil
}

func (c *cli) printRecipient(rc control.QueuedRecipient) {
	fmt.Fprintf(c.stdout, "    %-32s %-9s attempts %d", rc.Addr, rc.State, rc.Attempts)
	if rc.LastError != "" {
		fmt.Fprintf(c.stdout, "  last error: %s", rc.LastError)
	}
	fmt.Fprintln(c.stdout)
}

func (c *cli) queueShow(id string) error {
	var m control.QueuedMessage
	if err := c.call(control.OpQueueShow, control.Args{"id": id}, &m); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "ID:        %s\nFrom:      <%s>\nReceived:  %s (%s ago)\nSize:      %d bytes\nNext:      %s\n",
		m.ID, m.From, m.Received.Format(time.RFC1123Z), ago(m.Received), m.Size, nextAttempt(m))
	if m.User != "" {
		fmt.Fprintf(c.stdout, "User:      %s\n", m.User)
	}
	if m.Warned {
		fmt.Fprintln(c.stdout, "The sender was told the message is delayed.")
	}
	fmt.Fprintln(c.stdout, "Recipients:")
	for _, rc := range m.Recipients {
		c.printRecipient(rc)
		if !rc.LastTry.IsZero() {
			fmt.Fprintf(c.stdout, "        last try %s ago", ago(rc.LastTry))
			if rc.RemoteMTA != "" {
				fmt.Fprintf(c.stdout, " at %s", rc.RemoteMTA)
			}
			fmt.Fprintln(c.stdout)
		}
	}
	fmt.Fprintf(c.stdout, "Headers:\n%s", m.Headers)
	return nil
}
