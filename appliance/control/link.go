package control

import (
	"context"

	"concierge/appliance/link"
)

// The link ops (the dial-out link, appliance/link).
const (
	OpLinkStatus = "link.status" // → link.Status (server only)
	OpLinkUp     = "link.up"     // bring the link up now ("Connect now") → link.Status
	OpLinkDown   = "link.down"   // take the link down now → link.Status
)

// LinkControl is what the link ops need of the running link service.
type LinkControl interface {
	LinkStatus() link.Status
	LinkUp(reason string)
	LinkDown(reason string)
}

func init() {
	register(map[string]opDef{
		OpLinkStatus: {live: true, run: func(s *Service, ctx context.Context, a Args) (any, error) {
			return s.linkControl().LinkStatus(), nil
		}},
		OpLinkUp: {live: true, run: func(s *Service, ctx context.Context, a Args) (any, error) {
			l := s.linkControl()
			l.LinkUp("asked by the admin")
			return l.LinkStatus(), nil
		}},
		OpLinkDown: {live: true, run: func(s *Service, ctx context.Context, a Args) (any, error) {
			l := s.linkControl()
			l.LinkDown("asked by the admin")
			return l.LinkStatus(), nil
		}},
	})
}

func (s *Service) linkControl() LinkControl { return s.opt.Live.Link() }
