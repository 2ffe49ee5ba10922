package browse_test

// Acceptance 1 of issue 13 against the real "concierge serve" in network
// namespaces: Samba's nmbd, local master browser of the workgroup, lists
// the box after its first Host Announcement; tshark on the box's
// interface checks Wireshark's NBDS and BROWSER dissectors.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"concierge/internal/testnet"
)

func TestNmbdMasterBrowserListsTheBox(t *testing.T) {
	testnet.Require(t, "tshark", "nmbd")
	lan := testnet.NewLAN(t, "10.77.132.0/24")
	boxH, masterH := lan.AddHost("box", 1), lan.AddHost("master", 2)

	// nmbd keeps its browse list in browse.dat in its lock directory.
	dir := t.TempDir()
	nmbd := masterH.StartNmbd("MASTER", "OFFICE", "local master = yes", "preferred master = yes", "os level = 65",
		"lock directory = "+dir, "state directory = "+dir, "cache directory = "+dir)
	if !nmbd.WaitOutput(90*time.Second, func(s string) bool { return strings.Contains(s, "is now a local master browser") }) {
		t.Fatalf("nmbd did not become local master browser:\n%s", nmbd.Out.String())
	}

	b := testnet.NewBox(t, boxH)
	for _, kv := range [][2]string{
		{"smtp.mx_listen", ""}, {"smtp.submission_listen", ""}, {"smtp.submission_tls_listen", ""},
		{"nbt.enabled", "true"}, {"nbt.interfaces", boxH.IF}, {"nbt.workgroup", "OFFICE"},
		{"nbt.comment", "Office mail and names"},
	} {
		b.CLI("config", "set", kv[0], kv[1])
	}
	capt := boxH.Capture("udp port 138")
	t.Cleanup(func() {
		bad, all := capt.Stop(testnet.Flagged(boxH.Addr))
		t.Logf("tshark:\n%s", all)
		if strings.TrimSpace(bad) != "" {
			t.Errorf("Wireshark flags packets the box sent:\n%s", bad)
		}
		if !strings.Contains(all, "Host Announcement CONCIERGE") {
			t.Errorf("no Host Announcement in the capture")
		}
	})
	b.Start(139)
	if !b.Proc.WaitOutput(30*time.Second, func(s string) bool { return strings.Contains(s, "nbt: host announcement sent") }) {
		t.Fatalf("no host announcement:\n%s", b.Proc.Out.String())
	}
	// The default period is a minute: only the first announcement (or
	// the answer to nmbd's Announcement Request) can have arrived.
	var list string
	if !testnet.WaitFor(60*time.Second, func() bool {
		data, _ := os.ReadFile(filepath.Join(dir, "browse.dat"))
		list = string(data)
		return strings.Contains(list, `"CONCIERGE"`)
	}) {
		t.Fatalf("nmbd's browse list lacks the box:\n%s\nnmbd:\n%s", list, nmbd.Out.String())
	}
	t.Logf("browse.dat:\n%s", list)
	for _, l := range strings.Split(list, "\n") {
		if strings.Contains(l, `"CONCIERGE"`) && !strings.Contains(l, `"Office mail and names"`) {
			t.Errorf("the box is listed without its comment: %s", l)
		}
	}
}
