package control

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func jsonText(v any) (string, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	return string(b), err
}

// Over the socket, the ops answer as in process; Open finds the server
// when it runs and works on the directory when it does not.
func TestSocket(t *testing.T) {
	dir := t.TempDir()
	if c, err := Open(dir); err != nil {
		t.Fatal(err)
	} else if _, ok := c.(*Service); !ok {
		t.Fatalf("Open with no server gave %T", c)
	}
	// A stale socket (a crashed server) is replaced.
	stale, err := net.Listen("unix", filepath.Join(dir, SocketFile))
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	if c, err := Open(dir); err != nil {
		t.Fatal(err)
	} else if _, ok := c.(*Service); !ok {
		t.Fatalf("Open with a stale socket gave %T", c)
	}
	svc := New(Options{DataDir: dir})
	l, err := Listen(dir, svc)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if fi, err := os.Stat(filepath.Join(dir, SocketFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v %v", fi.Mode(), err)
	}
	c, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.(*Client); !ok {
		t.Fatalf("Open with a server gave %T", c)
	}
	mustCall(t, c, OpDomainAdd, Args{"domain": "example.test"}, nil)
	e := call(t, c, OpDomainAdd, Args{"domain": "nodot"}, nil)
	if e == nil || e.Code != CodeInvalid || !strings.Contains(e.Fields["domain"], "domain: ") {
		t.Errorf("error over the socket: %+v", e)
	}
	var doms []DomainEntry
	mustCall(t, c, OpDomainList, nil, &doms)
	if len(doms) != 1 || doms[0].Name != "example.test" || !doms[0].Primary {
		t.Errorf("domains %+v", doms)
	}
	if e := call(t, c, OpStatus, nil, nil); e == nil || e.Code != CodeUnavailable {
		t.Errorf("status of a Service with no server: %v", e)
	}
}

// Only root and the server's own user may call: a peer of another uid is
// refused even when the socket's mode would let it connect.
func TestSocketRefusesOtherUsers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a client as another user (-short)")
	}
	if os.Getuid() != 0 {
		t.Fatal("needs root to run a client as another user")
	}
	py, err := exec.LookPath("/usr/bin/python3") // Debian's: readable by every user
	if err != nil {
		t.Fatal("needs /usr/bin/python3 (make test-deps)")
	}
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755) // t.TempDir makes both 0700
	os.Chmod(dir, 0o755)
	l, err := Listen(dir, New(Options{DataDir: dir}))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	path := filepath.Join(dir, SocketFile)
	os.Chmod(path, 0o666)
	script := `import socket,sys
s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
b=b'{"op":"domain.list"}'
s.sendall(b'POST /v1/call HTTP/1.0\r\nHost: x\r\nContent-Length: %d\r\n\r\n' % len(b) + b)
print(s.recv(4096).decode())`
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", py, "-c", script, path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cannot run as nobody: %v %s", err, out)
	}
	if !bytes.Contains(out, []byte("403")) || !bytes.Contains(out, []byte(CodeUnauthorized)) {
		t.Errorf("a call as nobody was not refused:\n%s", out)
	}
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"op":"user.add","args":{"name":"bob","password":"x"}}`))
	f.Add([]byte(`{"op":"queue.del","args":{"id":"../../x"}}`))
	f.Add([]byte(`{"op":""}`))
	f.Add([]byte(`{"op":"a"} {"op":"b"}`))
	f.Add([]byte(`{"op":"a","extra":1}`))
	f.Add([]byte(`[1,2,3]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := DecodeRequest(bytes.NewReader(data))
		if err != nil {
			return
		}
		if req.Op == "" || len(req.Op) > MaxOpNameLen || len(req.Args) > MaxArgs {
			t.Fatalf("accepted %+v", req)
		}
		// A decoded request runs on a Service without panicking.
		svc := New(Options{DataDir: t.TempDir()})
		if _, known := ops[req.Op]; known && strings.HasPrefix(req.Op, "queue.") {
			svc.call(t.Context(), req.Op, req.Args)
		}
	})
}
