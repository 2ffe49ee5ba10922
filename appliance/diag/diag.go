// Package diag checks that the Internet sees the box's mail domains the
// way it should, as an admin otherwise would with nslookup and an online
// MX checker: the MX records of each mail domain (RFC 5321 5.1, the null
// MX of RFC 7505, the implicit MX, no IP address or alias as target per
// RFC 2181 10.3), the addresses of each mail host against the box's
// public address, the reverse DNS (PTR) of that address against the name
// in the SMTP banner, whether port 25 answers on the box's Internet side,
// and whether the box relays mail for a stranger. Each finding is a Check
// with a status and a sentence for the office admin.
//
// The checks are pure logic over a Resolver (DNS) and a Prober (the SMTP
// tests); the appliance gives them the real ones.
package diag

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Limits of one run.
const (
	// RunTimeout bounds a whole run of the checks.
	RunTimeout = 25 * time.Second
	// QueryTimeout bounds one DNS query to one server.
	QueryTimeout = 3 * time.Second
	// ProbeTimeout bounds one SMTP test connection.
	ProbeTimeout = 8 * time.Second
	// SMTPPort is the port other mail servers deliver to.
	SMTPPort = 25
)

// RelayTestRecipient is the address the relay test asks the box to take
// mail for: a reserved domain (RFC 2606) that is never local and never
// receives mail. The test ends before DATA, so nothing is ever sent.
const RelayTestRecipient = "relay-test@relay-test.invalid"

// Status is the verdict of a check.
type Status string

// The verdicts.
const (
	OK   Status = "ok"
	Warn Status = "warn" // works, but some senders may refuse or it could not be tested
	Fail Status = "fail" // mail is lost or refused, or the box is open to abuse
)

// The kinds of check.
const (
	KindPublic = "public-address"
	KindMX     = "mx"
	KindMXHost = "mx-host"
	KindPTR    = "ptr"
	KindBanner = "banner"
	KindPort25 = "port25"
	KindRelay  = "relay"
)

// Check is one finding.
type Check struct {
	Kind    string `json:"kind"`
	Subject string `json:"subject"` // the domain, host or address it is about
	Status  Status `json:"status"`
	Message string `json:"message"` // a sentence for the admin
}

// Report is the result of a run.
type Report struct {
	Time time.Time `json:"time"`
	// Public is the box's public address ("" when unknown) and
	// PublicFrom where it came from.
	Public     string  `json:"public,omitempty"`
	PublicFrom string  `json:"public_from,omitempty"`
	Banner     string  `json:"banner,omitempty"` // the name the SMTP banner gives
	Checks     []Check `json:"checks"`
}

// Count returns how many checks have status s.
func (r *Report) Count(s Status) int {
	n := 0
	for _, c := range r.Checks {
		if c.Status == s {
			n++
		}
	}
	return n
}

// Summary is one line: how many checks passed, warned and failed.
func (r *Report) Summary() string {
	return fmt.Sprintf("%d checks: %d ok, %d warnings, %d failed", len(r.Checks), r.Count(OK), r.Count(Warn), r.Count(Fail))
}

// Params are what the checks compare DNS with.
type Params struct {
	// Domains are the mail domains.
	Domains []string
	// Hostname is the box's name (its SMTP banner, smtp Domain).
	Hostname string
	// Public is the address the Internet reaches the box at (zero:
	// unknown); PublicFrom says where it came from ("diag.public_address",
	// "interface eth0"). PublicNote, when set, is a warning about it.
	Public     netip.Addr
	PublicFrom string
	PublicNote string
	// Local are the box's own addresses.
	Local []netip.Addr
	// RelayNetworks may relay without a password.
	RelayNetworks []netip.Prefix
	// MXListen is smtp.mx_listen ("" when port 25 is off).
	MXListen string
	// Running says whether the server runs (its listeners can be tested).
	Running bool
}

// Run runs every check.
func Run(ctx context.Context, p Params, r Resolver, pr Prober) *Report {
	ctx, cancel := context.WithTimeout(ctx, RunTimeout)
	defer cancel()
	c := &run{p: p, l: newLookups(r), pr: pr, rep: &Report{Time: time.Now().UTC()}}
	c.public()
	c.port25(ctx)
	for _, d := range p.Domains {
		c.domain(ctx, d)
	}
	c.reverse(ctx)
	c.banner(ctx)
	c.relay(ctx)
	return c.rep
}

type run struct {
	p   Params
	l   *lookups
	pr  Prober
	rep *Report
	// bannerName is the name the SMTP banner gave, or the hostname.
	bannerName string
}

func (c *run) add(kind, subject string, s Status, format string, args ...any) {
	c.rep.Checks = append(c.rep.Checks, Check{Kind: kind, Subject: subject, Status: s, Message: fmt.Sprintf(format, args...)})
}

func (c *run) local(a netip.Addr) bool { return slices.Contains(c.p.Local, a) }

func (c *run) public() {
	p := c.p
	c.bannerName = canonical(p.Hostname)
	if !p.Public.IsValid() {
		msg := "This box's public address is not known, so DNS cannot be compared with it: set diag.public_address to the address the Internet reaches the box at (behind a router: the router's public address)."
		if p.PublicNote != "" {
			msg = p.PublicNote + " " + msg
		}
		c.add(KindPublic, "", Warn, "%s", msg)
		return
	}
	c.rep.Public, c.rep.PublicFrom = p.Public.String(), p.PublicFrom
	if p.PublicNote != "" {
		c.add(KindPublic, p.Public.String(), Warn, "%s", p.PublicNote)
		return
	}
	c.add(KindPublic, p.Public.String(), OK, "This box's public address is %s (from %s).", p.Public, p.PublicFrom)
}

// port25 connects to port 25 of the public address, when it is the
// box's own, and reads the banner.
func (c *run) port25(ctx context.Context) {
	p := c.p
	subject := ""
	if p.Public.IsValid() {
		subject = netip.AddrPortFrom(p.Public, SMTPPort).String()
	}
	switch {
	case p.MXListen == "":
		c.add(KindPort25, subject, Fail, "Port 25 is turned off (smtp.mx_listen is empty): mail from the Internet cannot reach the box.")
		return
	case !p.Running:
		c.add(KindPort25, subject, Warn, "The mail server is not running, so port 25 was not tested.")
		return
	case !p.Public.IsValid():
		c.add(KindPort25, subject, Warn, "Whether port 25 is reachable cannot be tested: this box's public address is not known.")
		return
	case !c.local(p.Public):
		c.add(KindPort25, subject, Warn, "%s is not an address of this box (a router in front of it must forward port 25 to it): whether port 25 is reachable from the Internet cannot be tested from inside. Ask someone outside to connect to %s.", p.Public, subject)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	greeting, err := c.pr.Banner(ctx, netip.AddrPortFrom(p.Public, SMTPPort))
	if err != nil {
		c.add(KindPort25, subject, Fail, "Nothing answers on port 25 of %s (%v); the mail server listens on %s.", p.Public, err, p.MXListen)
		return
	}
	name, ok := BannerName(greeting)
	if !ok {
		c.add(KindPort25, subject, Fail, "Port 25 of %s answers %q instead of a mail server's greeting.", p.Public, greeting)
		return
	}
	c.bannerName = name
	c.add(KindPort25, subject, OK, "Port 25 of %s answers with the banner %q.", p.Public, greeting)
}

// BannerName returns the host name of an SMTP greeting line such as
// "220 mail.example.com ESMTP ready" (RFC 5321 4.2: the code, then the
// server's name), and whether the line is a greeting at all.
func BannerName(line string) (string, bool) {
	rest, ok := strings.CutPrefix(line, "220")
	if !ok || rest != "" && rest[0] != ' ' && rest[0] != '-' {
		return "", false
	}
	f := strings.Fields(rest[min(1, len(rest)):])
	if len(f) == 0 || canonical(f[0]) == "" {
		return "", false
	}
	return canonical(f[0]), true
}

// domain checks the MX records of one mail domain and the addresses of
// each mail host.
func (c *run) domain(ctx context.Context, d string) {
	res := c.l.mx(ctx, d)
	switch {
	case res.err != nil:
		c.add(KindMX, d, Fail, "The MX records of %s could not be looked up: %v.", d, res.err)
		return
	case res.nx:
		c.add(KindMX, d, Fail, "%s does not exist in DNS: nobody can send mail to it. Register the domain, or add it to your DNS zone.", d)
		return
	case res.null && len(res.hosts) == 0:
		c.add(KindMX, d, Fail, "%s has a null MX (RFC 7505): it tells every sender that the domain takes no mail, but this box receives mail for it. Replace it with an MX record pointing at %s.", d, c.p.Hostname)
		return
	case res.null:
		c.add(KindMX, d, Fail, "%s has a null MX (RFC 7505) beside other MX records; a null MX must be the only one, and senders may treat the domain as taking no mail. Remove the null MX.", d)
	}
	aliasNote := ""
	if res.alias != "" {
		aliasNote = fmt.Sprintf(" (through the alias %s)", res.alias)
	}
	hosts := res.hosts
	if len(hosts) == 0 {
		// RFC 5321 5.1: no MX, so the domain itself is the mail host.
		target := d
		if res.alias != "" {
			target = res.alias
		}
		c.add(KindMX, d, Warn, "%s has no MX record: senders fall back to its own address record (the implicit MX, RFC 5321 5.1), and some do not. Add an MX record pointing at %s.", d, c.p.Hostname)
		c.mailHost(ctx, d, mxHost{Host: target}, true, true)
		return
	}
	var list []string
	for _, h := range hosts {
		list = append(list, fmt.Sprintf("%s (preference %d)", h.Host, h.Pref))
	}
	ips := 0
	for _, h := range hosts {
		if _, err := netip.ParseAddr(h.Host); err == nil {
			ips++
		}
	}
	if ips == 0 && !res.null {
		c.add(KindMX, d, OK, "The MX of %s%s is %s.", d, aliasNote, strings.Join(list, ", "))
	}
	// Which hosts reach this box: another MX host may be a backup.
	ours := make([]bool, len(hosts))
	anyOurs := false
	for i, h := range hosts {
		if _, err := netip.ParseAddr(h.Host); err == nil {
			continue
		}
		if c.p.Public.IsValid() && slices.Contains(c.l.host(ctx, h.Host).addrs, c.p.Public) {
			ours[i], anyOurs = true, true
		}
	}
	for i, h := range hosts {
		if a, err := netip.ParseAddr(h.Host); err == nil {
			c.add(KindMX, d, Fail, "The MX of %s is the IP address %s, not a host name: RFC 5321 5.1 requires a name, and many senders give up. Point the MX at a name (such as %s) whose A record is %s.", d, a, c.p.Hostname, a)
			continue
		}
		c.mailHost(ctx, d, h, ours[i] || !anyOurs, false)
	}
}

// mailHost checks the addresses of one mail host of domain d. primary
// says whether the host should be this box (a backup MX of another
// server only warns).
func (c *run) mailHost(ctx context.Context, d string, h mxHost, primary, implicit bool) {
	what := "The MX of " + d + " points to " + h.Host
	if implicit {
		what = "The implicit MX of " + d + " is " + h.Host + " itself"
	}
	res := c.l.host(ctx, h.Host)
	if res.alias != "" && !implicit {
		c.add(KindMXHost, h.Host, Warn, "The MX of %s points to %s, which is an alias (CNAME) of %s: RFC 2181 10.3 forbids an MX pointing at an alias, and some senders refuse it. Point the MX at %s directly.", d, h.Host, res.alias, res.alias)
	}
	switch {
	case len(res.addrs) == 0 && res.err != nil:
		c.add(KindMXHost, h.Host, Fail, "The addresses of %s (the mail host of %s) could not be looked up: %v.", h.Host, d, res.err)
		return
	case res.nx:
		c.add(KindMXHost, h.Host, Fail, "%s, which does not exist in DNS: mail to %s cannot be delivered. Add an A record for %s.", what, d, h.Host)
		return
	case len(res.addrs) == 0:
		c.add(KindMXHost, h.Host, Fail, "%s, which has no address (A or AAAA) record: mail to %s cannot be delivered. Add an A record for %s.", what, d, h.Host)
		return
	}
	addrs := joinAddrs(res.addrs)
	switch {
	case !c.p.Public.IsValid():
		c.add(KindMXHost, h.Host, Warn, "%s, which resolves to %s; whether that is this box cannot be told, as its public address is not known.", what, addrs)
	case slices.Contains(res.addrs, c.p.Public):
		c.add(KindMXHost, h.Host, OK, "%s, which resolves to %s: this box's public address.", what, addrs)
	case !primary:
		c.add(KindMXHost, h.Host, Warn, "%s, which resolves to %s, not to this box's public address %s: fine if it is a backup mail server that passes mail on to this box.", what, addrs, c.p.Public)
	default:
		c.add(KindMXHost, h.Host, Fail, "%s, which resolves to %s, but this box's public address is %s: mail to %s goes elsewhere.", what, addrs, c.p.Public, d)
	}
}

// reverse checks the PTR of the public address against the banner name,
// and that the name leads back to the address (forward-confirmed reverse
// DNS, which many receivers require).
func (c *run) reverse(ctx context.Context) {
	pub := c.p.Public
	if !pub.IsValid() {
		return
	}
	s := pub.String()
	res := c.l.ptr(ctx, pub)
	switch {
	case res.err != nil:
		c.add(KindPTR, s, Fail, "The reverse DNS (PTR) of %s could not be looked up: %v.", pub, res.err)
		return
	case len(res.names) == 0:
		c.add(KindPTR, s, Fail, "%s has no reverse DNS (PTR) name: many mail servers refuse mail from an address without one. Ask whoever gives you the address (your ISP) to set it to %s.", pub, c.bannerName)
		return
	}
	if !slices.Contains(res.names, c.bannerName) {
		c.add(KindPTR, s, Fail, "The reverse DNS of %s is %s, but the banner says %s: receivers that compare them refuse the mail. Ask your ISP to set the PTR of %s to %s, or give the box the name %s (hostname).",
			pub, strings.Join(res.names, ", "), c.bannerName, pub, c.bannerName, res.names[0])
		return
	}
	fwd := c.l.host(ctx, c.bannerName)
	if !slices.Contains(fwd.addrs, pub) {
		to := "has no address record"
		if len(fwd.addrs) > 0 {
			to = "resolves to " + joinAddrs(fwd.addrs)
		}
		c.add(KindPTR, s, Fail, "The reverse DNS of %s is %s, the banner name, but %s %s, not back to %s: receivers that check both directions refuse the mail.", pub, c.bannerName, c.bannerName, to, pub)
		return
	}
	c.add(KindPTR, s, OK, "The reverse DNS of %s is %s, the name in the SMTP banner, and %s resolves back to %s.", pub, c.bannerName, c.bannerName, pub)
}

// banner checks the name in the SMTP banner: the configured hostname,
// which should resolve to the public address.
func (c *run) banner(ctx context.Context) {
	c.rep.Banner = c.bannerName
	name := c.bannerName
	if host := canonical(c.p.Hostname); name != host {
		c.add(KindBanner, name, Warn, "The SMTP banner says %s, but the box's name (hostname) is %s.", name, host)
		return
	}
	res := c.l.host(ctx, name)
	switch {
	case len(res.addrs) == 0 && res.err != nil:
		c.add(KindBanner, name, Fail, "The addresses of the banner name %s could not be looked up: %v.", name, res.err)
	case len(res.addrs) == 0:
		c.add(KindBanner, name, Fail, "The banner name %s has no address record: receivers that check the name a server greets with refuse the mail. Add an A record for %s, or set hostname to a name that has one.", name, name)
	case !c.p.Public.IsValid():
		c.add(KindBanner, name, Warn, "The banner name %s resolves to %s; whether that is this box cannot be told, as its public address is not known.", name, joinAddrs(res.addrs))
	case !slices.Contains(res.addrs, c.p.Public):
		c.add(KindBanner, name, Fail, "The banner name %s resolves to %s, but this box's public address is %s.", name, joinAddrs(res.addrs), c.p.Public)
	default:
		c.add(KindBanner, name, OK, "The banner name %s resolves to %s, this box's public address.", name, c.p.Public)
	}
}

// relay asks the box on port 25, from one of its own addresses outside
// the relay networks, to take mail for a remote address.
func (c *run) relay(ctx context.Context) {
	p := c.p
	if p.MXListen == "" {
		c.add(KindRelay, "", OK, "Port 25 is off, so nobody can send mail through it.")
		return
	}
	if !p.Running {
		c.add(KindRelay, "", Warn, "The mail server is not running, so whether it relays for strangers was not tested.")
		return
	}
	dst, err := c.listener()
	if err != nil {
		c.add(KindRelay, p.MXListen, Warn, "Whether the box relays for strangers could not be tested: %v.", err)
		return
	}
	src, ok := c.stranger()
	if !ok {
		c.add(KindRelay, dst.String(), Warn, "Whether the box relays for strangers cannot be tested from inside: every address of the box is in relay_networks (%s).", joinPrefixes(p.RelayNetworks))
		return
	}
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	reply, accepted, err := c.pr.Relay(ctx, src, dst, c.bannerName, RelayTestRecipient)
	subject := src.String()
	switch {
	case err != nil:
		c.add(KindRelay, subject, Warn, "Whether the box relays for strangers could not be tested (from %s to %s): %v.", src, dst, err)
	case accepted:
		if n, ok := c.relayNet(src); ok {
			c.add(KindRelay, subject, Fail, "The box relays for strangers: asked from %s, it took mail for %s (%q): relay_networks has %s, which takes in this address on the box's Internet side, so anyone there can send spam through the box. Remove %s from the relay networks.", src, RelayTestRecipient, reply, n, n)
			break
		}
		c.add(KindRelay, subject, Fail, "The box relays for strangers: asked from %s, which is in no relay network, it took mail for %s (%q): it is an open relay, and anyone can send spam through it.", src, RelayTestRecipient, reply)
	case strings.HasPrefix(reply, "4"):
		c.add(KindRelay, subject, Warn, "Asked from %s to take mail for %s, the box answered %q (try later) instead of refusing.", src, RelayTestRecipient, reply)
	default:
		c.add(KindRelay, subject, OK, "The box refused to relay for a stranger: asked from %s to take mail for %s, it answered %q.", src, RelayTestRecipient, reply)
	}
}

// listener is the address of the port 25 listener to talk to.
func (c *run) listener() (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(c.p.MXListen)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("smtp.mx_listen %q: %v", c.p.MXListen, err)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("smtp.mx_listen %q: bad port", c.p.MXListen)
	}
	if host != "" {
		a, err := netip.ParseAddr(host)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("smtp.mx_listen %q: %v", c.p.MXListen, err)
		}
		return netip.AddrPortFrom(a.Unmap(), uint16(n)), nil
	}
	if c.p.Public.IsValid() && c.local(c.p.Public) {
		return netip.AddrPortFrom(c.p.Public, uint16(n)), nil
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(n)), nil
}

// stranger is the source address of the relay test: the public address
// when it is the box's own (strangers come from that side), else an
// address of the box outside the relay networks.
func (c *run) stranger() (netip.Addr, bool) {
	if c.p.Public.IsValid() && c.local(c.p.Public) {
		return c.p.Public, true
	}
	var candidates []netip.Addr
	for _, a := range c.p.Local {
		if _, in := c.relayNet(a); !in {
			candidates = append(candidates, a)
		}
	}
	// Loopback last: an address on a real interface is nearer to what a
	// stranger uses.
	slices.SortStableFunc(candidates, func(a, b netip.Addr) int {
		switch {
		case a.IsLoopback() == b.IsLoopback():
			return 0
		case a.IsLoopback():
			return 1
		}
		return -1
	})
	for _, a := range candidates {
		if a.Is4() {
			return a, true
		}
	}
	if len(candidates) > 0 {
		return candidates[0], true
	}
	return netip.Addr{}, false
}

func (c *run) relayNet(a netip.Addr) (netip.Prefix, bool) {
	for _, n := range c.p.RelayNetworks {
		if n.Contains(a) {
			return n, true
		}
	}
	return netip.Prefix{}, false
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}
