package pop3d

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"concierge/internal/testnet"
)

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"USER alice\r\n", "pass a b c\r\n", "TOP 1 10\n", "LIST\r\n", "\x00\r\n", "AUTH PLAIN =\r\n", "RETR  1\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		verb, arg, err := parseCommand(line)
		if err != nil {
			return
		}
		if len(verb) < 3 || len(verb) > 4 || strings.ToUpper(verb) != verb {
			t.Fatalf("verb %q", verb)
		}
		if strings.ContainsAny(arg, "\r\n\x00") {
			t.Fatalf("arg %q holds a control character", arg)
		}
		if n, err := parseNumber(arg); err == nil && (n < 0 || n > 999999999) {
			t.Fatalf("number %d from %q", n, arg)
		}
	})
}

// unstuff undoes dot-stuffing of a multi-line body ending in ".\r\n".
func unstuff(t *testing.T, b []byte) []byte {
	if !bytes.HasSuffix(b, []byte(".\r\n")) {
		t.Fatalf("no terminator: %q", b)
	}
	b = b[:len(b)-3]
	var out []byte
	for len(b) > 0 {
		n := len(b)
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			n = i + 1
		}
		line := b[:n]
		b = b[n:]
		if line[0] == '.' {
			if bytes.Equal(line, []byte(".\r\n")) {
				t.Fatalf("terminator inside the body")
			}
			line = line[1:]
		}
		out = append(out, line...)
	}
	return out
}

// oneByteReader returns one byte per Read, to cross chunk boundaries.
type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) { return o.r.Read(p[:1]) }

func FuzzWriteMessage(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\n.body\r\n..\r\nend\r\n"), 1)
	f.Add([]byte(".\r\n"), -1)
	f.Add([]byte("a\r\n\r\n\r\nb\r\n"), 0)
	f.Fuzz(func(t *testing.T, msg []byte, lines int) {
		// The maildrop hands over CRLF text ending in CRLF.
		msg = bytes.ReplaceAll(msg, []byte("\r"), nil)
		msg = bytes.ReplaceAll(msg, []byte("\n"), []byte("\r\n"))
		if len(msg) > 0 && !bytes.HasSuffix(msg, []byte("\r\n")) {
			msg = append(msg, '\r', '\n')
		}
		if lines < -1 {
			lines = -1
		}
		var outs [][]byte
		for _, r := range []io.Reader{bytes.NewReader(msg), oneByteReader{bytes.NewReader(msg)}} {
			var b bytes.Buffer
			w := bufio.NewWriter(&b)
			if err := writeMessage(w, r, lines); err != nil {
				t.Fatal(err)
			}
			w.Flush()
			outs = append(outs, b.Bytes())
		}
		if !bytes.Equal(outs[0], outs[1]) {
			t.Fatalf("chunking changes the output: %q vs %q", outs[0], outs[1])
		}
		got := unstuff(t, outs[0])
		want := msg
		if lines >= 0 {
			want = top(msg, lines)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("writeMessage(%q, %d) = %q, want %q", msg, lines, got, want)
		}
	})
}

// top is the reference TOP: header lines through the first empty line,
// then n lines.
func top(msg []byte, n int) []byte {
	lines := strings.SplitAfter(string(msg), "\r\n")
	var out []string
	i := 0
	for ; i < len(lines); i++ {
		out = append(out, lines[i])
		if lines[i] == "\r\n" {
			i++
			break
		}
	}
	for k := 0; k < n && i < len(lines); k, i = k+1, i+1 {
		out = append(out, lines[i])
	}
	return []byte(strings.Join(out, ""))
}

// FuzzSession drives the whole command loop (parser and handlers) with
// arbitrary input in every state a client can reach: plaintext from an
// untrusted address (STLS, no login), plaintext from a trusted network,
// implicit TLS (AUTH and USER/PASS allowed), and logged in over TLS. Each
// session must end without a panic, release the maildrop, and delete
// nothing unless the client asked to.
func FuzzSession(f *testing.F) {
	login := "USER alice\r\nPASS secret 1\r\n"
	for _, s := range []string{
		"CAPA\r\nQUIT\r\n",
		login + "STAT\r\nLIST\r\nUIDL 1\r\nTOP 1 1\r\nRETR 2\r\nRSET\r\nQUIT\r\n",
		login + "DELE 1\r\nRETR 1\r\n\x00\xff\r\n",
		"AUTH PLAIN\r\nAGFsaWNlAHNlY3JldCAx\r\nLIST 999999999999\r\n",
		"AUTH PLAIN AGFsaWNlAHNlY3JldCAx\r\nLIST\r\nDELE 2\r\nLAST\r\nRSET\r\nNOOP\r\nQUIT\r\n",
		"AUTH \t \r\n", // the crash of issue 9 item 1
		"AUTH  \r\nAUTH\t\r\nLIST  \r\nTOP  \r\n",
		"STLS\r\n\x16\x03\x01\x02\x00\x01",
		"\xff\xfe\xfd\r\n\r\n\n\n.....",
		login + strings.Repeat("NOOP\r\n", 50),
	} {
		f.Add([]byte(s))
	}
	env := newFuzzEnv(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, m := range []struct {
			name   string
			tls    bool
			local  string // client address; 127.0.0.2 is trusted
			prefix string
		}{
			{"plaintext", false, "127.0.0.1", ""},
			{"trusted", false, "127.0.0.2", ""},
			{"tls", true, "127.0.0.1", ""},
			{"tls logged in", true, "127.0.0.1", login},
		} {
			env.session(t, m.name, m.tls, m.local, append([]byte(m.prefix), data...))
		}
	})
}

// fuzzEnv is one server with a plaintext and an implicit-TLS listener and
// a maildrop of two messages.
type fuzzEnv struct {
	ts     *testServer
	tlsAdr string
	before []string
}

func newFuzzEnv(f *testing.F) *fuzzEnv {
	cert := selfSigned(f, "mail.example.test")
	ts := newTestServer(f, &Settings{TLSConfig: cert})
	ts.srv.Configure(&Settings{TLSConfig: cert, IdleTimeout: 2 * time.Second, Hostname: "mail.example.test",
		TrustedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}})
	l, err := tls.Listen("tcp", "127.0.0.1:0", cert)
	if err != nil {
		f.Fatal(err)
	}
	go ts.srv.Serve(l)
	put(f, ts.root, "alice", "1.a.box", msg1, 2*time.Minute)
	put(f, ts.root, "alice", "2.b.box", msg3, time.Minute)
	return &fuzzEnv{ts: ts, tlsAdr: l.Addr().String(), before: files(ts.root, "alice")}
}

func (e *fuzzEnv) session(t *testing.T, mode string, useTLS bool, local string, data []byte) {
	ts := e.ts
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	addr := ts.addr
	if useTLS {
		addr = e.tlsAdr
	}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	c := raw
	closeWrite := func() { raw.(*net.TCPConn).CloseWrite() }
	if useTLS {
		tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("%s: handshake: %v", mode, err)
		}
		c, closeWrite = tc, func() { tc.CloseWrite() }
	}
	go func() {
		c.Write(data)
		closeWrite()
	}()
	out, err := io.ReadAll(c)
	// A server that closes with input unread (after QUIT, say) resets
	// the connection: that is an end too.
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("%s: session did not end: %v (after %q)", mode, err, out)
	}
	if !bytes.HasPrefix(out, []byte("+OK ")) {
		t.Fatalf("%s: no greeting: %q", mode, out)
	}
	// The session is gone and the maildrop free again.
	if !testnet.WaitFor(5*time.Second, func() bool { return ts.srv.Sessions() == 0 }) {
		t.Fatalf("%s: session still open", mode)
	}
	if n := ts.srv.Counters()["panics"]; n > 0 {
		t.Fatalf("%s: the session panicked (see the log; go test -v shows it)", mode)
	}
	m, err := MaildirBoxes{Root: ts.root}.Lock("alice")
	if err != nil {
		t.Fatalf("%s: maildrop not released: %v", mode, err)
	}
	m.Close()
	up := strings.ToUpper(string(data))
	if got := files(ts.root, "alice"); !strings.Contains(up, "DELE") || !strings.Contains(up, "QUIT") {
		// Retrieved mail may have moved to cur/: compare unique names.
		var g, b []string
		for _, s := range got {
			g = append(g, strings.TrimPrefix(strings.TrimPrefix(strings.Split(s, ":")[0], "cur/"), "new/"))
		}
		for _, s := range e.before {
			b = append(b, strings.TrimPrefix(s, "new/"))
		}
		if !slices.Equal(g, b) {
			t.Fatalf("%s: messages changed without DELE and QUIT: %v", mode, got)
		}
	} else {
		// Put the mail back for the next input.
		for _, f := range []struct{ n, m string }{{"1.a.box", msg1}, {"2.b.box", msg3}} {
			if !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, f.n) }) {
				put(t, ts.root, "alice", f.n, f.m, 0)
			}
		}
	}
}
