package appliance

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"

	"concierge/appliance/config"
	"concierge/smtpd"
	"concierge/smtpd/queue"
	"concierge/smtpd/store"
)

// smtpService runs the SMTP server, its store and the outbound queue.
type smtpService struct {
	env   *Env
	srv   *smtpd.Server
	store *store.Store
	queue *queue.Queue

	mu    sync.Mutex
	addrs map[smtpd.ListenerKind]string   // configured listen address
	bound map[smtpd.ListenerKind]net.Addr // where it listens
}

func newSMTPService(env *Env) Service {
	return &smtpService{env: env, addrs: map[smtpd.ListenerKind]string{}, bound: map[smtpd.ListenerKind]net.Addr{}}
}

func (s *smtpService) Name() string { return "smtp" }

func (s *smtpService) settings(cfg *config.Config) (*smtpd.Settings, error) {
	set := &smtpd.Settings{
		Hostname:        cfg.Hostname,
		Dir:             newDirectory(s.env, cfg),
		MaxMessageBytes: cfg.SMTP.MaxMessageSize,
		MaxRecipients:   cfg.SMTP.MaxRecipients,
		IdleTimeout:     cfg.SMTP.IdleTimeout.D(),
		MaxConns:        cfg.SMTP.MaxConnections,
		MaxConnsPerIP:   cfg.SMTP.MaxConnectionsPerIP,
		MaxConnsPerNet:  cfg.SMTP.MaxConnectionsPerNet,
		DropDir:         cfg.SMTP.DropDir,
	}
	set.AllowOutsideLocalSenders = !cfg.SMTP.LocalSenderCheck
	if s.env.Link != nil {
		set.Spool = s.env.Link
	}
	if p := cfg.PrimaryDomain(); p != "" {
		set.Postmaster = "postmaster@" + p
	}
	for _, n := range cfg.RelayNetworks {
		p, err := config.ParseCIDR(n)
		if err != nil {
			return nil, err
		}
		set.RelayNetworks = append(set.RelayNetworks, p)
	}
	tc, err := s.env.TLSConfig(cfg)
	if err != nil {
		return nil, err
	}
	set.TLSConfig = tc
	return set, nil
}

func (s *smtpService) Start(ctx context.Context, cfg *config.Config) error {
	q, err := queue.Open(filepath.Join(s.env.DataDir, "queue"))
	if err != nil {
		return err
	}
	st, err := store.Open(s.env.DataDir, cfg.Hostname, q, s.env.Log.With("service", "store"))
	if err != nil {
		return err
	}
	set, err := s.settings(cfg)
	if err != nil {
		st.Close()
		return err
	}
	s.queue, s.store = q, st
	s.env.Queue, s.env.Store = q, st
	s.srv = smtpd.New(st, set, s.env.Log.With("service", "smtp"))
	if err := s.listen(cfg); err != nil {
		s.srv.Close()
		st.Close()
		return err
	}
	return nil
}

func listenAddrs(cfg *config.Config) map[smtpd.ListenerKind]string {
	return map[smtpd.ListenerKind]string{
		smtpd.MX:            cfg.SMTP.MX,
		smtpd.Submission:    cfg.SMTP.Submission,
		smtpd.SubmissionTLS: cfg.SMTP.SubmissionTLS,
	}
}

// listen opens listeners whose address is new and closes those whose
// address went away.
func (s *smtpService) listen(cfg *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for kind, addr := range listenAddrs(cfg) {
		if s.addrs[kind] == addr && (addr == "" || s.bound[kind] != nil) {
			continue
		}
		if old := s.bound[kind]; old != nil {
			s.srv.StopListener(old)
			delete(s.bound, kind)
		}
		s.addrs[kind] = addr
		if addr == "" {
			continue
		}
		a, err := s.srv.ListenAndServe(kind, addr)
		if err != nil {
			return err
		}
		s.bound[kind] = a
	}
	return nil
}

func (s *smtpService) Reconfigure(cfg *config.Config) error {
	set, err := s.settings(cfg)
	if err != nil {
		return err
	}
	s.srv.Configure(set)
	return s.listen(cfg)
}

func (s *smtpService) Stop(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	s.store.Close()
	return err
}

func (s *smtpService) Listening() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, k := range []smtpd.ListenerKind{smtpd.MX, smtpd.Submission, smtpd.SubmissionTLS} {
		if a := s.bound[k]; a != nil {
			out = append(out, fmt.Sprintf("%-12s %s", k.String(), a))
		}
	}
	return out
}
