package appliance

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"concierge/appliance/config"
	"concierge/appliance/web"
)

// webService serves the setup page (package web): HTTPS on
// web.https_listen with the box's certificate, plain HTTP on
// web.http_listen to the LAN only (or a redirect to HTTPS with
// web.force_https), and plain HTTP on the loopback web.dev_listen.
// Listeners follow the settings live; the page and its sessions outlive
// them (and a restart of the services).
type webService struct {
	env  *Env
	page *web.Server

	tls atomic.Pointer[tls.Config]
	// lan are the networks plain HTTP answers: loopback, the relay
	// networks (lanFixed) and the box's interface subnets, read again
	// after lanRefresh (an address from DHCP comes without a settings
	// change).
	lanMu    sync.Mutex
	lanFixed []netip.Prefix
	lan      []netip.Prefix
	lanAt    time.Time
	force    atomic.Bool
	// httpsPort is the port HTTP redirects to.
	httpsPort atomic.Pointer[string]

	mu      sync.Mutex
	addrs   map[string]string // configured address by listener name
	servers map[string]*webListener
}

type webListener struct {
	srv *http.Server
	l   net.Listener
	url string
}

// The web listeners, in the order they are listed.
var webListeners = []string{"https", "http", "dev"}

// webPages holds the one setup page of each Env: a restart of the
// services makes a new webService, but the page and its sessions stay, so
// the admin who asked for the restart stays logged in.
var webPages sync.Map // *Env → *web.Server

func newWebService(env *Env) Service {
	s := &webService{env: env, addrs: map[string]string{}, servers: map[string]*webListener{}}
	page, ok := webPages.Load(env)
	if !ok {
		page, _ = webPages.LoadOrStore(env, web.New(web.Options{Control: env.Control, Log: env.Log.With("service", "web")}))
	}
	s.page = page.(*web.Server)
	return s
}

func (s *webService) Name() string { return "web" }

func (s *webService) Start(ctx context.Context, cfg *config.Config) error {
	return s.Reconfigure(cfg)
}

func (s *webService) Reconfigure(cfg *config.Config) error {
	if cfg.Web.HTTPSListen != "" {
		tc, err := s.env.TLSConfig(cfg)
		if err != nil {
			return err
		}
		s.tls.Store(tc)
	}
	fixed := append([]netip.Prefix{}, web.Loopback...)
	for _, n := range cfg.RelayNetworks {
		if p, err := config.ParseCIDR(n); err == nil {
			fixed = append(fixed, p)
		}
	}
	s.lanMu.Lock()
	s.lanFixed, s.lan = fixed, nil
	s.lanMu.Unlock()
	s.force.Store(cfg.Web.ForceHTTPS)
	port := ""
	if _, p, err := net.SplitHostPort(cfg.Web.HTTPSListen); err == nil {
		port = p
	}
	s.httpsPort.Store(&port)
	return s.listen(map[string]string{"https": cfg.Web.HTTPSListen, "http": cfg.Web.HTTPListen, "dev": cfg.Web.DevListen})
}

// listen opens the listeners whose address is new and closes those whose
// address changed or went away.
func (s *webService) listen(want map[string]string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, name := range webListeners {
		addr := want[name]
		if s.addrs[name] == addr && (addr == "" || s.servers[name] != nil) {
			continue
		}
		if old := s.servers[name]; old != nil {
			stopListener(old.srv)
			delete(s.servers, name)
		}
		s.addrs[name] = addr
		if addr == "" {
			continue
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s listener: %w", name, err))
			s.addrs[name] = "" // try again at the next change
			continue
		}
		wl := &webListener{l: l, srv: web.NewHTTPServer(s.handler(name), s.env.Log)}
		scheme := "http"
		if name == "https" {
			scheme = "https"
			l = tls.NewListener(l, &tls.Config{
				GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return s.tls.Load(), nil },
			})
		}
		wl.url = scheme + "://" + urlHost(wl.l.Addr()) + "/"
		s.servers[name] = wl
		go func() {
			if err := wl.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.env.Log.Error("web: serve", "listener", name, "err", err)
			}
		}()
	}
	return errors.Join(errs...)
}

// webDrain bounds how long the requests in flight on a listener that
// moved may take to finish.
const webDrain = 10 * time.Second

// stopListener closes srv's listener at once and lets the requests in
// flight finish (within webDrain): the form that moved the box's address
// gets its answer on the connection it came in on.
func stopListener(srv *http.Server) {
	closed := make(chan struct{})
	srv.RegisterOnShutdown(func() { close(closed) })
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), webDrain)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
	}()
	<-closed // the listener is closed: its address may be bound again
}

func (s *webService) handler(name string) http.Handler {
	if name != "http" {
		return s.page
	}
	lanOnly := web.LANOnly(s.page, s.lanNetworks)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.force.Load() {
			web.RedirectHTTPS(*s.httpsPort.Load()).ServeHTTP(w, r)
			return
		}
		lanOnly.ServeHTTP(w, r)
	})
}

// lanRefresh is how long the box's interface subnets are taken as read.
const lanRefresh = time.Minute

func (s *webService) lanNetworks() []netip.Prefix {
	s.lanMu.Lock()
	defer s.lanMu.Unlock()
	if s.lan == nil || time.Since(s.lanAt) > lanRefresh {
		s.lan = append(slices.Clip(s.lanFixed), web.InterfaceNetworks()...)
		s.lanAt = time.Now()
	}
	return s.lan
}

// urlHost is the host:port of a URL for a listening address; an
// unspecified address becomes the loopback one.
func urlHost(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	ip := ta.IP
	if ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(ta.Port))
}

func (s *webService) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for name, wl := range s.servers {
		if err := wl.srv.Shutdown(ctx); err != nil {
			wl.srv.Close()
			errs = append(errs, err)
		}
		delete(s.servers, name)
		s.addrs[name] = ""
	}
	return errors.Join(errs...)
}

// Listening lists the page's addresses as URLs to open in a browser.
func (s *webService) Listening() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, name := range webListeners {
		if wl := s.servers[name]; wl != nil {
			what := "setup page"
			if name == "http" {
				what = "setup page, office network only"
			}
			out = append(out, fmt.Sprintf("%-12s %s (%s)", "web "+name, wl.url, what))
		}
	}
	return out
}
