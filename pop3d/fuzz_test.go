package pop3d

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
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

// FuzzSession feeds bytes into a live session: it must end without harm,
// release the maildrop and delete nothing unless the client asked to.
func FuzzSession(f *testing.F) {
	login := "USER alice\r\nPASS secret 1\r\n"
	for _, s := range []string{
		"CAPA\r\nQUIT\r\n",
		login + "STAT\r\nLIST\r\nUIDL 1\r\nTOP 1 1\r\nRETR 2\r\nRSET\r\nQUIT\r\n",
		login + "DELE 1\r\nRETR 1\r\n\x00\xff\r\n",
		"AUTH PLAIN\r\nAGFsaWNlAHNlY3JldCAx\r\nLIST 999999999999\r\n",
		"STLS\r\n\x16\x03\x01\x02\x00\x01",
		"\xff\xfe\xfd\r\n\r\n\n\n.....",
		login + strings.Repeat("NOOP\r\n", 50),
	} {
		f.Add([]byte(s))
	}
	ts := newTestServer(f, &Settings{TLSConfig: selfSigned(f, "mail.example.test")})
	ts.srv.Configure(&Settings{TLSConfig: selfSigned(f, "mail.example.test"), IdleTimeout: 2 * time.Second,
		TrustedNetworks: ts.srv.settings.Load().TrustedNetworks, Hostname: "mail.example.test"})
	put(f, ts.root, "alice", "1.a.box", msg1, 2*time.Minute)
	put(f, ts.root, "alice", "2.b.box", msg3, time.Minute)
	before := files(ts.root, "alice")
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			c.Write(data)
			c.(*net.TCPConn).CloseWrite()
		}()
		out, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("session did not end: %v (after %q)", err, out)
		}
		if !bytes.HasPrefix(out, []byte("+OK ")) {
			t.Fatalf("no greeting: %q", out)
		}
		// The session is gone and the maildrop free again.
		deadline := time.Now().Add(5 * time.Second)
		for ts.srv.Sessions() > 0 {
			if time.Now().After(deadline) {
				t.Fatal("session still open")
			}
			time.Sleep(time.Millisecond)
		}
		m, err := MaildirBoxes{Root: ts.root}.Lock("alice")
		if err != nil {
			t.Fatalf("maildrop not released: %v", err)
		}
		m.Close()
		up := strings.ToUpper(string(data))
		if got := files(ts.root, "alice"); !strings.Contains(up, "DELE") || !strings.Contains(up, "QUIT") {
			// Retrieved mail may have moved to cur/: compare unique names.
			var g, b []string
			for _, s := range got {
				g = append(g, strings.TrimPrefix(strings.TrimPrefix(strings.Split(s, ":")[0], "cur/"), "new/"))
			}
			for _, s := range before {
				b = append(b, strings.TrimPrefix(s, "new/"))
			}
			if !slices.Equal(g, b) {
				t.Fatalf("messages changed without DELE and QUIT: %v", got)
			}
		} else {
			// Put the mail back for the next input.
			for _, f := range []struct{ n, m string }{{"1.a.box", msg1}, {"2.b.box", msg3}} {
				if !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, f.n) }) {
					put(t, ts.root, "alice", f.n, f.m, 0)
				}
			}
		}
	})
}
