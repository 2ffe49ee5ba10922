package nameservice

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"concierge/internal/spin"
	"concierge/nbt/wire"
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// scratch is the working memory of one message on the request path: the
// parsed request and the answer to a query, whose arrays are used again
// message after message, so that answering a query for one of the box's
// names allocates nothing (BenchmarkHandleQuery).
type scratch struct {
	req, resp wire.Packet
	es        []wire.NB
}

var scratchPool = sync.Pool{New: func() any { return &scratch{es: make([]wire.NB, 0, 4)} }}

// clonePacket copies p's record slices (not the data they alias, as
// wire.Parse would have returned it).
func clonePacket(p *wire.Packet) *wire.Packet {
	c := *p
	c.Questions = slices.Clone(p.Questions)
	c.Answers = slices.Clone(p.Answers)
	c.Authority = slices.Clone(p.Authority)
	c.Additional = slices.Clone(p.Additional)
	return &c
}

// respond is how an answer goes back: a datagram to the source, or a
// framed message on the TCP connection.
type respond func(b []byte) error

// readLoop reads datagrams from one interface's socket.
func (s *Server) readLoop(l *link) {
	defer s.wg.Done()
	if l.p4 != nil {
		s.readBatches(l)
		return
	}
	buf := make([]byte, wire.MaxUDP+1)
	for {
		n, src, bcast, err := l.read(buf)
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("nbt: read", "interface", l.ifc.Name, "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if n > wire.MaxUDP || !src.IsValid() {
			s.stats.malformed.Add(1)
			continue
		}
		direct := func(b []byte) error { return l.send(b, src) }
		s.handleSafe(l, src, bcast, buf[:n], s.cfg.now(), direct, direct)
	}
}

// batchSize is how many datagrams one recvmmsg moves and how many
// answers one sendmmsg carries (more go out one by one). After its
// answers are out a reader polls for the next requests or sleeps in the
// poller as internal/spin decides.
//
// Measured with cmd/bench/nbt: reading again for what arrived while
// a batch was handled, before answering it, holds the answers back and
// costs a third of the queries per second at 4 requesters; the poll
// starts after the answers are sent rather than after the read because
// sending can take longer than the poll.
const batchSize = 16

// readBatches reads up to batchSize datagrams per system call and sends
// the answers to all of them with one more.
func (s *Server) readBatches(l *link) {
	sc, ok := l.pc.(syscall.Conn)
	var rc syscall.RawConn
	var err error
	if ok {
		rc, err = sc.SyscallConn()
	}
	if !ok || err != nil {
		s.log.Error("nbt: socket without raw access", "interface", l.ifc.Name, "err", err)
		return
	}
	in := newMmsgBatch(batchSize, wire.MaxUDP+1)
	q := &answerQueue{l: l, out: newMmsgBatch(batchSize, wire.MaxUDP), oob: l.src.Marshal()}
	add := q.add // one method value for every datagram
	bcastAll := netip.AddrFrom4([4]byte{255, 255, 255, 255})
	sp := spin.New()
	for {
		flags := 0
		if sp.Poll() {
			flags = unix.MSG_DONTWAIT
		}
		n, err := in.recv(rc, flags)
		if flags != 0 && errors.Is(err, unix.EAGAIN) {
			continue // polls again until spin.For is over, then sleeps
		}
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("nbt: read", "interface", l.ifc.Name, "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		sp.Arrived()
		now := s.cfg.now() // one clock reading for the batch
		for i := range n {
			msg, src, dst, trunc := in.datagram(i)
			if trunc || len(msg) > wire.MaxUDP || !src.IsValid() {
				s.stats.malformed.Add(1)
				continue
			}
			q.dst = src
			s.handleSafe(l, src, dst == l.ifc.Broadcast || dst == bcastAll, msg, now, add, nil)
		}
		if q.n > 0 {
			if sent, err := q.out.send(rc, q.n); err != nil {
				s.stats.sendErrors.Add(uint64(q.n - sent))
				s.log.Debug("nbt: send", "err", err)
			}
			q.n = 0
			sp.Answered()
		}
	}
}

// answerQueue holds the answers a reader sends with its next sendmmsg.
type answerQueue struct {
	l   *link
	out *mmsgBatch
	n   int
	oob []byte         // IP_PKTINFO: the interface's address as source
	dst netip.AddrPort // where the answers being made go
}

// add queues an answer to q.dst, or sends it at once when q is full.
func (q *answerQueue) add(b []byte) error {
	if q.n == len(q.out.hs) || len(b) > wire.MaxUDP {
		return q.l.send(b, q.dst)
	}
	q.out.put(q.n, b, q.dst, q.oob)
	q.n++
	return nil
}

// handleSafe is handle for the read loops: a panic in handling one
// message is logged with its stack and counted, and only that message is
// lost; the loop goes on with the next one.
func (s *Server) handleSafe(l *link, src netip.AddrPort, bcast bool, msg []byte, now time.Time, out, later respond) {
	defer s.recoverPanic("udp", src.Addr())
	s.handle(l, src, bcast, msg, now, out, later)
}

// recoverPanic, deferred at the top of a handler, ends a panic there: it
// is logged with the stack and counted, and the service goes on.
func (s *Server) recoverPanic(where string, src netip.Addr) {
	if r := recover(); r != nil {
		s.log.Error("nbt: handler panicked; the service goes on", "where", where, "src", src, "panic", r, "stack", string(debug.Stack()))
		s.stats.panics.Add(1)
	}
}

// handle processes one message from src that arrived on l at now. Answers go out
// through out while handle runs, and through later after it returned
// (the end of a challenge); a nil later sends datagrams to src.
func (s *Server) handle(l *link, src netip.AddrPort, bcast bool, msg []byte, now time.Time, out, later respond) {
	a := src.Addr()
	if s.isOwnAddr(a) && src.Port() == uint16(l.port) {
		return // our own broadcast, looped back
	}
	if !s.cfg.AllowRemote && !l.ifc.OnLAN(a) {
		s.stats.remote.Add(1)
		return
	}
	if !s.rate.allow(a, now) {
		s.stats.rateLimited.Add(1)
		return
	}
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	p := &sc.req
	if err := wire.ParseInto(p, msg); err != nil {
		s.stats.malformed.Add(1)
		s.log.Debug("nbt: malformed packet dropped", "src", src, "err", err)
		return
	}
	k := p.Kind()
	if k != wire.KindQueryRequest && k != wire.KindNodeStatusRequest {
		// Everything but the two read-only requests may outlive this
		// call (a response handed to the request waiting for it, a
		// registration being challenged): give it arrays of its own.
		p = clonePacket(p)
	}
	if s.cfg.onPacket != nil {
		s.cfg.onPacket(p)
	}
	s.stats.rxOpcode[p.Opcode&0xf].Add(1)
	s.stats.rxKind[k].Add(1)
	if k == wire.KindUnknown {
		s.stats.malformed.Add(1)
		s.log.Debug("nbt: malformed packet dropped", "src", src, "opcode", p.Opcode, "response", p.Response)
		return
	}
	if l.p4 == nil {
		// Without the destination address, the B flag has to tell.
		// Otherwise the destination decides: nbtscan, for one, sets B
		// on its unicast node status requests.
		bcast = p.Has(wire.FlagB)
	}
	if p.Response {
		if !s.deliver(p, src) {
			s.onUnsolicited(p, k, src)
		}
		return
	}
	switch k {
	case wire.KindQueryRequest:
		s.query(l, p, bcast, now, out, sc)
	case wire.KindNodeStatusRequest:
		s.status(l, p, bcast, out)
	case wire.KindRegistrationRequest, wire.KindRefreshRequest, wire.KindMultiHomedRequest:
		if bcast {
			s.defend(l, p, src, out)
			return
		}
		s.register(l, p, src, now, out, later)
	case wire.KindOverwriteDemand:
		if o := s.findOwn(p.Questions[0].Name); o != nil && !o.group && o.state.Load() == stateActive {
			s.log.Warn("nbt: another node demands one of our names", "name", o.name.String(), "node", a)
		}
		s.stats.ignored.Add(1)
	case wire.KindReleaseRequest:
		if bcast {
			s.stats.ignored.Add(1) // B-nodes keep no cache: nothing to forget
			return
		}
		s.release(p, src, now, out)
	default:
		s.stats.ignored.Add(1)
	}
}

// onUnsolicited handles responses nobody waits for: a conflict demand for
// one of our names (RFC 1002 4.2.8) is obeyed, anything else ignored.
func (s *Server) onUnsolicited(p *wire.Packet, k wire.Kind, src netip.AddrPort) {
	if k != wire.KindConflictDemand {
		s.stats.ignored.Add(1)
		return
	}
	o := s.findOwn(p.Answers[0].Name)
	if o == nil || o.group || !o.state.CompareAndSwap(stateActive, stateConflict) {
		s.stats.ignored.Add(1)
		return
	}
	o.mu.Lock()
	o.conflictWith = src.Addr().String()
	o.mu.Unlock()
	s.log.Error("nbt: NetBIOS name conflict demanded; no longer answering for the name", "name", o.name.String(), "from", src.Addr())
}

func (s *Server) send(p *wire.Packet, out respond) {
	bp := bufPool.Get().(*[]byte)
	b, err := p.Append((*bp)[:0])
	if err == nil {
		err = out(b)
	}
	*bp = b
	bufPool.Put(bp)
	if err != nil {
		s.stats.sendErrors.Add(1)
		s.log.Debug("nbt: send", "packet", p.String(), "err", err)
		return
	}
	s.stats.txKind[p.Kind()].Add(1)
	s.stats.txRcode[p.Rcode&0xf].Add(1)
}

// sendPacket sends one of our own requests on a link.
func (s *Server) sendPacket(l *link, p *wire.Packet, dst netip.AddrPort) {
	s.send(p, func(b []byte) error { return l.send(b, dst) })
}

// query answers a NAME QUERY REQUEST (RFC 1002 4.2.12 to 4.2.14), for
// our names and as NBNS. Broadcast queries are answered only for our own names
// and never negatively.
func (s *Server) query(l *link, p *wire.Packet, bcast bool, now time.Time, out respond, sc *scratch) {
	n := p.Questions[0].Name
	ttl := ttlSeconds(s.cfg.NameTTL)
	if o := s.findOwn(n); o != nil && o.state.Load() == stateActive {
		es := append(sc.es[:0], wire.NB{Flags: o.flags(), Addr: l.ifc.Addr})
		if o.group && !bcast && s.cfg.WINS {
			if more, _, ok := s.table.lookup(n, now); ok {
				for _, e := range more {
					if e.Addr != l.ifc.Addr && len(es) < maxGroupMembers {
						es = append(es, e)
					}
				}
			}
		}
		sc.es = es[:0]
		sc.resp.SetPositiveQuery(p, ttl, !bcast && s.cfg.WINS, es...)
		s.send(&sc.resp, out)
		return
	}
	if bcast {
		return
	}
	if o := s.findOwn(n); o != nil && o.state.Load() == stateRegistering {
		// Not ours yet, but most likely in a moment (a restart): let
		// the client retry rather than cache a negative answer.
		s.stats.ignored.Add(1)
		return
	}
	if s.cfg.WINS {
		if es, left, ok := s.table.lookup(n, now); ok {
			s.send(wire.NewPositiveQuery(p, left, true, es...), out)
			return
		}
	}
	s.send(wire.NewNegativeQuery(p, wire.RcodeNamErr, s.cfg.WINS), out)
}

// status answers a NODE STATUS REQUEST for "*" or one of our names, sent
// to us directly; broadcast ones are ignored.
func (s *Server) status(l *link, p *wire.Packet, bcast bool, out respond) {
	n := p.Questions[0].Name
	if bcast || (n.Label != wire.Wildcard.Label && s.findOwn(n) == nil && n.Base() != s.ownList()[0].name.Base()) {
		s.stats.ignored.Add(1)
		return
	}
	r, err := wire.NewNodeStatusResponse(p, s.nodeStatus(l))
	if err != nil {
		return
	}
	s.send(r, out)
}

// defend answers a broadcast registration of one of our names by another
// node with a NEGATIVE NAME REGISTRATION RESPONSE, ACT_ERR (RFC 1002
// 4.2.6): unique names always, group names against a unique claim.
func (s *Server) defend(l *link, p *wire.Packet, src netip.AddrPort, out respond) {
	n := p.Questions[0].Name
	o := s.findOwn(n)
	if o == nil || o.state.Load() != stateActive {
		s.stats.ignored.Add(1)
		return
	}
	es, _ := wire.ParseNB(p.Additional[0].Data)
	if o.group && es[0].Group() {
		return
	}
	s.log.Warn("nbt: defending our name against a registration", "name", n.String(), "node", src.Addr())
	s.send(wire.NewRegistrationResponse(p, wire.RcodeActErr, 0), out)
}

// register handles a registration, refresh or multi-homed registration
// sent to us as NBNS (RFC 1002 4.2.2 to 4.2.7).
func (s *Server) register(l *link, p *wire.Packet, src netip.AddrPort, now time.Time, out, later respond) {
	if !s.cfg.WINS {
		s.stats.ignored.Add(1)
		return
	}
	n := p.Questions[0].Name
	rr := p.Additional[0]
	es, _ := wire.ParseNB(rr.Data)
	e := es[0]
	if e.Addr != src.Addr() || (!s.cfg.AllowRemote && !l.ifc.OnLAN(e.Addr)) {
		s.send(wire.NewRegistrationResponse(p, wire.RcodeRfsErr, 0), out)
		return
	}
	if o := s.findOwn(n); o != nil && !(o.group && e.Group()) && o.state.Load() == stateActive {
		s.send(wire.NewRegistrationResponse(p, wire.RcodeActErr, 0), out)
		return
	}
	ttl := s.table.grant(rr.TTL)
	res, cur := s.table.register(n, e.Group(), e.Addr, e.Flags, ttl, now)
	switch res {
	case regDone:
		s.log.Debug("nbt: WINS registration", "name", n.String(), "addr", e.Addr, "group", e.Group(), "ttl", ttl)
		s.granted(n, e.Addr, rr.TTL, ttl, now)
		s.send(wire.NewRegistrationResponse(p, wire.RcodeOK, ttlSeconds(ttl)), out)
	case regRefused:
		s.send(wire.NewRegistrationResponse(p, wire.RcodeActErr, 0), out)
	case regFull, regOwnerFull:
		s.send(wire.NewRegistrationResponse(p, s.refuse(res, n, e.Addr, now), 0), out)
	case regConflict:
		if later == nil {
			later = func(b []byte) error { return l.send(b, src) }
		}
		s.challengeOwner(l, p, n, e, cur, ttl, out, later)
	}
}

// challengeOwner answers a conflicting unique registration with a WACK,
// then queries the current owner (RFC 1001 15.2.2.2): if it still answers
// for the name the registration is refused, otherwise it succeeds.
func (s *Server) challengeOwner(l *link, p *wire.Packet, n wire.Name, e wire.NB, cur netip.Addr, ttl time.Duration, out, later respond) {
	wait := s.cfg.ChallengeTimeout*time.Duration(s.cfg.ChallengeTries) + time.Second
	k := key(n)
	s.mu.Lock()
	busy := s.challenge[k]
	full := len(s.challenge) >= maxChallenges
	if !busy && !full {
		s.challenge[k] = true
	}
	s.mu.Unlock()
	if full && !busy {
		s.send(wire.NewRegistrationResponse(p, wire.RcodeSrvErr, 0), out)
		return
	}
	s.send(wire.NewWACK(p, ttlSeconds(wait)), out)
	if busy {
		return // the retransmission gets a WACK; the first one its answer
	}
	// p's records alias the read buffer, which the next datagram reuses.
	pc := *p
	pc.Additional = []wire.Resource{p.Additional[0]}
	pc.Additional[0].Data = append([]byte(nil), p.Additional[0].Data...)
	p = &pc
	s.log.Info("nbt: WINS registration conflicts; challenging the owner", "name", n.String(), "owner", cur, "requester", e.Addr)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.recoverPanic("challenge", e.Addr)
		alive, res := s.runChallenge(l, n, e, cur, ttl, k)
		if s.ctx.Err() != nil {
			return
		}
		if alive {
			s.log.Info("nbt: owner defends the name; registration refused", "name", n.String(), "owner", cur, "requester", e.Addr)
			s.send(wire.NewRegistrationResponse(p, wire.RcodeActErr, 0), later)
			return
		}
		if res != regDone {
			s.send(wire.NewRegistrationResponse(p, s.refuse(res, n, e.Addr, s.cfg.now()), 0), later)
			return
		}
		s.log.Info("nbt: owner is gone; name registered to the new node", "name", n.String(), "old", cur, "new", e.Addr)
		s.granted(n, e.Addr, p.Additional[0].TTL, ttl, s.cfg.now())
		s.send(wire.NewRegistrationResponse(p, wire.RcodeOK, ttlSeconds(ttl)), later)
	}()
}

// runChallenge asks cur whether it still owns n and gives the name to
// e.Addr when it does not. The challenge is over when it returns (even by
// a panic), before the requester hears of it, so that its next
// registration starts a new one.
func (s *Server) runChallenge(l *link, n wire.Name, e wire.NB, cur netip.Addr, ttl time.Duration, k string) (alive bool, res regResult) {
	defer func() {
		s.mu.Lock()
		delete(s.challenge, k)
		s.mu.Unlock()
	}()
	if s.ask(s.linkFor(cur, l), n, cur) {
		return true, regRefused
	}
	return false, s.table.replace(n, e.Addr, e.Flags, ttl, s.cfg.now())
}

// refuse counts and logs (rarely) a registration of n by a that a bound
// of the table refused, and returns the rcode of the negative response
// (RFC 1002 4.2.6): RFS_ERR when a holds as many names as it may (a
// policy of this server against this host), SRV_ERR when the table or
// the group is full (the server cannot take the name from anyone).
func (s *Server) refuse(res regResult, n wire.Name, a netip.Addr, now time.Time) uint8 {
	if res == regOwnerFull {
		s.stats.ownerFull.Add(1)
		s.capHit(now, slog.LevelWarn, "owner", "nbt: WINS registration refused: the address holds as many names as it may",
			"name", n.String(), "addr", a, "max_names_per_owner", s.cfg.MaxNamesPerOwner)
		return wire.RcodeRfsErr
	}
	s.stats.tableFull.Add(1)
	s.capHit(now, slog.LevelWarn, "table", "nbt: WINS registration refused: the table or the group is full",
		"name", n.String(), "addr", a, "max_names", s.cfg.MaxNames, "max_group_members", maxGroupMembers)
	return wire.RcodeSrvErr
}

// granted counts and logs (rarely) a registration granted another TTL
// than the asked one (in seconds).
func (s *Server) granted(n wire.Name, a netip.Addr, asked uint32, ttl time.Duration, now time.Time) {
	if time.Duration(asked)*time.Second == ttl {
		return
	}
	s.stats.ttlCapped.Add(1)
	s.capHit(now, slog.LevelInfo, "ttl", "nbt: WINS registration granted another TTL than asked",
		"name", n.String(), "addr", a, "asked_ttl", time.Duration(asked)*time.Second, "granted_ttl", ttl,
		"min", s.cfg.WINSMinTTL, "max", s.cfg.WINSMaxTTL)
}

// capHit logs that a bound was hit, at most once per CapLogInterval for
// each kind, with the number of lines held back since the last one.
func (s *Server) capHit(now time.Time, level slog.Level, kind, msg string, args ...any) {
	if ok, held := s.caps.allow(kind, now); ok {
		s.log.Log(context.Background(), level, msg, append(args, "not_logged_since_last", held)...)
	}
}

// linkFor returns the link whose subnet holds a, or def.
func (s *Server) linkFor(a netip.Addr, def *link) *link {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.links {
		if l.ifc.OnLAN(a) {
			return l
		}
	}
	return def
}

// ask queries owner for n, unicast and without recursion, and reports
// whether it answered positively.
func (s *Server) ask(l *link, n wire.Name, owner netip.Addr) bool {
	ch := make(chan reply, 4)
	id := s.newID(ch)
	defer s.dropID(id)
	dst := netipAddrPort(owner, l.port)
	for range s.cfg.ChallengeTries {
		s.sendPacket(l, wire.NewQuery(id, n, false, false), dst)
		t := time.NewTimer(s.cfg.ChallengeTimeout)
	wait:
		for {
			select {
			case <-s.ctx.Done():
				t.Stop()
				return true
			case r := <-ch:
				if r.src.Addr() != owner {
					continue
				}
				t.Stop()
				return r.p.Kind() == wire.KindPositiveQuery
			case <-t.C:
				break wait
			}
		}
	}
	return false
}

// release handles a NAME RELEASE REQUEST sent to us as NBNS (RFC 1002
// 4.2.9 to 4.2.11): only an owner may release its address.
func (s *Server) release(p *wire.Packet, src netip.AddrPort, now time.Time, out respond) {
	if !s.cfg.WINS {
		s.stats.ignored.Add(1)
		return
	}
	n := p.Questions[0].Name
	es, _ := wire.ParseNB(p.Additional[0].Data)
	if es[0].Addr != src.Addr() {
		s.send(wire.NewReleaseResponse(p, wire.RcodeRfsErr), out)
		return
	}
	if o := s.findOwn(n); o != nil && !o.group {
		s.send(wire.NewReleaseResponse(p, wire.RcodeActErr), out)
		return
	}
	if !s.table.release(n, es[0].Addr, now) {
		s.send(wire.NewReleaseResponse(p, wire.RcodeActErr), out)
		return
	}
	s.log.Debug("nbt: WINS release", "name", n.String(), "addr", es[0].Addr)
	s.send(wire.NewReleaseResponse(p, wire.RcodeOK), out)
}

// acceptLoop serves 137/tcp on one interface: each message is a 2-byte
// length and a name service packet (RFC 1002 4.2.1).
func (s *Server) acceptLoop(l *link) {
	defer s.wg.Done()
	for {
		c, err := l.tcp.Accept()
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		src := tcpAddrPort(c.RemoteAddr())
		s.mu.Lock()
		ok := s.tcpTotal < s.cfg.MaxTCPConns && s.tcpConns[src.Addr()] < maxTCPPerSource
		if ok {
			s.tcpTotal++
			s.tcpConns[src.Addr()]++
		}
		s.mu.Unlock()
		if !ok {
			c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				s.tcpTotal--
				if s.tcpConns[src.Addr()]--; s.tcpConns[src.Addr()] <= 0 {
					delete(s.tcpConns, src.Addr())
				}
				s.mu.Unlock()
			}()
			s.serveTCP(l, c, src)
		}()
	}
}

// serveTCP serves one connection; a panic in handling a message ends
// only the connection (logged, then closed).
func (s *Server) serveTCP(l *link, c net.Conn, src netip.AddrPort) {
	defer c.Close()
	defer s.recoverPanic("tcp", src.Addr())
	stop := closeOnStop(s, c)
	defer stop()
	var wmu sync.Mutex
	out := func(b []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		c.SetWriteDeadline(time.Now().Add(s.cfg.TCPIdle))
		var hdr [2]byte
		binary.BigEndian.PutUint16(hdr[:], uint16(len(b)))
		_, err := (&net.Buffers{hdr[:], b}).WriteTo(c)
		return err
	}
	buf := make([]byte, wire.MaxTCP)
	for {
		c.SetReadDeadline(time.Now().Add(s.cfg.TCPIdle))
		var hdr [2]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(hdr[:]))
		if n == 0 || n > wire.MaxTCP {
			s.stats.malformed.Add(1)
			return
		}
		if _, err := io.ReadFull(c, buf[:n]); err != nil {
			return
		}
		// Each message gets its own copy: a challenge answers later.
		msg := append([]byte(nil), buf[:n]...)
		s.handle(l, src, false, msg, s.cfg.now(), out, out)
	}
}

// closeOnStop closes c when the server stops.
func closeOnStop(s *Server, c net.Conn) func() {
	done := make(chan struct{})
	go func() {
		select {
		case <-s.ctx.Done():
			c.Close()
		case <-done:
		}
	}()
	return func() { close(done) }
}

func tcpAddrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

func netipAddrPort(a netip.Addr, port int) netip.AddrPort { return netip.AddrPortFrom(a, uint16(port)) }
