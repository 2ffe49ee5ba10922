package control

import (
	"context"
	"errors"

	"concierge/nbt/session"
)

// The NetBIOS session and datagram ops.
const (
	OpNBTSessions = "nbt.sessions" // → NBTSessions (server only)
	OpNBTSend     = "nbt.send"     // {name, message}: a datagram to a NetBIOS name (server only)
)

// NBTLive is the running session and datagram services.
type NBTLive interface {
	Sessions() NBTSessions
	Send(to, message string) error
}

// NBTSessions is the state of the session and datagram services.
type NBTSessions struct {
	Enabled          bool                  `json:"enabled"`
	Running          bool                  `json:"running"`
	Sessions         []session.SessionInfo `json:"sessions"`
	SessionCounters  map[string]uint64     `json:"session_counters,omitempty"`
	DatagramCounters map[string]uint64     `json:"datagram_counters,omitempty"`
}

var errNBTOff = errors.New("the NetBIOS services are not running")

func init() {
	register(map[string]opDef{
		OpNBTSessions: {live: true, run: func(s *Service, ctx context.Context, a Args) (any, error) {
			l := s.opt.Live.NBT()
			if l == nil {
				return NBTSessions{Sessions: []session.SessionInfo{}}, nil
			}
			return l.Sessions(), nil
		}},
		OpNBTSend: {live: true, args: []string{"name", "message"}, run: func(s *Service, ctx context.Context, a Args) (any, error) {
			l := s.opt.Live.NBT()
			if l == nil {
				return nil, errNBTOff
			}
			if err := l.Send(a["name"], a["message"]); err != nil {
				return nil, err
			}
			return map[string]string{"sent": a["name"]}, nil
		}},
	})
}
