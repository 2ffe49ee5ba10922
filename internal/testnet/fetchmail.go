package testnet

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// Fetchmail collects user's mail from the POP3 server at server:110 with
// fetchmail run on the host, with the given poll options (e.g. "keep
// sslproto 'tls1.2+' no sslcertck"). It returns the messages fetchmail
// delivered, sorted, its log and its error.
func (h *Host) Fetchmail(server, user, pass, opts string) ([]string, string, error) {
	t := h.lan.t
	t.Helper()
	home := t.TempDir()
	out := filepath.Join(home, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	rc := fmt.Sprintf("set no bouncemail\nset invisible\npoll %s service 110 protocol pop3 timeout 30 auth password\n"+
		"  user %q there with password %q is \"root\" here\n"+
		"  %s fetchall no rewrite no stripcr\n"+
		"  mda \"sh -c 'cat > %s/msg.$$'\"\n", server, user, pass, opts, out)
	rcFile := filepath.Join(home, "fetchmailrc")
	if err := os.WriteFile(rcFile, []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	log, err := h.Output("env", "HOME="+home, "fetchmail", "-f", rcFile, "-v", "--nosyslog")
	return ReadFiles(t, out), log, err
}

// ReadFiles returns the contents of every file in dir, sorted.
func ReadFiles(t testing.TB, dir string) []string {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	sort.Strings(out)
	return out
}
