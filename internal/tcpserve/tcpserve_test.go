package tcpserve

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"concierge/internal/connlimit"
	"concierge/internal/testnet"
)

// logBuf is a log sink tests can read while the server writes.
type logBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newServer(t *testing.T) (*Server, *logBuf) {
	t.Helper()
	lb := &logBuf{}
	s := &Server{Log: slog.New(slog.NewTextHandler(lb, nil))}
	t.Cleanup(func() { s.Close() })
	return s, lb
}

func listen(t *testing.T, s *Server, p *Port) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l, p)
	return l.Addr().String()
}

// echo answers each line with "echo <line>"; "panic" panics.
func echo(ctx context.Context, c *Conn) {
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Now()) })
	defer stop()
	r := bufio.NewReader(c)
	io.WriteString(c, "hello\n")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if ctx.Err() != nil {
				io.WriteString(c, "bye\n")
			}
			return
		}
		if line == "panic\n" {
			var m map[string]int
			m["boom"]++ // a nil map write, as a real bug would
		}
		io.WriteString(c, "echo "+line)
	}
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func readLine(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	l, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v (%q)", err, l)
	}
	return l
}

// waitFor polls cond until it holds (the server's bookkeeping runs just
// after the client sees the connection close).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !testnet.WaitFor(10*time.Second, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestPanicEndsOnlyItsConnection(t *testing.T) {
	s, lb := newServer(t)
	pool := &connlimit.Pool{}
	addr := listen(t, s, &Port{Name: "test", Pool: pool, Handle: echo})
	other, or := dial(t, addr)
	readLine(t, or)
	c, r := dial(t, addr)
	readLine(t, r)
	io.WriteString(c, "panic\n")
	if rest, err := io.ReadAll(r); err != nil || len(rest) != 0 {
		t.Fatalf("after the panic: %q, %v; want the connection closed", rest, err)
	}
	waitFor(t, "the slot released", func() bool { return pool.Len() == 1 })
	log := lb.String()
	if !strings.Contains(log, "level=ERROR msg=\"panic: connection closed\"") || !strings.Contains(log, "assignment to entry in nil map") ||
		!strings.Contains(log, "tcpserve.echo") || !strings.Contains(log, "port=test") {
		t.Errorf("panic not logged with its stack and the connection's attributes:\n%s", log)
	}
	if s.Panics.Load() != 1 {
		t.Errorf("Panics = %d", s.Panics.Load())
	}
	// The other session and new ones go on.
	io.WriteString(other, "still here\n")
	if got := readLine(t, or); got != "echo still here\n" {
		t.Errorf("other session: %q", got)
	}
	c2, r2 := dial(t, addr)
	readLine(t, r2)
	io.WriteString(c2, "x\n")
	if got := readLine(t, r2); got != "echo x\n" {
		t.Errorf("new session: %q", got)
	}
}

func TestPoolRefusesExcess(t *testing.T) {
	s, lb := newServer(t)
	pool := &connlimit.Pool{}
	pool.SetLimits(connlimit.Limits{Total: 2})
	refused := make(chan error, 1)
	addr := listen(t, s, &Port{Name: "test", Pool: pool, Handle: echo, Refuse: func(c net.Conn, why error) {
		io.WriteString(c, "busy\n")
		refused <- why
	}})
	a, ra := dial(t, addr)
	readLine(t, ra)
	_, rb := dial(t, addr)
	readLine(t, rb)
	_, rc := dial(t, addr)
	if got := readLine(t, rc); got != "busy\n" {
		t.Fatalf("third connection: %q", got)
	}
	if why := <-refused; !errors.Is(why, connlimit.ErrTotal) {
		t.Errorf("why = %v", why)
	}
	if _, err := rc.ReadByte(); err != io.EOF {
		t.Errorf("refused connection not closed: %v", err)
	}
	if !strings.Contains(lb.String(), "connection refused") {
		t.Errorf("refusal not logged:\n%s", lb.String())
	}
	// A slot frees when a connection ends.
	a.Close()
	waitFor(t, "a slot", func() bool { return pool.Len() == 1 && s.Conns() == 1 })
	_, rd := dial(t, addr)
	if got := readLine(t, rd); got != "hello\n" {
		t.Errorf("after a slot freed: %q", got)
	}
}

// flakyListener fails Accept with errs first, then hands out conns, then
// reports itself closed.
type flakyListener struct {
	errs  []error
	conns chan net.Conn
	addr  net.Addr
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		return nil, err
	}
	c, ok := <-l.conns
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}
func (l *flakyListener) Close() error   { return nil }
func (l *flakyListener) Addr() net.Addr { return l.addr }

func TestAcceptBacksOffAndGoesOn(t *testing.T) {
	s, lb := newServer(t)
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	l := &flakyListener{errs: []error{emfile, emfile, emfile}, conns: make(chan net.Conn, 1), addr: &net.TCPAddr{}}
	client, server := net.Pipe()
	l.conns <- server
	close(l.conns)
	if err := s.Serve(l, &Port{Name: "test", Pool: &connlimit.Pool{}, Handle: echo}); err != nil {
		t.Fatalf("Serve = %v after the listener closed, want nil", err)
	}
	client.SetDeadline(time.Now().Add(5 * time.Second))
	if got := readLine(t, bufio.NewReader(client)); got != "hello\n" {
		t.Errorf("served after accept errors: %q", got)
	}
	if n := strings.Count(lb.String(), "accept failed"); n != 3 {
		t.Errorf("%d accept failures logged, want 3:\n%s", n, lb.String())
	}
}

func TestNextDelay(t *testing.T) {
	var d time.Duration
	var got []time.Duration
	for range 10 {
		d = nextDelay(d)
		got = append(got, d)
	}
	if got[0] != MinAcceptDelay || got[1] != 2*MinAcceptDelay || got[9] != MaxAcceptDelay {
		t.Errorf("delays %v", got)
	}
}

func TestShutdownWaitsForHandlers(t *testing.T) {
	s, _ := newServer(t)
	pool := &connlimit.Pool{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l, &Port{Name: "test", Pool: pool, Handle: echo}) }()
	_, r := dial(t, l.Addr().String())
	readLine(t, r)
	if err := s.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	// The handler saw its context end and said goodbye.
	if got := readLine(t, r); got != "bye\n" {
		t.Errorf("at shutdown: %q", got)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve = %v, want ErrServerClosed", err)
	}
	if pool.Len() != 0 || s.Conns() != 0 {
		t.Errorf("left: pool %d, conns %d", pool.Len(), s.Conns())
	}
	l2, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := s.Serve(l2, &Port{Name: "test", Pool: pool, Handle: echo}); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Shutdown = %v", err)
	}
}

func TestShutdownForcesStuckHandlers(t *testing.T) {
	s, _ := newServer(t)
	// This handler ignores ctx and reads until its connection closes.
	stuck := func(ctx context.Context, c *Conn) {
		io.WriteString(c, "hello\n")
		io.Copy(io.Discard, c)
	}
	addr := listen(t, s, &Port{Name: "test", Pool: &connlimit.Pool{}, Handle: stuck})
	_, r := dial(t, addr)
	readLine(t, r)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want the context's error", err)
	}
	if s.Conns() != 0 {
		t.Errorf("%d connections left after the forced close", s.Conns())
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Errorf("client: %v, want EOF", err)
	}
}

func TestCloseListener(t *testing.T) {
	s, _ := newServer(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l, &Port{Name: "test", Pool: &connlimit.Pool{}, Handle: echo}) }()
	_, r := dial(t, l.Addr().String()) // Serve has registered l once this is served
	readLine(t, r)
	if got := s.Addrs(); len(got) != 1 || got[0].String() != l.Addr().String() {
		t.Errorf("Addrs = %v", got)
	}
	s.CloseListener(l.Addr())
	if err := <-served; err != nil {
		t.Errorf("Serve = %v after its listener closed, want nil", err)
	}
	if len(s.Addrs()) != 0 {
		t.Errorf("listener still listed")
	}
}
