package image_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"concierge/internal/testnet"
)

// swaks sends a message to the VM's SMTP forward from inside its
// namespace; body is a marker to find it by.
func (v *vm) swaks(to, body string) {
	v.t.Helper()
	out, err := exec.Command("ip", "netns", "exec", v.ns, "swaks", "--server", "127.0.0.1", "--port", fwdSMTP,
		"--from", "someone@outside.test", "--to", to, "--header", "Subject: "+body, "--body", body).CombinedOutput()
	if err != nil {
		v.t.Fatalf("swaks to %s: %v\n%s", to, err, out)
	}
}

// fetchmail collects user's mail through the VM's POP3 forward (STLS)
// and returns the messages.
func (v *vm) fetchmail(user, pass string) []string {
	v.t.Helper()
	home := v.t.TempDir()
	out := filepath.Join(home, "out")
	os.Mkdir(out, 0o755)
	rc := fmt.Sprintf("set no bouncemail\nset invisible\npoll 127.0.0.1 service %s protocol pop3 timeout 30 auth password\n"+
		"  user %q there with password %q is \"root\" here\n"+
		"  sslproto 'tls1.2+' no sslcertck fetchall no rewrite no stripcr\n"+
		"  mda \"sh -c 'cat > %s/msg.$$'\"\n", fwdPOP3, user, pass, out)
	rcFile := filepath.Join(home, "fetchmailrc")
	if err := os.WriteFile(rcFile, []byte(rc), 0o600); err != nil {
		v.t.Fatal(err)
	}
	log, err := exec.Command("ip", "netns", "exec", v.ns, "env", "HOME="+home, "fetchmail", "-f", rcFile, "-v", "--nosyslog").CombinedOutput()
	if err != nil {
		v.t.Fatalf("fetchmail as %s: %v\n%s", user, err, log)
	}
	msgs := testnet.ReadFiles(v.t, out)
	if len(msgs) == 0 {
		v.t.Fatalf("fetchmail as %s collected nothing:\n%s", user, strings.TrimSpace(string(log)))
	}
	return msgs
}
