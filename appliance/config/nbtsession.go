package config

import (
	"time"

	"concierge/nbt/session"
)

// NBTSessions are the settings of the NetBIOS session service (139/tcp)
// and datagram service (138/udp), part of the nbt section.
type NBTSessions struct {
	// SessionMaxConns bounds the concurrent connections to 139/tcp,
	// SessionMaxConnsPerIP those from one address.
	SessionMaxConns      int `json:"session_max_conns"`
	SessionMaxConnsPerIP int `json:"session_max_conns_per_ip"`
	// SessionMaxMessage is the longest SESSION MESSAGE accepted (bytes,
	// at most 131071).
	SessionMaxMessage int `json:"session_max_message"`
	// SessionIdle closes a session without messages for this long;
	// SessionKeepAlive is how often a KEEP ALIVE goes to an idle caller.
	SessionIdle      Duration `json:"session_idle"`
	SessionKeepAlive Duration `json:"session_keepalive"`
	// Gateways map a NetBIOS name the box claims to a TCP service:
	// "ACCOUNTS#20=10.0.0.5:8080". Sessions called to the name are
	// proxied to it.
	Gateways []string `json:"gateways"`
	// Retarget sends callers of a name to another host:
	// "OLDSERVER#20=10.0.0.9:139".
	Retarget []string `json:"retarget"`
	// ReverseGateways open a TCP port on the box's LAN addresses whose
	// connections become NetBIOS sessions to a LAN host:
	// "8139=FILES#20". The name is resolved through the WINS table, then
	// by a broadcast query.
	ReverseGateways []string `json:"reverse_gateways"`
}

func defaultNBTSessions() NBTSessions {
	return NBTSessions{
		SessionMaxConns:      session.DefaultMaxConns,
		SessionMaxConnsPerIP: session.DefaultMaxConnsPerIP,
		SessionMaxMessage:    session.DefaultMaxMessage,
		SessionIdle:          Duration(session.DefaultIdle),
		SessionKeepAlive:     Duration(session.DefaultKeepAlive),
	}
}

func (s *NBTSessions) validate(p, scope string) Errors {
	var errs Errors
	if s.SessionMaxConns < 1 || s.SessionMaxConns > 10000 {
		errs = append(errs, fieldErr(p+".session_max_conns", "must be between 1 and 10000, not %d", s.SessionMaxConns))
	}
	if s.SessionMaxConnsPerIP < 1 || s.SessionMaxConnsPerIP > s.SessionMaxConns {
		errs = append(errs, fieldErr(p+".session_max_conns_per_ip", "must be between 1 and session_max_conns, not %d", s.SessionMaxConnsPerIP))
	}
	if s.SessionMaxMessage < 512 || s.SessionMaxMessage > session.DefaultMaxMessage {
		errs = append(errs, fieldErr(p+".session_max_message", "must be between 512 and %d bytes, not %d", session.DefaultMaxMessage, s.SessionMaxMessage))
	}
	for _, d := range []struct {
		f        string
		v        Duration
		min, max time.Duration
	}{
		{"session_idle", s.SessionIdle, time.Second, 24 * time.Hour},
		{"session_keepalive", s.SessionKeepAlive, time.Second, time.Hour},
	} {
		if d.v.D() < d.min || d.v.D() > d.max {
			errs = append(errs, fieldErr(p+"."+d.f, "must be between %s and %s, not %s", d.min, d.max, d.v))
		}
	}
	seen := map[string]string{}
	check := func(field, name string) {
		if prev, ok := seen[name]; ok {
			errs = append(errs, fieldErr(field, "%s is already mapped by %s", name, prev))
		}
		seen[name] = field
	}
	for i, g := range s.Gateways {
		f := p + ".gateways[" + itoa(i) + "]"
		gw, err := session.ParseGateway(g, scope)
		if err != nil {
			errs = append(errs, fieldErr(f, "%v (write NAME#20=host:port)", err))
			continue
		}
		check(f, gw.Name.String())
	}
	for i, r := range s.Retarget {
		f := p + ".retarget[" + itoa(i) + "]"
		rt, err := session.ParseRetarget(r, scope)
		if err != nil {
			errs = append(errs, fieldErr(f, "%v (write NAME#20=ip:port)", err))
			continue
		}
		check(f, rt.Name.String())
	}
	ports := map[int]string{}
	for i, r := range s.ReverseGateways {
		f := p + ".reverse_gateways[" + itoa(i) + "]"
		rv, err := session.ParseReverse(r, scope)
		if err != nil {
			errs = append(errs, fieldErr(f, "%v (write PORT=NAME#20)", err))
			continue
		}
		if prev, ok := ports[rv.Port]; ok {
			errs = append(errs, fieldErr(f, "port %d is already used by %s", rv.Port, prev))
		}
		ports[rv.Port] = f
	}
	return errs
}
