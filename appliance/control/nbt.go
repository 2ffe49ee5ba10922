package control

import (
	"context"
	"errors"
	"time"

	"concierge/nbt/session"
)

// The NetBIOS session and datagram ops.
const (
	OpNBTSessions = "nbt.sessions" // → NBTSessions (server only)
	OpNBTSend     = "nbt.send"     // {name, message}: a datagram to a NetBIOS name (server only)
	OpNBTMessages = "nbt.messages" // → []NBTMessage: the last datagrams to the box's NAME<03> (server only)
)

// NBTLive is the running session and datagram services.
type NBTLive interface {
	Sessions() NBTSessions
	Send(to, message string) error
	Messages() []NBTMessage
}

// NBTMessage is a datagram received on the box's messenger name NAME<03>
// (reassembled when it came in fragments).
type NBTMessage struct {
	Time   time.Time `json:"time"`
	From   string    `json:"from"`   // SOURCE_IP:SOURCE_PORT
	Source string    `json:"source"` // the sender's NetBIOS name
	Dest   string    `json:"dest"`
	Data   []byte    `json:"data"`
}

// NBTSessions is the state of the session and datagram services.
type NBTSessions struct {
	Enabled          bool                  `json:"enabled"`
	Running          bool                  `json:"running"`
	Sessions         []session.SessionInfo `json:"sessions"`
	SessionCounters  map[string]uint64     `json:"session_counters,omitempty"`
	DatagramCounters map[string]uint64     `json:"datagram_counters,omitempty"`
	// Reverse are the reverse gateways (a TCP port to a LAN host's
	// NetBIOS name) with their counters.
	Reverse []session.ReverseInfo `json:"reverse,omitempty"`
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
		OpNBTMessages: {live: true, run: func(s *Service, ctx context.Context, a Args) (any, error) {
			l := s.opt.Live.NBT()
			if l == nil {
				return []NBTMessage{}, nil
			}
			return l.Messages(), nil
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
