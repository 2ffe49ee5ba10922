package datagram

import (
	"net/netip"

	"concierge/nbt/wire"
)

// relay is the NBDD (RFC 1001 17.3, RFC 1002 4.4): a P-node does not
// broadcast, it sends its DIRECT_GROUP and BROADCAST datagrams to the
// NBDD, which sends each to the nodes it stands for. Here those are the
// members of the group in the WINS table (DIRECT_GROUP) or every node
// the table knows (BROADCAST), at most MaxRelay of them. Each gets the
// datagram as it came, fragment by fragment: type, SOURCE_IP,
// SOURCE_PORT, the names and the data unchanged, so its answer goes to
// the sender, not to the box.
//
// Only datagrams whose flags say a P-node sent them (SNT = P) are
// relayed, and only when SOURCE_IP is the address they came from: a
// B- or M-node broadcasts its own, and a relayed datagram never comes
// back as one to relay. Neither the sender nor the box itself gets a
// copy.
func (s *Server) relay(d *wire.Datagram, msg []byte, src netip.AddrPort) {
	if !s.cfg.NBDD || d.Type == wire.DgmDirectUnique || d.Flags&wire.DgmSNTMask != wire.DgmSNTP || d.SourceIP != src.Addr() {
		return
	}
	s.c.relayedIn.Add(1)
	var to []netip.Addr
	if d.Type == wire.DgmBroadcast {
		to = s.cfg.Nodes(s.cfg.MaxRelay + 2) // room for the sender and the box, left out below
	} else {
		to = s.cfg.Members(d.Dest)
	}
	targets := make([]netip.Addr, 0, min(len(to), s.cfg.MaxRelay))
	for _, a := range to {
		if a == src.Addr() || a == s.cfg.Addr || !a.Is4() {
			continue
		}
		if len(targets) == s.cfg.MaxRelay {
			// Counted before the copies go out, so that the counter
			// is right by the time a member has its copy.
			s.c.relayCut.Add(1)
			s.log.Debug("nbdgm: relay fan-out cut", "dest", d.Dest.String(), "members", len(to), "max", s.cfg.MaxRelay)
			break
		}
		targets = append(targets, a)
	}
	sent := 0
	for _, a := range targets {
		if err := s.sendRaw(msg, netip.AddrPortFrom(a, uint16(s.cfg.Port))); err != nil {
			s.log.Debug("nbdgm: relay", "to", a.String(), "err", err)
			continue
		}
		sent++
		s.c.relayedOut.Add(1)
	}
	if sent == 0 {
		s.c.noMembers.Add(1)
	}
}
