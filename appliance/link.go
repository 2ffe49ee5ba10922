package appliance

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"concierge/appliance/config"
	"concierge/appliance/link"
	"concierge/internal/durable"
	"concierge/smtpd"
	"concierge/smtpd/queue"
)

// linkService runs the dial-out link (appliance/link) and is the
// delivery runner's gate (queue.Gate) and the SMTP server's spool
// (smtpd.Spool): outside domains wait for the link, relay domains wait
// for an authorized ETRN, and inbound sessions from the ISP keep the link
// up.
type linkService struct {
	env    *Env
	cfg    atomic.Pointer[config.Config]
	mgr    *link.Manager
	runner atomic.Pointer[queue.Runner]
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	released map[string]time.Time // relay domain → end of its release window
}

func newLinkService(env *Env) Service {
	s := &linkService{env: env, released: map[string]time.Time{}}
	env.Link = s
	return s
}

func (s *linkService) Name() string { return "link" }

func linkSettings(cfg *config.Config) link.Settings {
	l := cfg.Link
	set := link.Settings{
		Mode: link.Mode(l.Mode), UpCommand: l.UpCommand, DownCommand: l.DownCommand, CommandTimeout: l.CommandTimeout.D(),
		MailHost: l.MailHost, ConfirmTimeout: l.ConfirmTimeout.D(), Retries: l.Retries, RetryWait: l.RetryWait.D(),
		RedialWait: l.RedialWait.D(), MaxRedialWait: l.MaxRedialWait.D(),
		IdleTime: l.IdleTime.D(), Every: l.Every.D(), MaxUp: l.MaxUp.D(), Method: l.ReleaseMethod,
		Domains: l.ReleaseDomains, ReleaseTimeout: l.ReleaseTimeout.D(), Hostname: cfg.Hostname,
		Lookup: resolver(cfg).LookupHost,
	}
	if len(set.Domains) == 0 {
		for _, d := range cfg.Domains {
			if d.AliasOf == "" {
				set.Domains = append(set.Domains, d.Name)
			}
		}
	}
	return set
}

func (s *linkService) Start(ctx context.Context, cfg *config.Config) error {
	dir := filepath.Join(s.env.DataDir, "link")
	if err := durable.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("link: %w", err)
	}
	acct, err := link.OpenAccounts(filepath.Join(dir, "accounts.json"))
	if err != nil {
		return err
	}
	s.cfg.Store(cfg)
	s.mgr = link.New(linkSettings(cfg), acct, s.env.Log.With("service", "link"))
	s.mgr.OnUp = func() {
		if r := s.runner.Load(); r != nil {
			n := r.Flush("")
			s.env.Log.Info("link: outbound queue flushed", "service", "link", "messages", n)
		}
	}
	rctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go func() {
		defer close(s.done)
		s.mgr.Run(rctx)
	}()
	// A link that comes up lets the runner try what waited.
	go func() {
		for {
			ch, _ := s.mgr.Changed()
			select {
			case <-rctx.Done():
				return
			case <-ch:
				if r := s.runner.Load(); r != nil {
					r.Poke()
				}
			}
		}
	}()
	return nil
}

func (s *linkService) Reconfigure(cfg *config.Config) error {
	s.cfg.Store(cfg)
	s.mgr.Configure(linkSettings(cfg))
	return nil
}

func (s *linkService) Stop(ctx context.Context) error {
	s.cancel()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("link: a link command still runs at shutdown")
	}
}

func (s *linkService) Listening() []string {
	cfg := s.cfg.Load()
	if cfg == nil {
		return nil
	}
	st := s.mgr.Status()
	line := fmt.Sprintf("%-12s %s, %s", "link", st.Mode, st.State)
	if cfg.Link.MailHost != "" {
		line += " (ISP mail host " + cfg.Link.MailHost + ")"
	}
	return []string{line}
}

// setRunner is called by the delivery service when its runner starts.
func (s *linkService) setRunner(r *queue.Runner) { s.runner.Store(r) }

// relayDomain returns the relay domain for a domain, if it is one.
func (s *linkService) isRelay(domain string) bool {
	cfg := s.cfg.Load()
	return cfg != nil && slices.Contains(cfg.Link.RelayDomains, strings.ToLower(domain))
}

// isLocal reports whether mail for domain stays in the box.
func (s *linkService) isLocal(domain string) bool {
	cfg := s.cfg.Load()
	return cfg != nil && slices.ContainsFunc(cfg.Domains, func(d config.Domain) bool { return d.Name == domain })
}

// Open implements queue.Gate.
func (s *linkService) Open(domain string) bool {
	if s.isRelay(domain) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return time.Now().Before(s.released[domain])
	}
	return s.isLocal(domain) || s.mgr.IsUp()
}

// Waiting implements queue.Gate: outbound mail makes an on-demand link dial.
func (s *linkService) Waiting(domains []string) {
	if slices.ContainsFunc(domains, func(d string) bool { return !s.isRelay(d) && !s.isLocal(d) }) {
		s.mgr.MailWaiting()
	}
}

// Attempted implements queue.Gate: deliveries keep the link up.
func (s *linkService) Attempted(domain string, delivered int, size int64) {
	if s.isRelay(domain) || s.isLocal(domain) {
		return
	}
	if delivered > 0 {
		s.mgr.Outbound(1, size)
	} else {
		s.mgr.Outbound(0, 0)
	}
}

// IsRelayDomain implements smtpd.Spool.
func (s *linkService) IsRelayDomain(domain string) bool { return s.isRelay(domain) }

// etrnReply makes an RFC 1985 reply.
func etrnReply(code int, enh smtp.EnhancedCode, format string, a ...any) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: fmt.Sprintf(format, a...)}
}

// Release implements smtpd.Spool: ETRN for a relay domain from an
// authorized client opens the domain for the release window and makes
// its held mail due now.
func (s *linkService) Release(node string, ip netip.Addr, user string) *smtp.SMTPError {
	cfg := s.cfg.Load()
	notAllowed := smtp.EnhancedCode{5, 7, 1}
	var domains []string
	if base, sub := strings.CutPrefix(node, "@"); sub {
		for _, d := range cfg.Link.RelayDomains {
			if d == base || strings.HasSuffix(d, "."+base) {
				domains = append(domains, d)
			}
		}
	} else if slices.Contains(cfg.Link.RelayDomains, node) {
		domains = []string{node}
	}
	if len(domains) == 0 {
		s.env.Log.Info("etrn refused", "service", "link", "remote", ip.String(), "node", node, "reason", "not a relay domain")
		return etrnReply(smtpd.CodeETRNNotAllowed, notAllowed, "Node %s not allowed: this server holds no mail for it", node)
	}
	allowed := user != "" && slices.Contains(cfg.Link.ETRNUsers, user)
	for _, n := range cfg.Link.ETRNNetworks {
		if p, err := config.ParseCIDR(n); err == nil && p.Contains(ip) {
			allowed = true
		}
	}
	if !allowed {
		s.env.Log.Warn("etrn refused", "service", "link", "remote", ip.String(), "user", user, "node", node, "reason", "client not authorized")
		return etrnReply(smtpd.CodeETRNNotAllowed, notAllowed, "Node %s not allowed: %s may not release its mail", node, ip)
	}
	r := s.runner.Load()
	if r == nil {
		return etrnReply(smtpd.CodeETRNUnable, smtp.EnhancedCode{4, 3, 0}, "Unable to queue messages for node %s: delivery is not running", node)
	}
	until := time.Now().Add(cfg.Link.ReleaseWindow.D())
	n := 0
	s.mu.Lock()
	for _, d := range domains {
		s.released[d] = until
	}
	s.mu.Unlock()
	for _, d := range domains {
		n += r.Flush(d)
	}
	s.env.Log.Info("etrn", "service", "link", "remote", ip.String(), "user", user, "node", node, "messages", n)
	if n == 0 {
		return etrnReply(smtpd.CodeETRNNoMessages, smtp.EnhancedCode{2, 0, 0}, "OK, no messages waiting for node %s", node)
	}
	return etrnReply(smtpd.CodeETRNPendingN, smtp.EnhancedCode{2, 0, 0}, "OK, %d pending messages for node %s started", n, node)
}

// Activity implements smtpd.Spool: sessions and messages from the ISP's
// mail hosts count and keep the link up.
func (s *linkService) Activity(ip netip.Addr, messages int, bytes int64) {
	cfg := s.cfg.Load()
	if cfg == nil || cfg.Link.Mode == string(link.Always) || !s.fromISP(cfg, ip) {
		return
	}
	s.mgr.Inbound(messages, bytes)
}

// lookupTimeout bounds fromISP's lookup of the ISP's mail host.
const lookupTimeout = 5 * time.Second

func (s *linkService) fromISP(cfg *config.Config, ip netip.Addr) bool {
	for _, n := range cfg.Link.ISPNetworks {
		if p, err := config.ParseCIDR(n); err == nil && p.Contains(ip) {
			return true
		}
	}
	host, _, err := net.SplitHostPort(cfg.Link.MailHost)
	if err != nil {
		return false
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a == ip
	}
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	addrs, _ := resolver(cfg).LookupHost(ctx, host)
	return slices.Contains(addrs, ip)
}

// LinkStatus, LinkUp and LinkDown are the control API's link ops.
func (s *linkService) LinkStatus() link.Status { return s.mgr.Status() }
func (s *linkService) LinkUp(reason string)    { s.mgr.Want(reason) }
func (s *linkService) LinkDown(reason string)  { s.mgr.Hangup(reason) }
