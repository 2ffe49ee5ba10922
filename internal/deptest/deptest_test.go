// Package deptest checks that dependencies point down: protocol packages
// never import the appliance that composes them, and the firmware binary
// links no test-only or host-side code.
package deptest

import (
	"os/exec"
	"strings"
	"testing"
)

func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

func TestProtocolPackagesDoNotImportTheAppliance(t *testing.T) {
	out, err := exec.Command("go", "list", "concierge/...").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "concierge/appliance") || strings.HasPrefix(pkg, "concierge/cmd") ||
			strings.HasPrefix(pkg, "concierge/internal/deptest") {
			continue
		}
		for _, d := range deps(t, pkg) {
			if strings.HasPrefix(d, "concierge/appliance") || strings.HasPrefix(d, "concierge/cmd") {
				t.Errorf("%s imports %s: dependencies must point down", pkg, d)
			}
		}
	}
}

func TestFirmwareLinksNoTestCode(t *testing.T) {
	for _, d := range deps(t, "concierge/cmd/concierge") {
		if d == "testing" || strings.HasPrefix(d, "concierge/internal/testnet") || strings.HasPrefix(d, "concierge/image") {
			t.Errorf("the firmware binary links %s", d)
		}
	}
}
