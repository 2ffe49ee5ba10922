package diag

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"concierge/smtpd/deliver"
)

// Resolver answers DNS queries. *deliver.Resolver is the real one (the
// servers of config.Config.Resolvers); an error wrapping
// deliver.ErrNXDomain means the name does not exist.
type Resolver interface {
	Query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error)
}

// maxCNAME bounds the alias chains followed when the server did not.
const maxCNAME = 8

// lookups asks a Resolver and remembers the answers of one run: the same
// name is often asked for by several checks.
type lookups struct {
	r     Resolver
	cache map[query]answer
}

type query struct {
	name  string
	qtype uint16
}

type answer struct {
	msg *dns.Msg
	err error
}

func newLookups(r Resolver) *lookups { return &lookups{r: r, cache: map[query]answer{}} }

func (l *lookups) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	q := query{canonical(name), qtype}
	if a, ok := l.cache[q]; ok {
		return a.msg, a.err
	}
	msg, err := l.r.Query(ctx, q.name, qtype)
	if err == nil && msg == nil {
		msg = new(dns.Msg)
	}
	l.cache[q] = answer{msg, err}
	return msg, err
}

// canonical is a name in lower case without the trailing dot.
func canonical(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

func isNX(err error) bool { return errors.Is(err, deliver.ErrNXDomain) }

// mxHost is one MX record of a domain.
type mxHost struct {
	Host string
	Pref uint16
}

// mxResult is what DNS says about the mail hosts of a domain.
type mxResult struct {
	hosts []mxHost // the MX records, by preference
	null  bool     // a null MX (RFC 7505) is among them
	nx    bool     // the domain does not exist
	alias string   // the domain is an alias (CNAME) of this name
	err   error    // the lookup failed (a temporary DNS error)
}

// mx looks up the MX records of domain, following an alias of the
// domain itself (RFC 5321 5.1 processes the target as the initial name).
func (l *lookups) mx(ctx context.Context, domain string) mxResult {
	var res mxResult
	name := canonical(domain)
	for range maxCNAME {
		msg, err := l.query(ctx, name, dns.TypeMX)
		if isNX(err) {
			res.nx = true
			return res
		}
		if err != nil {
			res.err = err
			return res
		}
		var cname string
		for _, rr := range msg.Answer {
			switch rr := rr.(type) {
			case *dns.MX:
				if canonical(rr.Hdr.Name) != name {
					continue
				}
				if rr.Mx == "." {
					res.null = true
					continue
				}
				res.hosts = append(res.hosts, mxHost{Host: canonical(rr.Mx), Pref: rr.Preference})
			case *dns.CNAME:
				if canonical(rr.Hdr.Name) == name {
					cname = canonical(rr.Target)
				}
			}
		}
		if cname != "" {
			res.alias = cname
		}
		if cname == "" || len(res.hosts) > 0 || res.null {
			break
		}
		// The server gave the alias only: ask for its target.
		name = cname
	}
	slices.SortStableFunc(res.hosts, func(a, b mxHost) int { return int(a.Pref) - int(b.Pref) })
	return res
}

// hostResult is what DNS says about the addresses of a host name.
type hostResult struct {
	addrs []netip.Addr
	alias string // the name is an alias (CNAME) of this name
	nx    bool   // the name does not exist
	err   error  // a temporary DNS error, when no address was found
}

// host looks up the A and AAAA records of name, following aliases.
func (l *lookups) host(ctx context.Context, name string) hostResult {
	var res hostResult
	nx := 0
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		cur := canonical(name)
		for range maxCNAME {
			msg, err := l.query(ctx, cur, qt)
			if isNX(err) {
				nx++
				break
			}
			if err != nil {
				res.err = err
				break
			}
			var cname string
			found := false
			for _, rr := range msg.Answer {
				switch rr := rr.(type) {
				case *dns.A:
					if a, ok := netip.AddrFromSlice(rr.A.To4()); ok {
						res.addrs = appendNew(res.addrs, a)
						found = true
					}
				case *dns.AAAA:
					if a, ok := netip.AddrFromSlice(rr.AAAA); ok {
						res.addrs = appendNew(res.addrs, a.Unmap())
						found = true
					}
				case *dns.CNAME:
					if canonical(rr.Hdr.Name) == cur {
						cname = canonical(rr.Target)
						if res.alias == "" && cur == canonical(name) {
							res.alias = cname
						}
					}
				}
			}
			if found || cname == "" {
				break
			}
			cur = cname
		}
	}
	res.nx = nx == 2 && len(res.addrs) == 0
	if len(res.addrs) > 0 {
		res.err = nil
	}
	return res
}

func appendNew(list []netip.Addr, a netip.Addr) []netip.Addr {
	if slices.Contains(list, a) {
		return list
	}
	return append(list, a)
}

// ptrResult is what DNS says about the reverse name of an address.
type ptrResult struct {
	names []string
	err   error // a temporary DNS error
}

// ptr looks up the PTR records of addr (RFC 1035 3.5, RFC 3596 2.5).
func (l *lookups) ptr(ctx context.Context, addr netip.Addr) ptrResult {
	rev, err := dns.ReverseAddr(addr.String())
	if err != nil {
		return ptrResult{err: err}
	}
	msg, err := l.query(ctx, rev, dns.TypePTR)
	if isNX(err) {
		return ptrResult{}
	}
	if err != nil {
		return ptrResult{err: err}
	}
	var res ptrResult
	for _, rr := range msg.Answer {
		if p, ok := rr.(*dns.PTR); ok {
			res.names = append(res.names, canonical(p.Ptr))
		}
	}
	return res
}
