package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"concierge/appliance/config"
	"concierge/appliance/control"
	"concierge/nbt/browse"
	"concierge/nbt/datagram"
	"concierge/nbt/nameservice"
	"concierge/nbt/session"
	"concierge/nbt/wire"
)

// nbtExtra are the session (139/tcp) and datagram (138/udp) services that
// run beside the name service, on the same interfaces, and stop with it.
type nbtExtra struct {
	sess   *session.Server
	dgm    *datagram.Server
	browse *browse.Announcer // nil when browse announcements are off
	rev    []*session.ReverseGateway
	cancel context.CancelFunc
}

// gatewayNames are the names the name service claims for the gateways.
func gatewayNames(c config.NBT) []wire.Name {
	var out []wire.Name
	for _, g := range c.Gateways {
		if gw, err := session.ParseGateway(g, c.Scope); err == nil {
			out = append(out, gw.Name)
		}
	}
	return out
}

func sessionConfig(c config.NBT, ns *nameservice.Server) session.Config {
	sc := session.Config{
		Holds:         ns.Holds,
		MaxConns:      c.SessionMaxConns,
		MaxConnsPerIP: c.SessionMaxConnsPerIP,
		MaxMessage:    c.SessionMaxMessage,
		Idle:          c.SessionIdle.D(),
		KeepAlive:     c.SessionKeepAlive.D(),
	}
	sc.Server, _ = wire.MakeName(c.Name, 0x20, c.Scope)
	for _, g := range c.Gateways {
		if gw, err := session.ParseGateway(g, c.Scope); err == nil {
			sc.Gateways = append(sc.Gateways, gw)
		}
	}
	for _, r := range c.Retarget {
		if rt, err := session.ParseRetarget(r, c.Scope); err == nil {
			sc.Retargets = append(sc.Retargets, rt)
		}
	}
	return sc
}

// startExtra starts the session and datagram services for the running
// name service ns; browse announcements start once claimed is closed
// (the box holds its names).
func (s *nbtService) startExtra(ns *nameservice.Server, claimed <-chan struct{}) (*nbtExtra, error) {
	log := s.env.Log.With("service", "nbt")
	st := ns.Status()
	if len(st.Interfaces) == 0 {
		return nil, errors.New("no interface")
	}
	sc := sessionConfig(s.cur, ns)
	sc.Log = log
	x := &nbtExtra{sess: session.New(sc)}
	for _, i := range st.Interfaces {
		l, err := net.Listen("tcp4", net.JoinHostPort(i.Addr, fmt.Sprint(session.DefaultPort)))
		if err != nil {
			x.close()
			return nil, fmt.Errorf("nbt: session service: %w", err)
		}
		go x.sess.Serve(l)
	}
	if err := x.startReverse(s.cur, ns, st.Interfaces, log); err != nil {
		x.close()
		return nil, err
	}
	// One datagram socket on 0.0.0.0:138 receives the broadcasts of every
	// interface; what the box sends carries the first interface's address.
	addr, _ := netip.ParseAddr(st.Interfaces[0].Addr)
	bcast, _ := netip.ParseAddr(st.Interfaces[0].Broadcast)
	// As the WINS server the box is also the NBDD of its clients: the
	// group datagrams P-nodes send it go to the members in its table.
	x.dgm = datagram.New(datagram.Config{Addr: addr, Broadcast: bcast, Holds: ns.Holds, Lookup: ns.Lookup,
		Resolve: ns.Resolve, NBDD: s.cur.WINSServer, Members: ns.Members, Nodes: ns.Nodes,
		ReassemblyTimeout: s.cur.DatagramReassemblyTimeout.D(), MaxPending: s.cur.DatagramMaxPending,
		MaxPendingBytes: s.cur.DatagramMaxPendingBytes, Log: log})
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1)
		})
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf("0.0.0.0:%d", datagram.DefaultPort))
	if err != nil {
		x.close()
		return nil, fmt.Errorf("nbt: datagram service: %w", err)
	}
	go x.dgm.Serve(pc)
	ctx, cancel := context.WithCancel(context.Background())
	x.cancel = cancel
	// Datagrams to the box's messenger name NAME<03> ("net send",
	// WinPopup) are kept for the admin: nbt.messages.
	if msgr, err := wire.MakeName(s.cur.Name, 0x03, s.cur.Scope); err == nil {
		if l, err := x.dgm.Listen(msgr); err == nil {
			go s.mailbox.collect(ctx, l)
		}
	}
	if s.cur.BrowseAnnounce {
		a, err := browse.New(browse.Config{Name: s.cur.Name, Workgroup: s.cur.Workgroup, Scope: s.cur.Scope,
			Comment: s.cur.Comment, FirstPeriod: s.cur.BrowsePeriod.D(), MaxPeriod: s.cur.BrowseMaxPeriod.D(),
			ReplyDelay: s.cur.BrowseReplyDelay.D(), Log: log}, x.dgm)
		if err != nil {
			x.close()
			return nil, fmt.Errorf("nbt: %w", err)
		}
		x.browse = a
		to := s.cur.Workgroup + "<1d>"
		// The first announcement goes once the box holds its names.
		go func() {
			select {
			case <-claimed:
			case <-ctx.Done():
				return
			}
			go func() {
				select {
				case <-a.Announced():
					log.Info("nbt: host announcement sent", "to", to)
				case <-ctx.Done():
				}
			}()
			if err := a.Run(ctx); err != nil {
				log.Error("nbt: browse announcements", "err", err)
			}
		}()
	}
	return x, nil
}

func (x *nbtExtra) close() {
	if x.cancel != nil {
		x.cancel()
	}
	if x.sess != nil {
		x.sess.Close()
	}
	if x.dgm != nil {
		x.dgm.Close()
	}
	for _, g := range x.rev {
		g.Close()
	}
}

// startReverse opens the reverse gateways' ports on every interface the
// name service runs on.
func (x *nbtExtra) startReverse(c config.NBT, ns *nameservice.Server, ifs []nameservice.IfaceStatus, log *slog.Logger) error {
	calling, _ := wire.MakeName(c.Name, 0x00, c.Scope)
	for _, r := range c.ReverseGateways {
		rv, err := session.ParseReverse(r, c.Scope)
		if err != nil {
			continue // Validate refused it already
		}
		g := session.NewReverse(session.ReverseConfig{Reverse: rv, Resolve: ns.Resolve, Calling: calling,
			MaxMessage: c.SessionMaxMessage, Idle: c.SessionIdle.D(), Log: log})
		x.rev = append(x.rev, g)
		for _, i := range ifs {
			l, err := net.Listen("tcp4", net.JoinHostPort(i.Addr, fmt.Sprint(rv.Port)))
			if err != nil {
				return fmt.Errorf("nbt: reverse gateway %s: %w", rv, err)
			}
			go g.Serve(l)
		}
	}
	return nil
}

// sessions is the state of the session and datagram services for the
// control API.
func (s *nbtService) sessions() control.NBTSessions {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := control.NBTSessions{Enabled: s.cur.Enabled, Sessions: []session.SessionInfo{}}
	if s.extra != nil {
		out.Running = true
		out.Sessions = s.extra.sess.Sessions()
		out.SessionCounters = s.extra.sess.Counters()
		out.DatagramCounters = s.extra.dgm.Counters()
		for _, g := range s.extra.rev {
			out.Reverse = append(out.Reverse, g.Info())
		}
		if s.extra.browse != nil {
			for k, v := range s.extra.browse.Counters() {
				out.DatagramCounters[k] = v
			}
		}
	}
	return out
}

// send sends a datagram from the box's NAME<03> (the messenger name) to
// a name.
func (s *nbtService) send(to, message string) error {
	s.mu.Lock()
	x, c := s.extra, s.cur
	s.mu.Unlock()
	if x == nil {
		return errors.New("the NetBIOS services are not running")
	}
	dst, err := session.ParseName(to, c.Scope)
	if err != nil {
		return err
	}
	src, err := wire.MakeName(c.Name, 0x03, c.Scope)
	if err != nil {
		return err
	}
	return x.dgm.Send(src, dst, []byte(message))
}

// nbtLive is the service as the control API sees it.
type nbtLive struct{ s *nbtService }

func (l nbtLive) Sessions() control.NBTSessions { return l.s.sessions() }
func (l nbtLive) Send(to, message string) error { return l.s.send(to, message) }

// nbtMailboxLen is how many datagrams to the box's messenger name the
// nbt.messages op keeps (the newest).
const nbtMailboxLen = 32

// nbtMailbox keeps the last datagrams received on the box's NAME<03>.
type nbtMailbox struct {
	mu   sync.Mutex
	msgs []control.NBTMessage
}

func (m *nbtMailbox) collect(ctx context.Context, l *datagram.Listener) {
	defer l.Close()
	for {
		d, err := l.Recv(ctx)
		if err != nil {
			return
		}
		m.mu.Lock()
		if len(m.msgs) == nbtMailboxLen {
			m.msgs = append(m.msgs[:0], m.msgs[1:]...)
		}
		m.msgs = append(m.msgs, control.NBTMessage{Time: time.Now().UTC(), From: d.From.String(),
			Source: d.Source.String(), Dest: d.Dest.String(), Data: d.Data})
		m.mu.Unlock()
	}
}

func (m *nbtMailbox) list() []control.NBTMessage {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]control.NBTMessage{}, m.msgs...)
}

func (l nbtLive) Messages() []control.NBTMessage { return l.s.mailbox.list() }
