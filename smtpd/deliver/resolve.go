package deliver

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Resolver timing.
const (
	// DNSTimeout bounds one query to one server.
	DNSTimeout = 5 * time.Second
	// resolvConfTTL is how long /etc/resolv.conf is trusted before it is
	// read again.
	resolvConfTTL = 5 * time.Second
	// maxCNAME bounds CNAME chains that the server did not follow.
	maxCNAME = 8
)

// Resolver asks DNS servers for MX and address records.
type Resolver struct {
	// Servers are "IP" or "IP:port"; empty means /etc/resolv.conf.
	Servers []string
	// ResolvConf is the file read when Servers is empty (default
	// /etc/resolv.conf).
	ResolvConf string
	// Timeout per query and server (default DNSTimeout).
	Timeout time.Duration

	mu      sync.Mutex
	conf    []string
	confAt  time.Time
	confErr error
}

// MX is one mail host of a domain.
type MX struct {
	Host string // without the trailing dot
	Pref uint16
}

func (r *Resolver) servers() ([]string, error) {
	if len(r.Servers) > 0 {
		out := make([]string, len(r.Servers))
		for i, s := range r.Servers {
			if _, _, err := net.SplitHostPort(s); err != nil {
				s = net.JoinHostPort(s, "53")
			}
			out[i] = s
		}
		return out, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.confAt) < resolvConfTTL {
		return r.conf, r.confErr
	}
	path := r.ResolvConf
	if path == "" {
		path = "/etc/resolv.conf"
	}
	r.conf, r.confErr = nil, nil
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		r.confErr = temporary("4.4.3", "reading %s: %v", path, err)
	} else if len(cc.Servers) == 0 {
		r.confErr = temporary("4.4.3", "no nameserver in %s", path)
	} else {
		for _, s := range cc.Servers {
			r.conf = append(r.conf, net.JoinHostPort(s, cc.Port))
		}
	}
	r.confAt = time.Now()
	return r.conf, r.confErr
}

// ErrNXDomain marks an answer saying the name does not exist.
var ErrNXDomain = errors.New("no such domain")

// Query asks the resolvers (Servers, or /etc/resolv.conf) for the records
// of qtype at name, as LookupMX and LookupHost do: the answer of the first
// server that gives NOERROR, or ErrNXDomain (with that answer) when the
// name does not exist; any other failure is a temporary *Error. The
// diagnostics page reads the records themselves through it.
func (r *Resolver) Query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	return r.query(ctx, name, qtype)
}

// query asks each server in turn until one answers with NOERROR or
// NXDOMAIN; a truncated UDP answer is asked again over TCP.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	servers, err := r.servers()
	if err != nil {
		return nil, err
	}
	timeout := r.Timeout
	if timeout == 0 {
		timeout = DNSTimeout
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	m.SetEdns0(1232, false)
	var last error
	for _, s := range servers {
		c := &dns.Client{Net: "udp", Timeout: timeout}
		resp, _, err := c.ExchangeContext(ctx, m, s)
		if err == nil && resp.Truncated {
			c.Net = "tcp"
			resp, _, err = c.ExchangeContext(ctx, m, s)
		}
		if err != nil {
			last = err
			continue
		}
		switch resp.Rcode {
		case dns.RcodeSuccess:
			return resp, nil
		case dns.RcodeNameError:
			return resp, ErrNXDomain
		default:
			last = errors.New(dns.RcodeToString[resp.Rcode])
		}
	}
	// RFC 5321 5.1: a temporary error means queue and retry.
	return nil, temporary("4.4.3", "DNS %s %s: %v", dns.TypeToString[qtype], name, last)
}

// LookupMX returns the mail hosts of domain in the order to try them:
// by preference, in random order among equal preferences (RFC 5321 5.1).
// A domain without MX records gets its implicit MX (the domain itself);
// a null MX (RFC 7505) and a domain that does not exist are permanent
// errors. A CNAME is followed and the resulting name is processed as if
// it were the initial name.
func (r *Resolver) LookupMX(ctx context.Context, domain string) ([]MX, error) {
	name := strings.TrimSuffix(strings.ToLower(domain), ".")
	for range maxCNAME {
		resp, err := r.query(ctx, name, dns.TypeMX)
		if errors.Is(err, ErrNXDomain) {
			// RFC 5321 5.1: a non-existent domain MUST be reported as an error.
			return nil, permanent("5.1.2", "domain %s does not exist (DNS NXDOMAIN)", domain)
		}
		if err != nil {
			return nil, err
		}
		var mxs []MX
		var cname string
		null := false
		for _, rr := range resp.Answer {
			switch rr := rr.(type) {
			case *dns.MX:
				if !strings.EqualFold(strings.TrimSuffix(rr.Hdr.Name, "."), name) {
					continue
				}
				if rr.Mx == "." {
					null = true
					continue
				}
				mxs = append(mxs, MX{Host: strings.ToLower(strings.TrimSuffix(rr.Mx, ".")), Pref: rr.Preference})
			case *dns.CNAME:
				if strings.EqualFold(strings.TrimSuffix(rr.Hdr.Name, "."), name) {
					cname = strings.ToLower(strings.TrimSuffix(rr.Target, "."))
				}
			}
		}
		if len(mxs) == 0 && cname != "" && !null {
			// The server gave the alias only: ask again for its target.
			name = cname
			continue
		}
		if null && len(mxs) == 0 {
			// RFC 7505 3: the domain accepts no mail.
			return nil, &Error{Perm: true, Code: "5.1.10", Msg: "domain " + domain + " accepts no mail (null MX)",
				Reply: "556 5.1.10 Recipient address has null MX"}
		}
		if len(mxs) == 0 {
			// RFC 5321 5.1: the implicit MX, preference 0, is the domain.
			return []MX{{Host: name, Pref: 0}}, nil
		}
		sortMX(mxs)
		return mxs, nil
	}
	return nil, temporary("4.4.3", "CNAME chain of %s too long", domain)
}

// sortMX orders by preference, shuffling hosts of equal preference.
func sortMX(mxs []MX) {
	rand.Shuffle(len(mxs), func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] })
	slices.SortStableFunc(mxs, func(a, b MX) int { return int(a.Pref) - int(b.Pref) })
}

// LookupHost returns the addresses of a mail host, IPv4 first (an office
// line's IPv6 is the likelier one to be broken). A host name that is an
// IP address is not a domain name and has no addresses (RFC 5321 5.1: the
// MX data MUST be a domain name): it is reported as unusable.
func (r *Resolver) LookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	if _, err := netip.ParseAddr(host); err == nil {
		return nil, permanent("5.4.4", "MX host %s is an IP address, not a host name (RFC 5321 5.1)", host)
	}
	var addrs []netip.Addr
	var tempErr error
	nx := 0
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		name := host
		for range maxCNAME {
			resp, err := r.query(ctx, name, qt)
			if errors.Is(err, ErrNXDomain) {
				nx++
				break
			}
			if err != nil {
				tempErr = err
				break
			}
			var cname string
			found := false
			for _, rr := range resp.Answer {
				switch rr := rr.(type) {
				case *dns.A:
					if a, ok := netip.AddrFromSlice(rr.A.To4()); ok {
						addrs = append(addrs, a)
						found = true
					}
				case *dns.AAAA:
					if a, ok := netip.AddrFromSlice(rr.AAAA); ok {
						addrs = append(addrs, a)
						found = true
					}
				case *dns.CNAME:
					cname = strings.TrimSuffix(rr.Target, ".")
				}
			}
			// An MX target that is an alias lies outside RFC 5321 5.1;
			// like most mailers we follow it rather than lose the mail.
			if found || cname == "" {
				break
			}
			name = cname
		}
	}
	if len(addrs) > 0 {
		return addrs, nil
	}
	if tempErr != nil {
		return nil, tempErr
	}
	if nx == 2 {
		return nil, permanent("5.4.4", "mail host %s does not exist", host)
	}
	return nil, permanent("5.4.4", "mail host %s has no address", host)
}
