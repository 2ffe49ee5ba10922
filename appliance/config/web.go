package config

import (
	"net"
)

// Web holds the setup page's settings (see appliance/web).
type Web struct {
	// HTTPSListen serves the page over HTTPS with the box's certificate
	// (smtp.tls_cert, or the self-signed one); empty turns it off.
	HTTPSListen string `json:"https_listen"`
	// HTTPListen serves the page over plain HTTP, but only to clients in
	// the LAN: the relay networks, the box's own interface subnets and
	// loopback. Everyone else gets 403. Empty turns it off.
	HTTPListen string `json:"http_listen"`
	// ForceHTTPS makes HTTPListen only redirect to HTTPS.
	ForceHTTPS bool `json:"force_https"`
	// DevListen serves plain HTTP on a loopback address, for trying the
	// box on a workstation ("make run" sets 127.0.0.1:8080). Empty: off.
	DevListen string `json:"dev_listen"`
}

// DefaultWeb returns the setup page's defaults: the standard ports, no
// development listener.
func DefaultWeb() Web {
	return Web{HTTPSListen: ":443", HTTPListen: ":80"}
}

func (w *Web) validate(p string) Errors {
	var errs Errors
	seen := map[string]string{}
	for _, l := range []struct{ f, v string }{{"https_listen", w.HTTPSListen}, {"http_listen", w.HTTPListen}, {"dev_listen", w.DevListen}} {
		if err := checkListen(l.v); err != nil {
			errs = append(errs, fieldErr(p+"."+l.f, "%v", err))
			continue
		}
		if l.v == "" {
			continue
		}
		if other, dup := seen[l.v]; dup {
			errs = append(errs, fieldErr(p+"."+l.f, "%q is also %s.%s", l.v, p, other))
		}
		seen[l.v] = l.f
	}
	if w.DevListen != "" {
		if host, _, err := net.SplitHostPort(w.DevListen); err == nil {
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				errs = append(errs, fieldErr(p+".dev_listen", "%q: must be a loopback address like 127.0.0.1:8080 (it serves plain HTTP to whoever reaches it)", w.DevListen))
			}
		}
	}
	if w.ForceHTTPS && w.HTTPSListen == "" {
		errs = append(errs, fieldErr(p+".force_https", "needs web.https_listen (there is nothing to redirect to)"))
	}
	return errs
}
