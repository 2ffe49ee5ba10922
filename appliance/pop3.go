package appliance

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"concierge/appliance/config"
	"concierge/internal/maildir"
	"concierge/pop3d"
)

// pop3Service runs the POP3 server on port 110 (STLS) and 995 (implicit
// TLS) over the users' Maildirs.
type pop3Service struct {
	env *Env
	srv *pop3d.Server
	// tls is the current certificate configuration, read by the port
	// 995 listener at each handshake so a new certificate applies at
	// once.
	tls atomic.Pointer[tls.Config]

	mu        sync.Mutex
	addrs     map[string]string       // configured address by port name
	listeners map[string]net.Listener // open listener by port name
}

func newPOP3Service(env *Env) Service {
	return &pop3Service{env: env, addrs: map[string]string{}, listeners: map[string]net.Listener{}}
}

func (s *pop3Service) Name() string { return "pop3" }

func (s *pop3Service) settings(cfg *config.Config) (*pop3d.Settings, error) {
	set := &pop3d.Settings{
		Hostname:       cfg.Hostname,
		IdleTimeout:    cfg.POP3.IdleTimeout.D(),
		MaxConns:       cfg.POP3.MaxConnections,
		MaxConnsPerIP:  cfg.POP3.MaxConnectionsPerIP,
		MaxConnsPerNet: cfg.POP3.MaxConnectionsPerNet,
	}
	for _, n := range cfg.POP3.TrustedNetworks {
		p, err := config.ParseCIDR(n)
		if err != nil {
			return nil, fmt.Errorf("pop3.trusted_networks: %w", err)
		}
		set.TrustedNetworks = append(set.TrustedNetworks, p)
	}
	tc, err := s.env.TLSConfig(cfg)
	if err != nil {
		return nil, err
	}
	set.TLSConfig = tc
	return set, nil
}

func (s *pop3Service) Start(ctx context.Context, cfg *config.Config) error {
	set, err := s.settings(cfg)
	if err != nil {
		return err
	}
	s.tls.Store(set.TLSConfig)
	s.srv = pop3d.NewServer(s.env.Users, maildrops{s.env}, set, s.env.Log.With("service", "pop3"))
	if err := s.listen(cfg); err != nil {
		s.srv.Close()
		return err
	}
	return nil
}

// listen opens listeners whose address is new and closes those whose
// address changed or went away; sessions on a closed listener go on.
func (s *pop3Service) listen(cfg *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range []struct{ name, addr string }{{"pop3", cfg.POP3.Listen}, {"pop3s", cfg.POP3.ListenTLS}} {
		if s.addrs[p.name] == p.addr && (p.addr == "" || s.listeners[p.name] != nil) {
			continue
		}
		if old := s.listeners[p.name]; old != nil {
			old.Close()
			delete(s.listeners, p.name)
		}
		s.addrs[p.name] = p.addr
		if p.addr == "" {
			continue
		}
		l, err := net.Listen("tcp", p.addr)
		if err != nil {
			return fmt.Errorf("pop3: %s: %w", p.name, err)
		}
		if p.name == "pop3s" {
			l = tls.NewListener(l, &tls.Config{
				GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return s.tls.Load(), nil },
			})
		}
		s.listeners[p.name] = l
		go s.srv.Serve(l)
	}
	return nil
}

func (s *pop3Service) Reconfigure(cfg *config.Config) error {
	set, err := s.settings(cfg)
	if err != nil {
		return err
	}
	s.tls.Store(set.TLSConfig)
	s.srv.Configure(set)
	return s.listen(cfg)
}

func (s *pop3Service) Stop(ctx context.Context) error {
	if s.srv == nil {
		return nil // never started
	}
	return s.srv.Shutdown(ctx)
}

func (s *pop3Service) Listening() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, name := range []string{"pop3", "pop3s"} {
		if l := s.listeners[name]; l != nil {
			out = append(out, fmt.Sprintf("%-12s %s", name, l.Addr()))
		}
	}
	return out
}

// maildrops opens the users' Maildirs for the POP3 server.
type maildrops struct{ env *Env }

func (m maildrops) Lock(user string) (pop3d.Maildrop, error) {
	if user == "" || strings.ContainsAny(user, "/\x00") || strings.HasPrefix(user, ".") {
		return nil, fmt.Errorf("pop3: bad user name %q", user)
	}
	d, err := maildir.Lock(m.env.MailDir(user))
	if errors.Is(err, maildir.ErrInUse) {
		return nil, fmt.Errorf("%w: %s", pop3d.ErrInUse, user)
	}
	if err != nil {
		return nil, err
	}
	return d, nil
}
