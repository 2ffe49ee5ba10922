package web

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"concierge/appliance/control"
)

// The network page: the interfaces live, a form for an interface's static
// address, and the confirmation of a change that moved the box's address.

// networkFields are the network form's fields.
var networkFields = []string{"interface", "address", "gateway", "dns"}

type networkData struct {
	control.NetworkShow
	// Via is the box's address this page was asked on.
	Via string
	// Interface, Address, Gateway, DNS fill the form: the setting of the
	// interface the browser uses, else the first one.
	Interface, Address, Gateway, DNS string
	// ConfirmHere says the page is on the new address of the change on
	// trial (where it can be confirmed).
	ConfirmHere bool
	// NewURL is the page on the new address.
	NewURL string
}

// localAddr is the box's address a request came in on (invalid when
// unknown).
func localAddr(ctx context.Context) netip.AddrPort {
	if a, ok := ctx.Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
		}
	}
	return netip.AddrPort{}
}

func loadNetwork(ctx context.Context, c control.Caller, r *http.Request) (any, error) {
	d := &networkData{}
	if err := c.Call(ctx, control.OpNetworkShow, nil, &d.NetworkShow); err != nil {
		return nil, err
	}
	via := localAddr(r.Context())
	if via.IsValid() {
		d.Via = via.Addr().String()
	}
	for _, l := range d.Links {
		for _, p := range l.Addrs {
			if p.Addr() == via.Addr() && d.Interface == "" {
				d.Interface, d.Address, d.Gateway = l.Name, p.String(), ""
				if l.Gateway.IsValid() {
					d.Gateway = l.Gateway.String()
				}
			}
		}
	}
	for _, i := range d.Interfaces {
		if d.Interface == "" || i.Name == d.Interface {
			d.Interface, d.Address, d.Gateway, d.DNS = i.Name, i.Address, i.Gateway, strings.Join(i.DNS, ", ")
			break
		}
	}
	if t := d.Trial; t != nil {
		d.ConfirmHere = via.Addr() == t.New.Addr()
		d.NewURL = pageURL(r, t.New.Addr(), "/network")
	}
	return d, nil
}

// pageURL is path on the box's address a, through the listener (scheme
// and port) the request came in on.
func pageURL(r *http.Request, a netip.Addr, path string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	host := a.String()
	if via := localAddr(r.Context()); via.IsValid() {
		host = netip.AddrPortFrom(a, via.Port()).String()
	}
	return scheme + "://" + host + path
}

// networkSet is the network form. A change that takes away the address
// the browser uses runs on trial: the answer sends the browser to the
// page on the new address, where the admin logs in and confirms it.
func (s *Server) networkSet(w http.ResponseWriter, r *http.Request) {
	f := map[string]string{}
	for _, k := range networkFields {
		f[k] = strings.TrimSpace(r.PostFormValue(k))
	}
	args := control.Args{"interface": f["interface"], "address": f["address"], "gateway": f["gateway"], "dns": listArg(f["dns"])}
	if via := localAddr(r.Context()); via.IsValid() {
		args["via"] = via.Addr().String()
	}
	ctx, cancel := context.WithTimeout(r.Context(), OpTimeout)
	var ch control.NetworkChange
	err := s.ctl.Call(ctx, control.OpNetworkSet, args, &ch)
	cancel()
	if err != nil {
		v := viewOf("network")
		p := s.loadPage(r, v)
		failed(&p.page, "network", err, f, map[string]string{"": "address"})
		s.render(w, r, http.StatusUnprocessableEntity, v.name, &p.page)
		return
	}
	sess := sessionOf(r)
	switch {
	case ch.Trial != nil:
		s.log.Info("web: address changed on trial; sending the browser to the new address", "ip", clientIP(r), "new", ch.Trial.New)
		http.Redirect(w, r, pageURL(r, ch.Trial.New.Addr(), "/network"), http.StatusSeeOther)
		return
	case !ch.Apply:
		s.sessions.setNotice(sess, "Saved. This box does not apply network settings (network.apply is off); they are kept for when it does.")
	default:
		s.sessions.setNotice(sess, "Saved: "+f["interface"]+" has the address "+f["address"]+".")
	}
	http.Redirect(w, r, "/network", http.StatusSeeOther)
}

// confirmNetwork is the confirm form: it must come in on the new address.
func confirmNetwork(ctx context.Context, c control.Caller, f map[string]string) (string, error) {
	args := control.Args{}
	if via := localAddr(ctx); via.IsValid() {
		args["via"] = via.Addr().String()
	}
	var ch control.NetworkChange
	if err := c.Call(ctx, control.OpNetworkConfirm, args, &ch); err != nil {
		return "", err
	}
	return "Confirmed: the box keeps the address " + ch.Trial.New.String() + ".", nil
}
