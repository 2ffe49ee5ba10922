package smtpd

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func TestDotCanon(t *testing.T) {
	for _, tc := range []struct {
		in, out string
		end     int // bytes of in up to the end of data, or -1
	}{
		{".\r\n", ".\r\n", 3},
		{"a\r\n.\r\nMAIL", "a\r\n.\r\n", 6},
		{"a\r\r\n.\r\nNOOP", "a\r\n.\r\n", 7}, // CR CR LF ends a line
		{"a\r\r\n", "a\r\n", -1},
		{"a\n.\nb\r.\r\n", "a\r\n..\r\nb\r\n..\r\n", -1}, // a dot after a bare LF or CR is text
		{"a\n.\r\n", "a\r\n..\r\n", -1},
		{"a\r\n..\r\n", "a\r\n..\r\n", -1},
		{"..x\r\n.\r\n", "..x\r\n.\r\n", 8},
		{".x\r\n", "x\r\n", -1},
		{".\n", "\r\n", -1},
		{".\r\r\n", "\r\n", -1}, // not the end: the dot is followed by CR CR LF
		{"\r\r\r\n", "\r\n", -1},
		{"a\rb\n\nc\r\n", "a\r\nb\r\n\r\nc\r\n", -1},
		{"a\r\rb\r\n", "a\r\nb\r\n", -1},
		{"x\r.\r\n", "x\r\n..\r\n", -1},
	} {
		// Whole, and byte by byte (the state carries across reads).
		for _, step := range []int{len(tc.in), 1} {
			var d dotCanon
			var out []byte
			end := -1
			for off := 0; off < len(tc.in) && end < 0; off += step {
				chunk := tc.in[off:min(off+step, len(tc.in))]
				var used int
				var done bool
				out, used, done = d.feed(out, []byte(chunk))
				if done {
					end = off + used
				}
			}
			if string(out) != tc.out || end != tc.end {
				t.Errorf("feed(%q) by %d = %q, end %d; want %q, end %d", tc.in, step, out, end, tc.out, tc.end)
			}
		}
	}
}

// refData is the end-of-data rule written out plainly, as the reference
// for FuzzDataEnd: the data ends at the first line holding a single dot
// after a CRLF (RFC 5321 4.1.1.4). It returns the message the session
// must get (lines un-stuffed; CRLF, CR CR LF, bare LF and runs of bare CR
// each end one line) and the length of the data with its end line, or -1.
func refData(raw []byte) ([]byte, int) {
	end := -1
	if bytes.HasPrefix(raw, []byte(".\r\n")) {
		end = 3
	} else if i := bytes.Index(raw, []byte("\r\n.\r\n")); i >= 0 {
		end = i + 5
	}
	if end < 0 {
		return nil, -1
	}
	lines := strings.Split(string(raw[:end-3]), "\r\n")
	lines = lines[:len(lines)-1] // the text before the end line ends in CRLF
	var msg strings.Builder
	for _, l := range lines {
		l = strings.TrimPrefix(l, ".")
		l = strings.TrimRight(l, "\r")
		msg.WriteString(strings.Join(bareEnding.Split(l, -1), "\r\n") + "\r\n")
	}
	return []byte(msg.String()), end
}

var bareEnding = regexp.MustCompile("\r+|\n")

// streamConn is the server side of a connection whose client has sent
// everything at once and closed: reads return the stream in chunks of at
// most chunk bytes, then io.EOF. Replies are kept.
type streamConn struct {
	in    []byte
	off   int
	chunk int
	out   bytes.Buffer
}

func (c *streamConn) Read(p []byte) (int, error) {
	if c.off == len(c.in) {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.chunk)], c.in[c.off:])
	c.off += n
	return n, nil
}
func (c *streamConn) Write(p []byte) (int, error) { return c.out.Write(p) }
func (c *streamConn) Close() error                { return nil }
func (c *streamConn) LocalAddr() net.Addr         { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 25} }
func (c *streamConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 40000}
}
func (c *streamConn) SetDeadline(time.Time) error      { return nil }
func (c *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (c *streamConn) SetWriteDeadline(time.Time) error { return nil }

// dataPhase is one DATA transfer as the probe and the backend saw it.
type dataPhase struct {
	start, end int // offsets in the stream where the front end began and ended it (-1: not ended)
	msg        []byte
	err        error // from the library's reader
}

// probeConn sits between the front end and the library and checks, on
// every read, that both are in the same mode: the front end hands on
// message data exactly while the library's DATA reader reads.
type probeConn struct {
	*frontConn
	raw      *streamConn
	mu       sync.Mutex
	libData  bool // the backend is reading message data
	lastData bool // what the front end's pending bytes are
	phases   []*dataPhase
	faults   []string
	closed   chan struct{}
	once     sync.Once
}

func (p *probeConn) Read(b []byte) (int, error) {
	fc := p.frontConn
	p.mu.Lock()
	defer p.mu.Unlock()
	data := p.lastData
	if len(fc.pending) == 0 {
		data = fc.inData || fc.saw354.Load()
		if data && !fc.inData {
			p.phases = append(p.phases, &dataPhase{start: p.raw.off - len(fc.in), end: -1})
		}
	}
	wasIn := fc.inData || fc.saw354.Load()
	n, err := fc.Read(b)
	if wasIn && !fc.inData && len(p.phases) > 0 {
		p.phases[len(p.phases)-1].end = p.raw.off - len(fc.in)
	}
	p.lastData = data
	if n > 0 && data != p.libData {
		p.faults = append(p.faults, "front end handed on "+map[bool]string{true: "message data", false: "a command"}[data]+
			" while the library read "+map[bool]string{true: "message data", false: "commands"}[p.libData]+": "+string(b[:n]))
	}
	return n, err
}

func (p *probeConn) Close() error {
	p.once.Do(func() { close(p.closed) })
	return nil
}

// recBackend accepts everything and records each message.
type recBackend struct{}

func (recBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &recSession{p: c.Conn().(*probeConn)}, nil
}

type recSession struct{ p *probeConn }

func (*recSession) Mail(string, *smtp.MailOptions) error { return nil }
func (*recSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (*recSession) Reset()                               {}
func (*recSession) Logout() error                        { return nil }
func (s *recSession) Data(r io.Reader) error {
	s.p.mu.Lock()
	s.p.libData = true
	s.p.mu.Unlock()
	msg, err := io.ReadAll(r) // the library's reader: EOF at the end of data
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	s.p.libData = false
	n := len(s.p.phases)
	if n == 0 || s.p.phases[n-1].msg != nil || s.p.phases[n-1].err != nil {
		s.p.faults = append(s.p.faults, "the library read a message the front end never handed on as data")
		return err
	}
	s.p.phases[n-1].msg, s.p.phases[n-1].err = msg, err
	return err
}

// FuzzDataEnd checks that the front end and the library agree on where
// the data of a message ends, for any bytes a client sends: the front end
// ends it where the reference rule does, the library's reader gets exactly
// that message and sees its end there, and whatever follows is read as
// commands by both (never as data by one and commands by the other).
func FuzzDataEnd(f *testing.F) {
	for _, seed := range []string{
		"Subject: x\r\n\r\nbody\r\n",
		"last line\r\r\n.\r\nNOOP\r\n",
		"a\n.\nb\r\n.\r\nMAIL FROM:<x@y>\r\nRCPT TO:<z@w>\r\nDATA\r\nsecond\r\r\n.\r\n",
		"x\r\n.\rx\r\n..\r\n.\n.\r\r\n",
		"\r\n.\r\nDATA\r\nMAIL FROM:<a@b>\r\n",
		".\r\nRSET\r\n",
	} {
		f.Add(uint8(255), []byte(seed))
		f.Add(uint8(0), []byte(seed))
	}
	srv := New(nil, &Settings{Hostname: "mx.example.test", MaxMessageBytes: 1 << 20, IdleTimeout: time.Minute}, nil)
	f.Cleanup(func() { srv.Close() })
	lib := srv.newLib(MX, srv.settings.Load())
	lib.Backend = recBackend{}
	ch := newChanListener()
	go lib.Serve(ch)
	f.Cleanup(func() { ch.Close(); lib.Close() })
	const prefix = "EHLO c.test\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n"
	f.Fuzz(func(t *testing.T, chunk uint8, data []byte) {
		stream := []byte(prefix + string(data) + "\r\n.\r\nQUIT\r\n")
		raw := &streamConn{in: stream, chunk: int(chunk) + 1}
		fc := &frontConn{raw: raw, under: raw, srv: srv, kind: MX, idle: time.Minute}
		p := &probeConn{frontConn: fc, raw: raw, closed: make(chan struct{})}
		if !ch.push(p) {
			t.Fatal("library server gone")
		}
		select {
		case <-p.closed:
		case <-time.After(10 * time.Second):
			t.Fatalf("session hangs; replies so far:\n%s", raw.out.String())
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, f := range p.faults {
			t.Error(f)
		}
		if len(p.phases) == 0 || p.phases[0].start != len(prefix) {
			t.Fatalf("first DATA not where it was sent: %+v\nreplies:\n%s", p.phases, raw.out.String())
		}
		for i, ph := range p.phases {
			want, end := refData(stream[ph.start:])
			if end < 0 {
				// The stream ran out inside this message.
				if ph.end >= 0 || ph.err == nil {
					t.Errorf("phase %d: no end in the stream, but the front end ended at %d (library err %v)", i, ph.end, ph.err)
				}
				continue
			}
			if ph.end != ph.start+end {
				t.Errorf("phase %d: front end ended the data at %d, the rule at %d", i, ph.end, ph.start+end)
			}
			if ph.err != nil || !bytes.Equal(ph.msg, want) {
				t.Errorf("phase %d: library read %q (err %v), want %q", i, ph.msg, ph.err, want)
			}
		}
	})
}

// A message whose lines end in CR CR LF, the last one too: the server
// must not hang waiting for an end it has already seen, must store the
// message with plain CRLF lines, and must answer the commands after it.
func TestCRCRLFLineEndings(t *testing.T) {
	s, dir := newTestServer(t)
	out := dialog(t, s, "EHLO c.test\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"+
		"Subject: cr cr lf\r\r\n\r\r\nfirst line\r\r\n..dotted\r\r\nlast line\r\r\n.\r\n"+
		"MAIL FROM:<b@remote.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nSubject: second\r\n\r\nsecond\r\n.\r\nQUIT\r\n")
	if n := strings.Count(strings.ToLower(out), "250 2.0.0 ok: queued"); n != 2 {
		t.Fatalf("%d messages accepted, want 2:\n%s", n, out)
	}
	if !strings.HasSuffix(out, "221 2.0.0 Bye\r\n") {
		t.Errorf("QUIT after the messages not answered:\n%s", out)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "mail", "bob", "new", "*"))
	var first []byte
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if bytes.Contains(b, []byte("cr cr lf")) {
			first = b
		}
	}
	if want := "Subject: cr cr lf\r\n\r\nfirst line\r\n.dotted\r\nlast line\r\n"; !bytes.HasSuffix(first, []byte(want)) {
		t.Errorf("stored %q, want it to end in %q", first, want)
	}
}

// A client that sends the data and then waits must get its reply: the
// end of data may not depend on bytes the client has not sent yet.
func TestDataEndNeedsNoMoreInput(t *testing.T) {
	s, _ := newTestServer(t)
	client, server := net.Pipe()
	defer client.Close()
	s.ServeConn(MX, server)
	client.SetDeadline(time.Now().Add(10 * time.Second))
	r := newReplyReader(client)
	r.expect(t, "", "220 ")
	r.expect(t, "EHLO c.test", "250-")
	r.expect(t, "MAIL FROM:<a@remote.test>", "250 ")
	r.expect(t, "RCPT TO:<bob@example.test>", "250 ")
	r.expect(t, "DATA", "354 ")
	r.expect(t, "Subject: x\r\r\n\r\r\nbody\r\r\n.", "250 ")
	r.expect(t, "NOOP", "250 ")
	if err := r.err; errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the server hangs after a message ending in CR CR LF")
	}
}

// BenchmarkDotCanon measures the canonical transform on a typical 5 KB
// message with CRLF lines, some of them dot-stuffed.
func BenchmarkDotCanon(b *testing.B) {
	var msg []byte
	for i := 0; len(msg) < 5000; i++ {
		if i%10 == 0 {
			msg = append(msg, "..a dot-stuffed line\r\n"...)
		}
		msg = append(msg, "a line of ordinary text that is about seventy characters long, more or less\r\n"...)
	}
	msg = append(msg, ".\r\n"...)
	b.SetBytes(int64(len(msg)))
	var out []byte
	for b.Loop() {
		var d dotCanon
		out, _, _ = d.feed(out[:0], msg)
	}
}
