// Command concierge is the firmware of the Concierge office appliance: it
// serves mail (SMTP, POP3) and NetBIOS names for a small office. Its other
// subcommands are a thin client of the control API (appliance/control):
// each is one op, sent to the running server, or run on the data
// directory when no server runs.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"concierge/appliance"
	"concierge/appliance/boot"
	"concierge/appliance/config"
	"concierge/appliance/control"
)

const usage = `usage: concierge [-data DIR] COMMAND [ARGS]

Commands:
  serve                               run every service in the foreground
  domain add DOMAIN [--alias-of PRIMARY]
  domain del DOMAIN | domain list
  user add NAME | user passwd NAME    (password read from standard input)
  user del NAME | user list
  alias add ADDRESS TARGET...         (ADDRESS "@domain" is a catch-all)
  alias del ADDRESS [TARGET...] | alias list
  relay add CIDR | relay del CIDR | relay list
  smarthost set HOST[:PORT] [USER] [--tls MODE] | smarthost off   (password from standard input)
  config show | config check | config keys | config reload
  config get KEY | config set KEY VALUE
  nbt names                           NetBIOS names and the WINS table
  nbt sessions | send NAME MESSAGE    NetBIOS sessions and counters; a datagram to a name
  nbt messages                        datagrams received on the box's messenger name
  dhcp leases | dhcp set KEY=VALUE... the LAN's DHCP server (off by default)
  network show | network confirm      addresses (settings and live), confirm a change on trial
  network set IF ADDRESS/PREFIX [--gateway IP] [--dns IP,IP]
  queue list | queue show ID | queue flush [DOMAIN] | queue retry ID | queue del ID
  link status | link up | link down
  status                              services, addresses, counters (server running)
  time                                the clock: synchronized with which time server, offset, last error
  log [N]                             the server's last N log lines
  backup > FILE | restore FILE        the whole configuration as one file
  admin passwd                        the setup page's password (from standard input)
  restart                             stop and start every service
  reboot                              stop the services and restart the box (on the box)
  poweroff                            stop the services and switch the box off (on the box)
  firmware status | apply [-boot DIR] FILE | version   the firmware: slots, install an update for a trial boot
  wait KIND [--after N]               wait for an event: settings-applied, names-claimed
  check dns                           MX, addresses, reverse DNS, banner, port 25, relaying

With a server running, every command goes to it over DATA/control.sock and
returns once the change is in force; without one, it works on the data
directory (the next start applies it).

Run "concierge COMMAND -h" for help on one command.
`

func main() {
	if os.Getpid() == 1 {
		// The firmware's init (see appliance/boot).
		os.Exit(boot.Main())
	}
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("concierge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	data := fs.String("data", defaultDataDir(), "the data directory (settings, mailboxes, queue)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	c := &cli{dir: *data, stdin: stdin, stdout: stdout, stderr: stderr}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	var err error
	switch cmd {
	case "serve":
		err = c.serve(rest)
	case "domain":
		err = c.domain(rest)
	case "user":
		err = c.user(rest)
	case "alias":
		err = c.alias(rest)
	case "relay":
		err = c.relay(rest)
	case "config":
		err = c.config(rest)
	case "nbt":
		err = c.nbt(rest)
	case "dhcp":
		err = c.dhcp(rest)
	case "network":
		err = c.network(rest)
	case "queue":
		err = c.queue(rest)
	case "link":
		err = c.link(rest)
	case "smarthost":
		err = c.smarthost(rest)
	case "status":
		err = c.status(rest)
	case "log":
		err = c.log(rest)
	case "backup":
		err = c.backup(rest)
	case "restore":
		err = c.restore(rest)
	case "admin":
		err = c.admin(rest)
	case "restart":
		err = c.restart(rest)
	case "reboot":
		err = c.stopBox(control.OpReboot, "the box is rebooting", rest)
	case "poweroff":
		err = c.stopBox(control.OpPowerOff, "the box is switching off", rest)
	case "wait":
		err = c.wait(rest)
	case "firmware":
		err = c.firmware(rest)
	case "check":
		err = c.check(rest)
	case "time":
		err = c.time(rest)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "concierge: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "concierge %s: %v\n", cmd, err)
		return 2
	default:
		fmt.Fprintf(stderr, "concierge %s: %v\n", cmd, err)
		return 1
	}
}

func defaultDataDir() string {
	if d := os.Getenv("CONCIERGE_DATA"); d != "" {
		return d
	}
	return "/var/lib/concierge"
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

type cli struct {
	dir            string
	caller         control.Caller
	stdin          io.Reader
	stdout, stderr io.Writer
}

// call runs one op: on the running server, or on the data directory.
func (c *cli) call(op string, args control.Args, result any) error {
	if c.caller == nil {
		caller, err := control.Open(c.dir)
		if err != nil {
			return err
		}
		c.caller = caller
	}
	return c.caller.Call(context.Background(), op, args, result)
}

// sub parses "VERB args" with per-verb help.
func (c *cli) sub(cmd string, args []string, verbs map[string]string) (string, []string, error) {
	help := func() {
		fmt.Fprintf(c.stdout, "usage:\n")
		var vs []string
		for v := range verbs {
			vs = append(vs, v)
		}
		sort.Strings(vs)
		for _, v := range vs {
			fmt.Fprintf(c.stdout, "  concierge %s %s %s\n", cmd, v, verbs[v])
		}
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		help()
		if len(args) == 0 {
			return "", nil, usageError{"missing subcommand"}
		}
		return "", nil, flag.ErrHelp
	}
	if _, ok := verbs[args[0]]; !ok {
		help()
		return "", nil, usageError{fmt.Sprintf("unknown subcommand %q", args[0])}
	}
	for _, a := range args[1:] {
		if a == "-h" || a == "--help" {
			fmt.Fprintf(c.stdout, "usage: concierge %s %s %s\n", cmd, args[0], verbs[args[0]])
			return "", nil, flag.ErrHelp
		}
	}
	return args[0], args[1:], nil
}

func nargs(args []string, min, max int, what string) error {
	if len(args) < min || (max >= 0 && len(args) > max) {
		return usageError{"expected " + what}
	}
	return nil
}

func (c *cli) domain(args []string) error {
	verb, args, err := c.sub("domain", args, map[string]string{
		"add":  "DOMAIN [--alias-of PRIMARY]   (the first domain added is the primary one)",
		"del":  "DOMAIN",
		"list": "",
	})
	if err != nil {
		return err
	}
	switch verb {
	case "add":
		var aliasOf string
		var rest []string
		for i := 0; i < len(args); i++ {
			a := args[i]
			switch {
			case a == "--alias-of" || a == "-alias-of":
				if i+1 >= len(args) {
					return usageError{"--alias-of needs a domain"}
				}
				aliasOf = args[i+1]
				i++
			case strings.HasPrefix(a, "--alias-of="):
				aliasOf = strings.TrimPrefix(a, "--alias-of=")
			default:
				rest = append(rest, a)
			}
		}
		if err := nargs(rest, 1, 1, "one DOMAIN"); err != nil {
			return err
		}
		return c.call(control.OpDomainAdd, control.Args{"domain": rest[0], "alias_of": aliasOf}, nil)
	case "del":
		if err := nargs(args, 1, 1, "one DOMAIN"); err != nil {
			return err
		}
		return c.call(control.OpDomainDel, control.Args{"domain": args[0]}, nil)
	default:
		var doms []control.DomainEntry
		if err := c.call(control.OpDomainList, nil, &doms); err != nil {
			return err
		}
		for _, d := range doms {
			line := d.Name
			if d.AliasOf != "" {
				line += " (alias of " + d.AliasOf + ")"
			}
			if d.Primary {
				line += " (primary)"
			}
			fmt.Fprintln(c.stdout, line)
		}
		return nil
	}
}

func (c *cli) user(args []string) error {
	verb, args, err := c.sub("user", args, map[string]string{
		"add":    "NAME   (password from standard input)",
		"passwd": "NAME   (password from standard input)",
		"del":    "NAME",
		"list":   "",
	})
	if err != nil {
		return err
	}
	switch verb {
	case "add", "passwd":
		if err := nargs(args, 1, 1, "one NAME"); err != nil {
			return err
		}
		pw, err := c.readPassword()
		if err != nil {
			return err
		}
		op := control.OpUserAdd
		if verb == "passwd" {
			op = control.OpUserPasswd
		}
		return c.call(op, control.Args{"name": args[0], "password": pw}, nil)
	case "del":
		if err := nargs(args, 1, 1, "one NAME"); err != nil {
			return err
		}
		return c.call(control.OpUserDel, control.Args{"name": args[0]}, nil)
	default:
		var users []control.UserEntry
		if err := c.call(control.OpUserList, nil, &users); err != nil {
			return err
		}
		for _, u := range users {
			fmt.Fprintf(c.stdout, "%s\t%s\n", u.Name, strings.Join(u.Addresses, " "))
		}
		return nil
	}
}

// readPassword reads one line from standard input, without echo when it
// is a terminal (then asking twice).
func (c *cli) readPassword() (string, error) {
	f, isFile := c.stdin.(*os.File)
	if isFile {
		if old, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
			noEcho := *old
			noEcho.Lflag &^= unix.ECHO
			unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, &noEcho)
			defer unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, old)
			r := bufio.NewReader(f)
			fmt.Fprint(c.stderr, "Password: ")
			p1, _ := r.ReadString('\n')
			fmt.Fprint(c.stderr, "\nAgain: ")
			p2, _ := r.ReadString('\n')
			fmt.Fprintln(c.stderr)
			if p1 != p2 {
				return "", errors.New("password: the two entries differ")
			}
			return strings.TrimRight(p1, "\r\n"), nil
		}
	}
	line, err := bufio.NewReader(c.stdin).ReadString('\n')
	if err != nil && (err != io.EOF || line == "") {
		return "", errors.New("password: expected one line on standard input")
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func (c *cli) alias(args []string) error {
	verb, args, err := c.sub("alias", args, map[string]string{
		"add":  "ADDRESS TARGET...   (targets: user names or remote addresses; ADDRESS @domain is a catch-all)",
		"del":  "ADDRESS [TARGET...]",
		"list": "",
	})
	if err != nil {
		return err
	}
	switch verb {
	case "add":
		if err := nargs(args, 2, -1, "ADDRESS TARGET..."); err != nil {
			return err
		}
		return c.call(control.OpAliasAdd, control.Args{"address": args[0], "targets": strings.Join(args[1:], ",")}, nil)
	case "del":
		if err := nargs(args, 1, -1, "ADDRESS [TARGET...]"); err != nil {
			return err
		}
		return c.call(control.OpAliasDel, control.Args{"address": args[0], "targets": strings.Join(args[1:], ",")}, nil)
	default:
		var aliases []control.AliasEntry
		if err := c.call(control.OpAliasList, nil, &aliases); err != nil {
			return err
		}
		for _, a := range aliases {
			fmt.Fprintf(c.stdout, "%s\t%s\n", a.Address, strings.Join(a.Targets, " "))
		}
		return nil
	}
}

func (c *cli) relay(args []string) error {
	verb, args, err := c.sub("relay", args, map[string]string{
		"add":  "CIDR   (a network allowed to relay without AUTH, e.g. 10.0.0.0/24)",
		"del":  "CIDR",
		"list": "",
	})
	if err != nil {
		return err
	}
	switch verb {
	case "add":
		if err := nargs(args, 1, 1, "one CIDR"); err != nil {
			return err
		}
		return c.call(control.OpRelayAdd, control.Args{"cidr": args[0]}, nil)
	case "del":
		if err := nargs(args, 1, 1, "one CIDR"); err != nil {
			return err
		}
		return c.call(control.OpRelayDel, control.Args{"cidr": args[0]}, nil)
	default:
		var nets []string
		if err := c.call(control.OpRelayList, nil, &nets); err != nil {
			return err
		}
		for _, n := range nets {
			fmt.Fprintln(c.stdout, n)
		}
		return nil
	}
}

func (c *cli) config(args []string) error {
	verb, args, err := c.sub("config", args, map[string]string{
		"show":   "           print the configuration file (secrets hidden)",
		"check":  "           list every error in the configuration file",
		"keys":   "           list the keys config set takes",
		"get":    "KEY         (secrets read as \"(set, hidden)\")",
		"set":    "KEY VALUE   (lists: comma-separated; durations: 30s, 5m, 2h)",
		"reload": "           apply a hand-edited configuration file to the running server",
	})
	if err != nil {
		return err
	}
	switch verb {
	case "check":
		var ok control.ConfigCheck
		if err := c.call(control.OpConfigCheck, nil, &ok); err != nil {
			return err
		}
		fmt.Fprintln(c.stdout, ok.Path+": ok")
	case "set":
		if err := nargs(args, 2, 2, "KEY VALUE"); err != nil {
			return err
		}
		return c.call(control.OpConfigSet, control.Args{"key": args[0], "value": args[1]}, nil)
	case "reload":
		var a control.Applied
		if err := c.call(control.OpConfigReload, nil, &a); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "settings applied (generation %d)\n", a.Generation)
	case "get":
		if err := nargs(args, 1, 1, "one KEY"); err != nil {
			return err
		}
		var k control.ConfigKey
		if err := c.call(control.OpConfigGet, control.Args{"key": args[0]}, &k); err != nil {
			return err
		}
		fmt.Fprintln(c.stdout, k.Value)
	case "keys":
		var keys []control.ConfigKey
		if err := c.call(control.OpConfigKeys, nil, &keys); err != nil {
			return err
		}
		for _, k := range keys {
			fmt.Fprintf(c.stdout, "%s = %s\n", k.Key, k.Value)
		}
	default:
		var cfg config.Config
		if err := c.call(control.OpSettingsGet, nil, &cfg); err != nil {
			return err
		}
		c.stdout.Write(cfg.Marshal())
	}
	return nil
}

func (c *cli) serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	logLevel := fs.String("log", "info", "log level: debug, info, warn or error")
	applyNet := fs.Bool("apply-network", false, "set the network interfaces from the settings (as network.apply does)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return appliance.Serve(ctx, appliance.Options{DataDir: c.dir, LogLevel: *logLevel, ApplyNetwork: *applyNet, Stdout: c.stdout, Stderr: c.stderr})
}
