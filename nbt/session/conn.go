package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"concierge/internal/tcpserve"
	"concierge/nbt/wire"
)

// conn is one connection: first it waits for the SESSION REQUEST
// (RFC 1002 5.2.2), then, for a gateway name, it is an established
// session proxied to the gateway's TCP service.
type conn struct {
	srv *Server
	cfg *Config
	tc  *tcpserve.Conn
	log *slog.Logger

	req     wire.SessionRequest
	target  string
	since   time.Time
	in, out atomic.Uint64

	wmu sync.Mutex // one writer to the caller at a time
	wdl writeDeadline
	// lastData is when a SESSION MESSAGE last went either way (KEEP
	// ALIVEs do not count: the idle limit is about use), lastSent when
	// any packet last went to the caller (unix nanoseconds).
	lastData atomic.Int64
	lastSent atomic.Int64
}

func (c *conn) info() SessionInfo {
	return SessionInfo{ID: c.tc.ID, Remote: c.tc.RemoteAddr().String(), Called: c.req.Called.String(),
		Calling: c.req.Calling.String(), Target: c.target, Since: c.since, BytesIn: c.in.Load(), BytesOut: c.out.Load()}
}

// readHeader reads one packet header from the caller, skipping KEEP
// ALIVEs, which are allowed at any time (RFC 1002 4.3.7).
func (c *conn) readHeader() (wire.SessionHeader, error) {
	var b [wire.SessHeaderLen]byte
	for {
		if _, err := io.ReadFull(c.tc.Conn, b[:]); err != nil {
			return wire.SessionHeader{}, err
		}
		h, err := wire.ParseSessionHeader(b[:])
		if err != nil {
			return h, fmt.Errorf("%w: %w", errMalformed, err)
		}
		if h.Type != wire.SessKeepAlive {
			return h, nil
		}
	}
}

func (c *conn) touch() { c.lastData.Store(time.Now().UnixNano()) }

// write sends one packet to the caller.
func (c *conn) write(p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	now := time.Now()
	c.wdl.refresh(now)
	_, err := c.tc.Conn.Write(p)
	c.lastSent.Store(now.UnixNano())
	return err
}

// sendMessage runs send, which writes a SESSION MESSAGE to the caller,
// as the only writer, and counts it as use of the session.
func (c *conn) sendMessage(send func() error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	now := time.Now()
	c.wdl.refresh(now)
	err := send()
	c.lastSent.Store(now.UnixNano())
	c.lastData.Store(now.UnixNano())
	return err
}

func (c *conn) negative(code uint8, why string) {
	if i := int(code) - wire.SessErrNotListeningCalled; i >= 0 && i < len(c.srv.counters.negative) {
		c.srv.counters.negative[i].Add(1)
	}
	c.log.Info("nbss: session refused", "called", c.req.Called.String(), "calling", c.req.Calling.String(),
		"code", fmt.Sprintf("%#02x", code), "why", why)
	c.write(wire.AppendNegative(nil, code))
}

func (c *conn) serve() {
	c.tc.SetReadDeadline(time.Now().Add(c.cfg.RequestTimeout))
	h, err := c.readHeader()
	if err == nil && h.Type != wire.SessRequest {
		err = fmt.Errorf("%w: packet type %#02x before the session request", errMalformed, h.Type)
	}
	if err == nil {
		body := make([]byte, h.Length)
		if _, err = io.ReadFull(c.tc.Conn, body); err == nil {
			if c.req, err = wire.ParseSessionRequest(body); err != nil {
				err = fmt.Errorf("%w: %w", errMalformed, err)
			}
		}
	}
	if err != nil {
		if errors.Is(err, errMalformed) {
			c.srv.counters.malformed.Add(1)
			c.log.Info("nbss: malformed session request", "err", err)
			c.write(wire.AppendNegative(nil, wire.SessErrUnspecified))
		} else {
			c.log.Debug("nbss: connection ended before a session request", "err", err)
		}
		return
	}
	c.tc.SetReadDeadline(time.Time{})
	called := c.req.Called
	gw, rt := c.srv.find(c.cfg, called)
	switch {
	case gw != nil:
		c.gateway(gw)
	case rt != nil:
		c.srv.counters.retarget.Add(1)
		c.log.Info("nbss: session retargeted", "called", called.String(), "to", rt.To.String())
		b, err := wire.AppendRetarget(nil, rt.To)
		if err == nil {
			c.write(b)
		}
	case c.cfg.Server != (wire.Name{}) && (called.Equal(c.cfg.Server) || called.Label == smbServer.Label):
		c.noSMB()
	case c.cfg.Holds(called):
		c.negative(wire.SessErrNotListeningCalled, "no service listens on the name")
	default:
		c.negative(wire.SessErrCalledNotPresent, "the box does not hold the name")
	}
}

// established registers the session and starts the idle watchdog, which
// also sends KEEP ALIVEs (RFC 1002 4.3.7); the returned stop ends both.
func (c *conn) established(target string) (stop func()) {
	c.srv.counters.positive.Add(1)
	c.since, c.target = time.Now(), target
	c.touch()
	c.srv.mu.Lock()
	c.srv.sessions[c] = struct{}{}
	c.srv.mu.Unlock()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.watch(done)
	}()
	return func() {
		close(done)
		wg.Wait()
		c.srv.mu.Lock()
		delete(c.srv.sessions, c)
		c.srv.mu.Unlock()
	}
}

// watch closes the session after Idle without traffic and sends a KEEP
// ALIVE after KeepAlive without a packet to the caller.
func (c *conn) watch(done <-chan struct{}) {
	tick := max(min(c.cfg.KeepAlive, c.cfg.Idle)/4, 10*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		now := time.Now()
		if now.Sub(time.Unix(0, c.lastData.Load())) >= c.cfg.Idle {
			c.srv.counters.idle.Add(1)
			c.log.Info("nbss: idle session closed", "called", c.req.Called.String(), "idle", c.cfg.Idle)
			c.tc.Conn.Close()
			return
		}
		if now.Sub(time.Unix(0, c.lastSent.Load())) >= c.cfg.KeepAlive {
			c.srv.counters.keepAlivesSent.Add(1)
			c.write([]byte{wire.SessKeepAlive, 0, 0, 0})
		}
	}
}

// noSMB accepts a session to the box's server name and ends it at the
// first message: SMB is not offered.
func (c *conn) noSMB() {
	if err := c.write([]byte{wire.SessPositive, 0, 0, 0}); err != nil {
		return
	}
	stop := c.established("")
	defer stop()
	h, err := c.readHeader()
	if err != nil {
		return
	}
	if h.Type == wire.SessMessage && h.Length <= c.cfg.MaxMessage {
		// Read the message so that the close is a FIN, not a reset.
		io.CopyN(io.Discard, c.tc.Conn, int64(h.Length))
	}
	c.srv.counters.smb.Add(1)
	c.log.Info("nbss: SMB is not offered; session closed", "called", c.req.Called.String(), "calling", c.req.Calling.String())
}

// gateway proxies the session to gw's TCP service.
func (c *conn) gateway(gw *Gateway) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.DialTimeout)
	back, err := c.cfg.Dial(ctx, "tcp", gw.Addr)
	cancel()
	if err != nil {
		c.srv.counters.dialFailed.Add(1)
		c.negative(wire.SessErrInsufficient, "gateway service unreachable: "+err.Error())
		return
	}
	defer back.Close()
	if err := c.write([]byte{wire.SessPositive, 0, 0, 0}); err != nil {
		return
	}
	stop := c.established(gw.Addr)
	defer stop()
	c.log.Info("nbss: gateway session", "called", c.req.Called.String(), "calling", c.req.Calling.String(), "to", gw.Addr)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // service → caller, until the service closes or a write fails
		defer wg.Done()
		defer c.tc.Conn.Close()
		frame(back, c.tc.Conn, c.cfg.MaxMessage, c.sendMessage, func(n int) {
			c.out.Add(uint64(n))
			c.srv.counters.bytesOut.Add(uint64(n))
		})
	}()
	err = c.fromCaller(back)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		c.log.Info("nbss: gateway session ended", "err", err)
	}
	if tcp, ok := back.(*net.TCPConn); ok && err == nil {
		tcp.CloseWrite()
	} else {
		back.Close()
	}
	wg.Wait()
}
