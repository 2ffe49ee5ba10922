package control

import (
	"context"
	"fmt"
	"net/netip"

	"concierge/appliance/config"
	"concierge/appliance/diag"
	"concierge/smtpd/deliver"
)

// The diagnostics ops.
const (
	// OpCheckDNS runs the checks of the mail domains' DNS, the reverse
	// DNS, port 25 and relaying (appliance/diag) → DNSReport. Without a
	// server, port 25 and relaying are not tested.
	OpCheckDNS = "check.dns"
	// OpCheckLast is the report of the last check.dns of this server (or
	// CLI process) → *DNSReport, null when none ran yet.
	OpCheckLast = "check.last"
)

// DNSReport is the result of check.dns.
type DNSReport = diag.Report

func init() {
	register(map[string]opDef{
		OpCheckDNS: {run: (*Service).checkDNS},
		OpCheckLast: {run: func(s *Service, ctx context.Context, a Args) (any, error) {
			return s.diagLast.Load(), nil
		}},
	})
}

func (s *Service) checkDNS(ctx context.Context, a Args) (any, error) {
	cfg, err := s.load()
	if err != nil {
		return nil, err
	}
	p := diagParams(cfg, s.Running())
	r := &deliver.Resolver{Servers: cfg.Resolvers(), Timeout: diag.QueryTimeout}
	rep := diag.Run(ctx, p, r, diag.SMTPProber{})
	s.diagLast.Store(rep)
	s.opt.Log.Info("diagnostics run", "summary", rep.Summary())
	return rep, nil
}

// diagParams are the settings and addresses the checks compare DNS with.
func diagParams(cfg *config.Config, running bool) diag.Params {
	p := diag.Params{Hostname: cfg.Hostname, Local: diag.LocalAddrs(), MXListen: cfg.SMTP.MX, Running: running}
	for _, d := range cfg.Domains {
		p.Domains = append(p.Domains, d.Name)
	}
	for _, n := range cfg.RelayNetworks {
		if pr, err := config.ParseCIDR(n); err == nil {
			p.RelayNetworks = append(p.RelayNetworks, pr)
		}
	}
	if a, err := netip.ParseAddr(cfg.Diag.PublicAddress); err == nil {
		p.Public, p.PublicFrom = a, "diag.public_address"
		return p
	}
	a, from, err := diag.WANAddress()
	switch {
	case err != nil:
		p.PublicNote = fmt.Sprintf("The box has %v.", err)
	case diag.Private(a):
		p.PublicNote = fmt.Sprintf("The address of the box's Internet side, %s (%s), is private: the box is behind a router, and the Internet sees the router's address instead.", a, from)
	default:
		p.Public, p.PublicFrom = a, from
	}
	return p
}
