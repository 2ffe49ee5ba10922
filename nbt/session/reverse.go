package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"concierge/internal/connlimit"
	"concierge/internal/tcpserve"
	"concierge/nbt/wire"
)

// The reverse gateway: a plain TCP port on the box whose connections
// become NetBIOS sessions to a named LAN host (RFC 1001 16.1, RFC 1002
// 5.2.1 as the calling node). For each connection the name is resolved
// (the name service: the box's names, the WINS table, then a broadcast
// query), port 139 of the first address that answers is called with a
// SESSION REQUEST, following at most MaxRetargets RETARGET responses, and
// once the POSITIVE RESPONSE is in:
//   - every read from the TCP client (up to MaxMessage bytes) goes to the
//     host as one SESSION MESSAGE;
//   - the payload of each SESSION MESSAGE from the host goes to the
//     client unchanged, KEEP ALIVEs are dropped.
//
// The bytes are the same in both directions; where one message ends is
// not kept. A name nobody answers for, a host that cannot be reached or
// a NEGATIVE RESPONSE closes the client's connection at once with a log
// line; so does any other session packet from the host.

// Defaults of ReverseConfig.
const (
	DefaultReverseMaxConns = 16 // connections at once per reverse gateway
	MaxRetargets           = 3  // RETARGET responses followed for one call
)

// Reverse maps a TCP port of the box to a NetBIOS name on the LAN.
type Reverse struct {
	Port int
	Name wire.Name
}

func (r Reverse) String() string { return fmt.Sprintf("%d=%s", r.Port, r.Name) }

// ParseReverse reads "PORT=NAME#20": connections to PORT on the box's LAN
// addresses are sessions to NAME<20>.
func ParseReverse(s, scope string) (Reverse, error) {
	port, name, ok := strings.Cut(s, "=")
	if !ok {
		return Reverse{}, fmt.Errorf("session: %q is not PORT=NAME#20", s)
	}
	p, err := strconv.Atoi(strings.TrimSpace(port))
	if err != nil || p < 1 || p > 65535 {
		return Reverse{}, fmt.Errorf("session: %q: %q is not a TCP port", s, strings.TrimSpace(port))
	}
	if p >= 137 && p <= 139 {
		return Reverse{}, fmt.Errorf("session: %q: ports 137 to 139 are the NetBIOS services' own", s)
	}
	n, err := ParseName(strings.TrimSpace(name), scope)
	if err != nil {
		return Reverse{}, err
	}
	return Reverse{Port: p, Name: n}, nil
}

// ReverseConfig are the settings of a reverse gateway; zero values mean
// the defaults.
type ReverseConfig struct {
	Reverse
	// Resolve finds the host's addresses (the name service's Resolve).
	Resolve func(context.Context, wire.Name) (addrs []netip.Addr, group bool, err error)
	// Calling is the box's name in the SESSION REQUEST (NAME<00>).
	Calling wire.Name
	// PeerPort is the session port of the LAN hosts (139).
	PeerPort    int
	MaxConns    int
	MaxMessage  int           // longest SESSION MESSAGE sent or accepted
	DialTimeout time.Duration // resolution, connect and the session response
	Idle        time.Duration // no bytes either way: closed
	Log         *slog.Logger
	// Dial opens connections to the hosts; nil is a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (c *ReverseConfig) setDefaults() {
	if c.PeerPort <= 0 {
		c.PeerPort = DefaultPort
	}
	if c.MaxConns <= 0 {
		c.MaxConns = DefaultReverseMaxConns
	}
	if c.MaxMessage <= 0 || c.MaxMessage > wire.MaxSessionLen {
		c.MaxMessage = DefaultMaxMessage
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.Idle <= 0 {
		c.Idle = DefaultIdle
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Dial == nil {
		d := &net.Dialer{}
		c.Dial = d.DialContext
	}
}

// ReverseGateway serves one reverse mapping on any number of listeners.
type ReverseGateway struct {
	cfg  ReverseConfig
	tcp  tcpserve.Server
	pool connlimit.Pool
	port tcpserve.Port

	conns, notFound, unreachable, refused, established, bytesIn, bytesOut atomic.Uint64
}

// NewReverse returns a reverse gateway for cfg.
func NewReverse(cfg ReverseConfig) *ReverseGateway {
	cfg.setDefaults()
	g := &ReverseGateway{cfg: cfg}
	g.tcp.Log = cfg.Log
	g.pool.SetLimits(connlimit.Limits{Total: cfg.MaxConns, PerAddr: cfg.MaxConns})
	g.port = tcpserve.Port{Name: "nbss-reverse", Pool: &g.pool, Handle: g.handle}
	return g
}

// Serve accepts clients on l until Close.
func (g *ReverseGateway) Serve(l net.Listener) error { return g.tcp.Serve(l, &g.port) }

// Close closes the listeners and every session.
func (g *ReverseGateway) Close() error { return g.tcp.Close() }

// ReverseInfo is a reverse gateway in the status.
type ReverseInfo struct {
	Mapping  string            `json:"mapping"` // PORT=NAME<20>
	Counters map[string]uint64 `json:"counters"`
}

// Info returns the mapping and its counters.
func (g *ReverseGateway) Info() ReverseInfo {
	return ReverseInfo{Mapping: g.cfg.Reverse.String(), Counters: map[string]uint64{
		"connections": g.conns.Load(), "established": g.established.Load(), "name_not_found": g.notFound.Load(),
		"unreachable": g.unreachable.Load(), "refused": g.refused.Load(), "bytes_in": g.bytesIn.Load(),
		"bytes_out": g.bytesOut.Load(), "panics": g.tcp.Panics.Load(),
	}}
}

var errRefused = errors.New("session: refused")

func (g *ReverseGateway) handle(ctx context.Context, tc *tcpserve.Conn) {
	g.conns.Add(1)
	log := tc.Log.With("called", g.cfg.Name.String())
	stop := context.AfterFunc(ctx, func() { tc.Conn.Close() })
	defer stop()
	dctx, cancel := context.WithTimeout(ctx, g.cfg.DialTimeout)
	addrs, _, err := g.cfg.Resolve(dctx, g.cfg.Name)
	if err == nil && len(addrs) == 0 {
		err = errors.New("no address")
	}
	if err != nil {
		cancel()
		g.notFound.Add(1)
		log.Info("nbss: reverse gateway: name not found; connection closed", "err", err)
		return
	}
	peer, err := g.call(dctx, addrs)
	cancel()
	if err != nil {
		if errors.Is(err, errRefused) {
			g.refused.Add(1)
		} else {
			g.unreachable.Add(1)
		}
		log.Info("nbss: reverse gateway: no session; connection closed", "addrs", fmt.Sprint(addrs), "err", err)
		return
	}
	defer peer.Close()
	g.established.Add(1)
	log.Info("nbss: reverse gateway session", "to", peer.RemoteAddr().String())
	err = g.proxy(tc.Conn, peer)
	log.Debug("nbss: reverse gateway session ended", "err", err)
}

// call opens a session to the first of addrs that accepts one.
func (g *ReverseGateway) call(ctx context.Context, addrs []netip.Addr) (net.Conn, error) {
	var errs []error
	for _, a := range addrs {
		c, err := g.callOne(ctx, netip.AddrPortFrom(a, uint16(g.cfg.PeerPort)))
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// callOne calls to and follows RETARGET responses (RFC 1002 5.2.1).
func (g *ReverseGateway) callOne(ctx context.Context, to netip.AddrPort) (net.Conn, error) {
	req, err := wire.SessionRequest{Called: g.cfg.Name, Calling: g.cfg.Calling}.Append(nil)
	if err != nil {
		return nil, err
	}
	for range MaxRetargets + 1 {
		c, err := g.cfg.Dial(ctx, "tcp4", to.String())
		if err != nil {
			return nil, err
		}
		next, err := g.request(ctx, c, req)
		if err == nil && !next.IsValid() {
			return c, nil
		}
		c.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", to, err)
		}
		to = next
	}
	return nil, fmt.Errorf("%w: more than %d retargets", errRefused, MaxRetargets)
}

// request sends the SESSION REQUEST on c and reads the answer: nil for
// a POSITIVE RESPONSE, the address to call for a RETARGET.
func (g *ReverseGateway) request(ctx context.Context, c net.Conn, req []byte) (netip.AddrPort, error) {
	dl, _ := ctx.Deadline()
	c.SetDeadline(dl)
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(req); err != nil {
		return netip.AddrPort{}, err
	}
	for {
		h, body, err := readControl(c, 6)
		if err != nil {
			return netip.AddrPort{}, err
		}
		switch h.Type {
		case wire.SessKeepAlive:
			continue
		case wire.SessPositive:
			return netip.AddrPort{}, nil
		case wire.SessNegative:
			return netip.AddrPort{}, fmt.Errorf("%w: NEGATIVE SESSION RESPONSE %#02x", errRefused, body[0])
		case wire.SessRetarget:
			return wire.ParseRetarget(body)
		}
		return netip.AddrPort{}, fmt.Errorf("%w: packet type %#02x as the session response", errMalformed, h.Type)
	}
}

// readControl reads one session packet whose trailer is at most max bytes.
func readControl(r io.Reader, max int) (wire.SessionHeader, []byte, error) {
	var hb [wire.SessHeaderLen]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		return wire.SessionHeader{}, nil, err
	}
	h, err := wire.ParseSessionHeader(hb[:])
	if err != nil {
		return h, nil, fmt.Errorf("%w: %w", errMalformed, err)
	}
	if h.Length > max {
		return h, nil, fmt.Errorf("%w: %d bytes, limit %d", errTooLong, h.Length, max)
	}
	body := make([]byte, h.Length)
	_, err = io.ReadFull(r, body)
	return h, body, err
}

// proxy copies client bytes to the host as SESSION MESSAGEs and the
// host's message payloads back, until either side closes or nothing
// moves for Idle.
func (g *ReverseGateway) proxy(client, peer net.Conn) error {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the idle watch
		defer wg.Done()
		t := time.NewTicker(max(g.cfg.Idle/4, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				if now.Sub(time.Unix(0, last.Load())) >= g.cfg.Idle {
					g.cfg.Log.Info("nbss: reverse gateway: idle session closed", "called", g.cfg.Name.String())
					client.Close()
					peer.Close()
					return
				}
			}
		}
	}()
	go func() { // host → client
		defer wg.Done()
		defer client.Close()
		for {
			h, err := g.fromPeer(peer, client, &last)
			if err != nil || h.Type != wire.SessMessage && h.Type != wire.SessKeepAlive {
				return
			}
		}
	}()
	// client → host
	err := frame(client, peer, g.cfg.MaxMessage, func(send func() error) error {
		peer.SetWriteDeadline(time.Now().Add(writeTimeout))
		return send()
	}, func(n int) {
		g.bytesIn.Add(uint64(n))
		last.Store(time.Now().UnixNano())
	})
	if tcp, ok := peer.(*net.TCPConn); ok && err == nil {
		tcp.CloseWrite() // the host may still answer what it got
	} else {
		peer.Close()
	}
	close(done)
	wg.Wait()
	return err
}

// fromPeer copies one session packet's payload from the host to the
// client; anything but a SESSION MESSAGE or KEEP ALIVE is an error.
func (g *ReverseGateway) fromPeer(peer, client net.Conn, last *atomic.Int64) (wire.SessionHeader, error) {
	var hb [wire.SessHeaderLen]byte
	if _, err := io.ReadFull(peer, hb[:]); err != nil {
		return wire.SessionHeader{}, err
	}
	h, err := wire.ParseSessionHeader(hb[:])
	switch {
	case err != nil:
		return h, fmt.Errorf("%w: %w", errMalformed, err)
	case h.Type == wire.SessKeepAlive:
		return h, nil
	case h.Type != wire.SessMessage:
		g.cfg.Log.Info("nbss: reverse gateway: unexpected packet from the host; session closed", "type", fmt.Sprintf("%#02x", h.Type))
		return h, fmt.Errorf("%w: packet type %#02x in a session", errMalformed, h.Type)
	case h.Length > g.cfg.MaxMessage:
		return h, fmt.Errorf("%w: %d bytes, limit %d", errTooLong, h.Length, g.cfg.MaxMessage)
	}
	client.SetWriteDeadline(time.Now().Add(writeTimeout))
	n, err := io.CopyN(client, peer, int64(h.Length))
	g.bytesOut.Add(uint64(n))
	last.Store(time.Now().UnixNano())
	return h, err
}
