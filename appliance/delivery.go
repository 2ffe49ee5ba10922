package appliance

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"concierge/appliance/config"
	"concierge/internal/mailaddr"
	"concierge/smtpd/deliver"
	"concierge/smtpd/queue"
	"concierge/smtpd/route"
	"concierge/smtpd/store"
)

// deliveryService runs the queue runner: it sends queued mail by MX
// lookup or through the smarthost, and stores the notices smtpd/route
// makes of failures into local Maildirs or back into the queue.
type deliveryService struct {
	env       *Env
	cfg       atomic.Pointer[config.Config]
	transport atomic.Pointer[deliver.Transport]
	// direct sends by MX lookup even with a smarthost: the relay domains
	// held for ETRN go to their own primary MX.
	direct atomic.Pointer[deliver.Transport]
	runner *queue.Runner
	cancel context.CancelFunc
	done   chan struct{}
}

func newDeliveryService(env *Env) Service { return &deliveryService{env: env} }

func (s *deliveryService) Name() string { return "delivery" }

// resolver asks the DNS servers of the settings (config.Resolvers): the
// one way the box looks names up, as it has no /etc/resolv.conf.
func resolver(cfg *config.Config) *deliver.Resolver {
	return &deliver.Resolver{Servers: cfg.Resolvers()}
}

// newTransport builds the SMTP client side from the settings.
func (s *deliveryService) newTransport(cfg *config.Config) (*deliver.Transport, error) {
	d := cfg.Delivery
	t := &deliver.Transport{
		Hostname: cfg.Hostname,
		Resolver: resolver(cfg),
		Log:      s.env.Log.With("service", "delivery"),
	}
	if d.Smarthost != "" {
		sh := &deliver.Smarthost{Addr: d.Smarthost, User: d.SmarthostUser, Password: d.SmarthostPassword,
			ImplicitTLS: d.SmarthostTLS == "tls"}
		if d.SmarthostCAFile != "" {
			pem, err := os.ReadFile(d.SmarthostCAFile)
			if err != nil {
				return nil, fmt.Errorf("delivery.smarthost_ca_file: %w", err)
			}
			pool, err := x509.SystemCertPool()
			if err != nil || pool == nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("delivery.smarthost_ca_file: no PEM certificate in %s", d.SmarthostCAFile)
			}
			sh.TLSConfig = &tls.Config{RootCAs: pool}
		}
		t.Smarthost = sh
	}
	return t, nil
}

// directTransport sends by MX lookup whatever the smarthost setting.
func (s *deliveryService) directTransport(cfg *config.Config) *deliver.Transport {
	return &deliver.Transport{
		Hostname: cfg.Hostname,
		Resolver: resolver(cfg),
		Log:      s.env.Log.With("service", "delivery"),
	}
}

func runnerSettings(cfg *config.Config) queue.Settings {
	d := cfg.Delivery
	set := queue.Settings{WarnAfter: d.WarnAfter.D(), GiveUpAfter: d.GiveUpAfter.D(),
		MaxConns: d.MaxConnections, MaxConnsPerDomain: d.MaxConnectionsPerDomain}
	for _, r := range d.RetrySchedule {
		set.Schedule = append(set.Schedule, r.D())
	}
	return set
}

func (s *deliveryService) Start(ctx context.Context, cfg *config.Config) error {
	if s.env.Queue == nil || s.env.Store == nil {
		return errors.New("delivery: the SMTP service must start first (it opens the queue)")
	}
	t, err := s.newTransport(cfg)
	if err != nil {
		return err
	}
	s.cfg.Store(cfg)
	s.transport.Store(t)
	s.direct.Store(s.directTransport(cfg))
	s.runner = queue.NewRunner(s.env.Queue, s, s.notify, runnerSettings(cfg), s.env.Log.With("service", "delivery"))
	if s.env.Link != nil {
		s.runner.Gate = s.env.Link
		s.env.Link.setRunner(s.runner)
	}
	rctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go func() {
		defer close(s.done)
		s.runner.Run(rctx)
	}()
	return nil
}

func (s *deliveryService) Reconfigure(cfg *config.Config) error {
	t, err := s.newTransport(cfg)
	if err != nil {
		return err
	}
	s.cfg.Store(cfg)
	if old := s.transport.Swap(t); old != nil {
		old.CloseIdle()
	}
	if old := s.direct.Swap(s.directTransport(cfg)); old != nil {
		old.CloseIdle()
	}
	s.runner.Configure(runnerSettings(cfg))
	return nil
}

func (s *deliveryService) Stop(ctx context.Context) error {
	s.cancel()
	defer func() {
		for _, t := range []*deliver.Transport{s.transport.Load(), s.direct.Load()} {
			if t != nil {
				t.CloseIdle()
			}
		}
	}()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return errors.New("delivery: deliveries still running at shutdown (they stay queued)")
	}
}

func (s *deliveryService) Listening() []string {
	cfg := s.cfg.Load()
	if cfg == nil {
		return nil
	}
	if cfg.Delivery.Smarthost != "" {
		return []string{fmt.Sprintf("%-12s via smarthost %s (%s)", "delivery", cfg.Delivery.Smarthost, cfg.Delivery.SmarthostTLS)}
	}
	return []string{fmt.Sprintf("%-12s by MX lookup", "delivery")}
}

// Send implements queue.Sender. Mail for a local domain (queued before a
// configuration change made the domain local) goes into the Maildirs and
// never touches the network. Mail our aliases forward goes out with an
// SRS sender, so that its bounces come back here.
func (s *deliveryService) Send(ctx context.Context, j *queue.Job) []queue.Result {
	cfg := s.cfg.Load()
	dir := newDirectory(s.env, cfg)
	if dir.IsLocalDomain(j.Domain) {
		return s.sendLocal(ctx, dir, j)
	}
	if s.env.Link != nil && s.env.Link.isRelay(j.Domain) {
		return s.direct.Load().Send(ctx, j)
	}
	if j.Forwarded {
		fj := *j
		fj.From = dir.ForwardSender(j.From)
		j = &fj
	}
	return s.transport.Load().Send(ctx, j)
}

// localError is a failed local delivery.
type localError struct {
	perm bool
	msg  string
}

func (e *localError) Error() string   { return "local delivery: " + e.msg }
func (e *localError) Permanent() bool { return e.perm }
func (e *localError) Status() string {
	if e.perm {
		return "5.1.1"
	}
	return "4.3.0"
}

func (s *deliveryService) sendLocal(ctx context.Context, dir *directory, j *queue.Job) []queue.Result {
	res := make([]queue.Result, len(j.Rcpts))
	var maildirs []string
	var remote []queue.Recipient
	for i, rc := range j.Rcpts {
		a, err := mailaddr.Parse(rc.Addr)
		users, rem, ok := dir.Lookup(a)
		if err != nil || !ok {
			res[i].Err = &localError{perm: true, msg: "<" + rc.Addr + ">: no such user here"}
			continue
		}
		res[i].Success = "delivered" // RFC 3461 5.2.3
		for _, u := range users {
			if md := dir.Maildir(u); !slices.Contains(maildirs, md) {
				maildirs = append(maildirs, md)
			}
		}
		for _, ra := range rem {
			// RFC 3461 5.2.7: the DSN request goes with the forwarded
			// copy, which names the address it was for.
			orcpt := rc.ORcpt
			if orcpt == "" {
				orcpt = "rfc822;" + rc.Addr
			}
			remote = append(remote, queue.Recipient{Addr: ra, State: queue.Pending, Forwarded: true, Notify: rc.Notify, ORcpt: orcpt})
		}
	}
	if len(maildirs) == 0 && len(remote) == 0 {
		return res
	}
	env := &queue.Envelope{From: j.From, Recipients: remote, Ret: j.Ret, EnvID: j.EnvID}
	err := s.store(ctx, io.NewSectionReader(j.Body, 0, j.Body.Size()), maildirs, env)
	for i := range res {
		if res[i].Err == nil && err != nil {
			res[i] = queue.Result{Err: &localError{msg: err.Error()}}
		}
	}
	return res
}

// store writes a message with the envelope's reverse-path durably into
// the Maildirs and, when it has recipients, into the queue.
func (s *deliveryService) store(ctx context.Context, body io.Reader, maildirs []string, env *queue.Envelope) error {
	st := s.env.Store
	m, err := st.Create()
	if err != nil {
		return err
	}
	fmt.Fprintf(m, "Return-Path: <%s>\r\n", env.From)
	off := m.Size()
	if _, err := io.Copy(m, body); err != nil {
		m.Abort()
		return err
	}
	d := store.Delivery{Maildirs: maildirs}
	if len(env.Recipients) > 0 {
		env.Received, env.BodyOffset = time.Now().UTC(), off
		d.Queue = env
	}
	return m.Commit(ctx, d)
}

// notify sends a delivery status notification for a queued message;
// smtpd/route decides where it goes. Mail is never dropped: without
// anyone to tell, the error keeps the message in the queue.
func (s *deliveryService) notify(ctx context.Context, n queue.Notice) error {
	cfg := s.cfg.Load()
	msg, done := route.OpenMessage(n.MsgPath)
	defer done()
	nt, err := newDirectory(s.env, cfg).Notice(route.NoticeSettings{Hostname: cfg.Hostname, PostmasterCopy: cfg.Delivery.PostmasterCopy}, n, msg)
	if err != nil || nt == nil {
		return err
	}
	var maildirs []string
	for _, u := range nt.Users {
		maildirs = append(maildirs, s.env.MailDir(u))
	}
	var remote []queue.Recipient
	for _, r := range nt.Remote {
		remote = append(remote, queue.Recipient{Addr: r, State: queue.Pending})
	}
	err = s.store(ctx, bytes.NewReader(nt.Message), maildirs, &queue.Envelope{Recipients: remote})
	if err == nil {
		kind := map[queue.NoticeKind]string{queue.Failure: "bounce", queue.Delay: "delay warning", queue.Success: "success notice"}[n.Kind]
		s.env.Log.Info(kind+" sent", "service", "delivery", "id", n.Env.ID, "to", nt.To, "recipients", len(n.Recipients))
	}
	return err
}
