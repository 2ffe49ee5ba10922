package appliance

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"concierge/appliance/config"
	"concierge/internal/mailaddr"
	"concierge/smtpd/deliver"
	"concierge/smtpd/dsn"
	"concierge/smtpd/queue"
	"concierge/smtpd/store"
)

// deliveryService runs the queue runner: it sends queued mail by MX
// lookup or through the smarthost, and turns failures into bounces that
// land in local Maildirs or go back into the queue.
type deliveryService struct {
	env       *Env
	cfg       atomic.Pointer[config.Config]
	transport atomic.Pointer[deliver.Transport]
	runner    *queue.Runner
	cancel    context.CancelFunc
	done      chan struct{}
}

func newDeliveryService(env *Env) Service { return &deliveryService{env: env} }

func (s *deliveryService) Name() string { return "delivery" }

// newTransport builds the SMTP client side from the settings.
func (s *deliveryService) newTransport(cfg *config.Config) (*deliver.Transport, error) {
	d := cfg.Delivery
	t := &deliver.Transport{
		Hostname: cfg.Hostname,
		Resolver: &deliver.Resolver{Servers: d.DNSServers},
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
	s.runner = queue.NewRunner(s.env.Queue, s, s.notify, runnerSettings(cfg), s.env.Log.With("service", "delivery"))
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
	s.runner.Configure(runnerSettings(cfg))
	return nil
}

func (s *deliveryService) Stop(ctx context.Context) error {
	s.cancel()
	defer func() {
		if t := s.transport.Load(); t != nil {
			t.CloseIdle()
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
// never touches the network.
func (s *deliveryService) Send(ctx context.Context, domain, from string, rcpts []string, body *io.SectionReader) []error {
	cfg := s.cfg.Load()
	if cfg.IsLocalDomain(domain) {
		return s.sendLocal(ctx, cfg, from, rcpts, body)
	}
	return s.transport.Load().Send(ctx, domain, from, rcpts, body)
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

func (s *deliveryService) sendLocal(ctx context.Context, cfg *config.Config, from string, rcpts []string, body *io.SectionReader) []error {
	res := make([]error, len(rcpts))
	dir := newDirectory(s.env, cfg)
	var maildirs []string
	var remote []queue.Recipient
	for i, r := range rcpts {
		a, err := mailaddr.Parse(r)
		users, rem, ok := dir.Lookup(a)
		if err != nil || !ok {
			res[i] = &localError{perm: true, msg: "<" + r + ">: no such user here"}
			continue
		}
		for _, u := range users {
			if md := s.env.MailDir(u); !slices.Contains(maildirs, md) {
				maildirs = append(maildirs, md)
			}
		}
		for _, ra := range rem {
			remote = append(remote, queue.Recipient{Addr: ra, State: queue.Pending})
		}
	}
	if len(maildirs) == 0 && len(remote) == 0 {
		return res
	}
	err := s.store(ctx, from, io.NewSectionReader(body, 0, body.Size()), maildirs, remote)
	for i := range res {
		if res[i] == nil && err != nil {
			res[i] = &localError{msg: err.Error()}
		}
	}
	return res
}

// store writes a message with the given reverse-path durably into the
// Maildirs and, for remote recipients, into the queue.
func (s *deliveryService) store(ctx context.Context, from string, body io.Reader, maildirs []string, remote []queue.Recipient) error {
	st := s.env.Store
	m, err := st.Create()
	if err != nil {
		return err
	}
	fmt.Fprintf(m, "Return-Path: <%s>\r\n", from)
	off := m.Size()
	if _, err := io.Copy(m, body); err != nil {
		m.Abort()
		return err
	}
	d := store.Delivery{Maildirs: maildirs}
	if len(remote) > 0 {
		d.Queue = &queue.Envelope{From: from, Recipients: remote, Received: time.Now().UTC(), BodyOffset: off}
	}
	return m.Commit(ctx, d)
}

// notify sends a delivery status notification for a queued message: to a
// local sender's Maildir, into the queue for a remote sender, and for a
// bounce that could not be delivered (null sender: a double bounce) to the
// postmaster's Maildir. Mail is never dropped: without anyone to tell, the
// error keeps the message in the queue.
func (s *deliveryService) notify(ctx context.Context, n queue.Notice) error {
	cfg := s.cfg.Load()
	primary := cfg.PrimaryDomain()
	if primary == "" {
		primary = cfg.Hostname
	}
	var hdr []byte
	if f, err := os.Open(n.MsgPath); err == nil {
		hdr, _ = dsn.Headers(io.NewSectionReader(f, n.Env.BodyOffset, 1<<62))
		f.Close()
	}
	rep := &dsn.Report{ReportingMTA: cfg.Hostname, From: "MAILER-DAEMON@" + primary, To: n.Env.From,
		QueueID: n.Env.ID, Arrival: n.Env.Received, RetryUntil: n.RetryUntil, Headers: hdr}
	for _, rc := range n.Recipients {
		action := dsn.Failed
		if n.Kind == queue.Delay {
			action = dsn.Delayed
		}
		rep.Recipients = append(rep.Recipients, dsn.Recipient{Addr: rc.Addr, Action: action, Status: rc.Status,
			Diagnostic: rc.Diagnostic, RemoteMTA: rc.RemoteMTA, Reason: strings.TrimPrefix(rc.LastError, "deliver: "),
			LastAttempt: rc.LastTry})
	}
	pm := cfg.PostmasterUser()
	var maildirs []string
	var remote []queue.Recipient
	double := n.Env.From == ""
	if !double {
		a, err := mailaddr.Parse(n.Env.From)
		switch {
		case err != nil:
			double = true
		case cfg.IsLocalDomain(a.Domain):
			users, rem, ok := newDirectory(s.env, cfg).Lookup(a)
			if !ok {
				double = true
			}
			for _, u := range users {
				maildirs = append(maildirs, s.env.MailDir(u))
			}
			for _, r := range rem {
				remote = append(remote, queue.Recipient{Addr: r, State: queue.Pending})
			}
		default:
			remote = append(remote, queue.Recipient{Addr: a.String(), State: queue.Pending})
		}
	}
	if double {
		if n.Kind == queue.Delay {
			return nil // nobody to warn; the failure, if it comes, goes to the postmaster
		}
		// RFC 5321 6.1 and 6.2: a notice that cannot be delivered goes
		// to a person, never back into the loop.
		if pm == "" {
			return errors.New("delivery: a bounce failed and there is no postmaster user to receive it")
		}
		rep.To = "postmaster@" + primary
		maildirs, remote = []string{s.env.MailDir(pm)}, nil
	} else if cfg.Delivery.PostmasterCopy && pm != "" && n.Kind == queue.Failure {
		if md := s.env.MailDir(pm); !slices.Contains(maildirs, md) {
			maildirs = append(maildirs, md)
		}
	}
	if len(maildirs) == 0 && len(remote) == 0 {
		return errors.New("delivery: nobody to send the notice to")
	}
	err := s.store(ctx, "", strings.NewReader(string(rep.Bytes())), maildirs, remote)
	if err == nil {
		kind := "bounce"
		if n.Kind == queue.Delay {
			kind = "delay warning"
		}
		s.env.Log.Info(kind+" sent", "service", "delivery", "id", n.Env.ID, "to", rep.To, "recipients", len(rep.Recipients))
	}
	return err
}

// queueDir is the queue directory under a data directory.
func queueDir(dataDir string) string { return filepath.Join(dataDir, "queue") }

// QueueRequest hands an admin request (queue.ReqFlush, ReqRetry, ReqDel)
// to the server running on dataDir. It reports false when no server is
// running; the caller then acts on the queue files itself.
func QueueRequest(dataDir, kind, arg string) (bool, error) {
	if !serverRunning(dataDir) {
		return false, nil
	}
	q := &queue.Queue{Dir: queueDir(dataDir)}
	return true, q.Request(kind, arg)
}

// serverRunning reports whether a server holds the data directory's PID
// file lock.
func serverRunning(dataDir string) bool {
	f, err := os.Open(filepath.Join(dataDir, pidFile))
	if err != nil {
		return false
	}
	defer f.Close()
	// The lock is held while a server runs; taking it here (released at
	// Close) means none does.
	return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil
}
