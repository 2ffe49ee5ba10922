package web

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// LANOnly serves h to clients whose address is in one of the networks
// allowed returns (read at each request, so they change live), and answers
// everyone else 403: the plain-HTTP page is for the office LAN only.
func LANOnly(h http.Handler, allowed func() []netip.Prefix) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !InNetworks(clientIP(r), allowed()) {
			w.Header().Set("Content-Security-Policy", ContentSecurityPolicy)
			w.Header().Set("X-Content-Type-Options", "nosniff")
			forbidden(w, "The setup page answers plain HTTP only on the office network. Use HTTPS.")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// InNetworks says whether the address ip (text) is in one of nets.
func InNetworks(ip string, nets []netip.Prefix) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap().WithZone("")
	for _, n := range nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// Loopback are the loopback networks, always in the LAN.
var Loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// InterfaceNetworks lists the networks of the box's own interfaces.
func InterfaceNetworks() []netip.Prefix {
	var out []netip.Prefix
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		bits, _ := n.Mask.Size()
		ip = ip.Unmap()
		if ip.Is4() && bits > 32 {
			bits -= 96
		}
		if ip.IsLinkLocalUnicast() && ip.Is6() {
			continue // fe80::/64 is on every IPv6 link: not the office's own
		}
		out = append(out, netip.PrefixFrom(ip, bits).Masked())
	}
	return out
}

// RedirectHTTPS answers every request with a redirect to the same path
// over HTTPS on httpsPort ("" or "443": the default port).
func RedirectHTTPS(httpsPort string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		if host == "" || strings.ContainsAny(host, "/\\@?#% ") {
			http.Error(w, "Use HTTPS.", http.StatusBadRequest)
			return
		}
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		if httpsPort != "" && httpsPort != "443" {
			host += ":" + httpsPort
		}
		w.Header().Set("Content-Security-Policy", ContentSecurityPolicy)
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusFound)
	})
}
