package wire

import (
	"fmt"
	"net/netip"
)

// Kind names the name service packets of RFC 1002 4.2.
type Kind uint8

// The packets, with their RFC 1002 section.
const (
	KindUnknown              Kind = iota // not a well-formed 4.2 packet
	KindRegistrationRequest              // 4.2.2 (B set: broadcast, else to the NBNS)
	KindOverwriteDemand                  // 4.2.3 (RD clear)
	KindRefreshRequest                   // 4.2.4
	KindMultiHomedRequest                // Windows multi-homed registration (opcode 0xF)
	KindPositiveRegistration             // 4.2.5
	KindNegativeRegistration             // 4.2.6
	KindEndNodeChallenge                 // 4.2.7
	KindConflictDemand                   // 4.2.8
	KindReleaseRequest                   // 4.2.9
	KindPositiveRelease                  // 4.2.10
	KindNegativeRelease                  // 4.2.11
	KindQueryRequest                     // 4.2.12
	KindPositiveQuery                    // 4.2.13
	KindNegativeQuery                    // 4.2.14
	KindRedirectQuery                    // 4.2.15
	KindWACK                             // 4.2.16
	KindNodeStatusRequest                // 4.2.17
	KindNodeStatusResponse               // 4.2.18
	kindCount
)

// KindCount is the number of kinds, for counter arrays indexed by Kind.
const KindCount = int(kindCount)

var kindNames = [...]string{
	"unknown", "registration-request", "overwrite-demand", "refresh-request", "multihomed-request",
	"positive-registration", "negative-registration", "end-node-challenge", "conflict-demand",
	"release-request", "positive-release", "negative-release", "query-request", "positive-query",
	"negative-query", "redirect-query", "wack", "node-status-request", "node-status-response",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// nbRecord reports whether r is an IN NB record with well-formed RDATA of
// at least one entry.
func nbRecord(r Resource) bool {
	return r.Type == TypeNB && r.Class == ClassIN && len(r.Data) >= 6 && len(r.Data)%6 == 0
}

// Kind classifies the packet by opcode, flags and record counts. Packets
// whose records do not have the shape RFC 1002 gives are KindUnknown, so a
// server can drop them without looking further.
func (p *Packet) Kind() Kind {
	q1 := len(p.Questions) == 1 && p.Questions[0].Class == ClassIN
	if !p.Response {
		switch p.Opcode {
		case OpQuery:
			if !q1 || len(p.Answers) != 0 {
				return KindUnknown
			}
			switch p.Questions[0].Type {
			case TypeNB:
				return KindQueryRequest
			case TypeNBSTAT:
				return KindNodeStatusRequest
			}
			return KindUnknown
		case OpRegistration, OpRefresh, OpRefreshAlt, OpRelease, OpMultiHomed:
			if !q1 || p.Questions[0].Type != TypeNB || len(p.Additional) != 1 || !nbRecord(p.Additional[0]) ||
				!p.Additional[0].Name.Equal(p.Questions[0].Name) {
				return KindUnknown
			}
			switch p.Opcode {
			case OpRegistration:
				if !p.Has(FlagRD) {
					return KindOverwriteDemand
				}
				return KindRegistrationRequest
			case OpRelease:
				return KindReleaseRequest
			case OpMultiHomed:
				return KindMultiHomedRequest
			}
			return KindRefreshRequest
		}
		return KindUnknown
	}
	switch p.Opcode {
	case OpQuery:
		if p.Rcode != RcodeOK {
			return KindNegativeQuery
		}
		if len(p.Answers) == 1 {
			switch a := p.Answers[0]; {
			case a.Type == TypeNB && nbRecord(a):
				return KindPositiveQuery
			case a.Type == TypeNBSTAT && a.Class == ClassIN:
				if _, err := ParseNodeStatus(a.Data); err == nil {
					return KindNodeStatusResponse
				}
			}
			return KindUnknown
		}
		if len(p.Answers) == 0 && len(p.Authority) == 1 && p.Authority[0].Type == TypeNS &&
			len(p.Additional) == 1 && p.Additional[0].Type == TypeA && len(p.Additional[0].Data) == 4 {
			return KindRedirectQuery
		}
	case OpRegistration, OpRefresh, OpRefreshAlt, OpMultiHomed:
		if len(p.Answers) != 1 || p.Answers[0].Type != TypeNB {
			return KindUnknown
		}
		switch {
		case p.Rcode == RcodeCftErr:
			return KindConflictDemand
		case p.Rcode != RcodeOK:
			return KindNegativeRegistration
		case !p.Has(FlagRA):
			return KindEndNodeChallenge
		}
		return KindPositiveRegistration
	case OpRelease:
		if len(p.Answers) != 1 || p.Answers[0].Type != TypeNB {
			return KindUnknown
		}
		if p.Rcode != RcodeOK {
			return KindNegativeRelease
		}
		return KindPositiveRelease
	case OpWACK:
		if len(p.Answers) == 1 && len(p.Answers[0].Data) == 2 {
			return KindWACK
		}
	}
	return KindUnknown
}

// Builders of the packets we send. Each returns a Packet whose Append
// produces the RFC 1002 layout of its section.

// NewQuery is a NAME QUERY REQUEST (4.2.12): broadcast sets B, recursion
// sets RD (a query to an NBNS).
func NewQuery(id uint16, n Name, broadcast, recursion bool) *Packet {
	p := &Packet{Header: Header{ID: id, Opcode: OpQuery}, Questions: []Question{{n, TypeNB, ClassIN}}}
	if broadcast {
		p.Flags |= FlagB
	}
	if recursion {
		p.Flags |= FlagRD
	}
	return p
}

// NewNodeStatusRequest is a NODE STATUS REQUEST (4.2.17).
func NewNodeStatusRequest(id uint16, n Name) *Packet {
	return &Packet{Header: Header{ID: id, Opcode: OpQuery}, Questions: []Question{{n, TypeNBSTAT, ClassIN}}}
}

func nbRR(n Name, ttl uint32, es ...NB) Resource {
	return Resource{Name: n, Type: TypeNB, Class: ClassIN, TTL: ttl, Data: AppendNB(nil, es...)}
}

func request(id uint16, op, flags uint8, n Name, ttl uint32, e NB) *Packet {
	return &Packet{Header: Header{ID: id, Opcode: op, Flags: flags},
		Questions:  []Question{{n, TypeNB, ClassIN}},
		Additional: []Resource{nbRR(n, ttl, e)}}
}

// NewRegistration is a NAME REGISTRATION REQUEST (4.2.2), broadcast or to
// an NBNS.
func NewRegistration(id uint16, n Name, ttl uint32, e NB, broadcast bool) *Packet {
	f := uint8(FlagRD)
	if broadcast {
		f |= FlagB
	}
	return request(id, OpRegistration, f, n, ttl, e)
}

// NewOverwriteDemand is a NAME OVERWRITE REQUEST & DEMAND (4.2.3).
func NewOverwriteDemand(id uint16, n Name, ttl uint32, e NB) *Packet {
	return request(id, OpRegistration, FlagB, n, ttl, e)
}

// NewRefresh is a NAME REFRESH REQUEST (4.2.4).
func NewRefresh(id uint16, n Name, ttl uint32, e NB) *Packet {
	return request(id, OpRefresh, 0, n, ttl, e)
}

// NewRelease is a NAME RELEASE REQUEST & DEMAND (4.2.9).
func NewRelease(id uint16, n Name, e NB, broadcast bool) *Packet {
	var f uint8
	if broadcast {
		f = FlagB
	}
	return request(id, OpRelease, f, n, 0, e)
}

// NewRegistrationResponse answers a registration, refresh or multi-homed
// request: rcode 0 is a POSITIVE NAME REGISTRATION RESPONSE (4.2.5), other
// codes a NEGATIVE one (4.2.6), RcodeCftErr a NAME CONFLICT DEMAND (4.2.8).
// The response echoes the request's record; its opcode is registration
// whatever the request's, as Samba's WINS server answers refreshes and
// multi-homed registrations.
func NewRegistrationResponse(req *Packet, rcode uint8, ttl uint32) *Packet {
	var rr Resource
	if len(req.Additional) > 0 {
		rr = req.Additional[0]
	}
	rr.TTL = ttl
	return &Packet{Header: Header{ID: req.ID, Response: true, Opcode: OpRegistration, Flags: FlagAA | FlagRD | FlagRA, Rcode: rcode},
		Answers: []Resource{rr}}
}

// NewConflictDemand is a NAME CONFLICT DEMAND (4.2.8) for n owned by e.
func NewConflictDemand(id uint16, n Name, e NB) *Packet {
	return &Packet{Header: Header{ID: id, Response: true, Opcode: OpRegistration, Flags: FlagAA | FlagRD | FlagRA, Rcode: RcodeCftErr},
		Answers: []Resource{nbRR(n, 0, e)}}
}

// NewReleaseResponse is a POSITIVE (rcode 0, 4.2.10) or NEGATIVE (4.2.11)
// NAME RELEASE RESPONSE.
func NewReleaseResponse(req *Packet, rcode uint8) *Packet {
	var rr Resource
	if len(req.Additional) > 0 {
		rr = req.Additional[0]
	}
	rr.TTL = 0
	return &Packet{Header: Header{ID: req.ID, Response: true, Opcode: OpRelease, Flags: FlagAA, Rcode: rcode},
		Answers: []Resource{rr}}
}

// NewPositiveQuery is a POSITIVE NAME QUERY RESPONSE (4.2.13). recursion
// copies RD from the request and sets RA when the answer comes from an
// NBNS.
func NewPositiveQuery(req *Packet, ttl uint32, nbns bool, es ...NB) *Packet {
	p := new(Packet)
	p.SetPositiveQuery(req, ttl, nbns, es...)
	return p
}

// SetPositiveQuery makes p the packet NewPositiveQuery returns, reusing
// the arrays of p's answer slice and record data, so that a server that
// answers into the same Packet allocates nothing per answer.
func (p *Packet) SetPositiveQuery(req *Packet, ttl uint32, nbns bool, es ...NB) {
	f := uint8(FlagAA) | req.Flags&FlagRD
	if nbns {
		f |= FlagRA
	}
	var data []byte
	if cap(p.Answers) > 0 {
		data = p.Answers[:1][0].Data[:0]
	}
	*p = Packet{Header: Header{ID: req.ID, Response: true, Opcode: OpQuery, Flags: f},
		Answers: append(p.Answers[:0], Resource{Name: req.Questions[0].Name, Type: TypeNB, Class: ClassIN, TTL: ttl,
			Data: AppendNB(data, es...)})}
}

// NewNegativeQuery is a NEGATIVE NAME QUERY RESPONSE (4.2.14): one NULL
// record with the question's name.
func NewNegativeQuery(req *Packet, rcode uint8, nbns bool) *Packet {
	f := uint8(FlagAA) | req.Flags&FlagRD
	if nbns {
		f |= FlagRA
	}
	return &Packet{Header: Header{ID: req.ID, Response: true, Opcode: OpQuery, Flags: f, Rcode: rcode},
		Answers: []Resource{{Name: req.Questions[0].Name, Type: TypeNULL, Class: ClassIN}}}
}

// NewRedirect is a REDIRECT NAME QUERY RESPONSE (4.2.15) pointing at the
// NBNS nsName (a domain name, written as one label per dot) at addr.
func NewRedirect(req *Packet, nsName Name, addr netip.Addr) (*Packet, error) {
	ns, err := appendName(nil, nsName)
	if err != nil {
		return nil, err
	}
	a := addr.As4()
	return &Packet{Header: Header{ID: req.ID, Response: true, Opcode: OpQuery, Flags: req.Flags & FlagRD},
		Authority:  []Resource{{Name: req.Questions[0].Name, Type: TypeNS, Class: ClassIN, Data: ns}},
		Additional: []Resource{{Name: nsName, Type: TypeA, Class: ClassIN, Data: a[:]}}}, nil
}

// NewWACK is a WAIT FOR ACKNOWLEDGEMENT RESPONSE (4.2.16) telling the
// requester to wait ttl seconds for the answer to req.
func NewWACK(req *Packet, ttl uint32) *Packet {
	n := req.Questions[0].Name
	w := Header{Opcode: req.Opcode, Flags: req.Flags}.word()
	return &Packet{Header: Header{ID: req.ID, Response: true, Opcode: OpWACK, Flags: FlagAA},
		Answers: []Resource{{Name: n, Type: TypeNB, Class: ClassIN, TTL: ttl, Data: []byte{byte(w >> 8), byte(w)}}}}
}

// NewNodeStatusResponse is a NODE STATUS RESPONSE (4.2.18).
func NewNodeStatusResponse(req *Packet, st *NodeStatus) (*Packet, error) {
	data, err := st.Append(nil)
	if err != nil {
		return nil, err
	}
	return &Packet{Header: Header{ID: req.ID, Response: true, Opcode: OpQuery, Flags: FlagAA},
		Answers: []Resource{{Name: req.Questions[0].Name, Type: TypeNBSTAT, Class: ClassIN, Data: data}}}, nil
}
