package config

// POP3 holds the POP3 server's settings.
type POP3 struct {
	Listen    string `json:"listen"`     // port 110, STLS
	ListenTLS string `json:"tls_listen"` // port 995, implicit TLS
	// TrustedNetworks may log in without TLS (CIDRs). Default: none.
	TrustedNetworks []string `json:"trusted_networks"`
}

// DefaultPOP3 returns the POP3 defaults.
func DefaultPOP3() POP3 {
	return POP3{Listen: ":110", ListenTLS: ":995"}
}

func (s *POP3) validate(p string) Errors {
	var errs Errors
	for _, l := range []struct{ f, v string }{{"listen", s.Listen}, {"tls_listen", s.ListenTLS}} {
		if err := checkListen(l.v); err != nil {
			errs = append(errs, fieldErr(p+"."+l.f, "%v", err))
		}
	}
	for i, n := range s.TrustedNetworks {
		if _, err := parseCIDR(n); err != nil {
			errs = append(errs, fieldErr(p+".trusted_networks["+itoa(i)+"]", "%v", err))
		}
	}
	return errs
}
