package session

import "testing"

func TestParseMappings(t *testing.T) {
	g, err := ParseGateway("accounts#20 = 10.0.0.5:8080", "")
	if err != nil || g.Name.String() != "ACCOUNTS<20>" || g.Addr != "10.0.0.5:8080" {
		t.Fatalf("%+v %v", g, err)
	}
	r, err := ParseRetarget("OLDHOST=10.77.0.9:139", "")
	if err != nil || r.Name.String() != "OLDHOST<20>" || r.To.String() != "10.77.0.9:139" {
		t.Fatalf("%+v %v", r, err)
	}
	for _, bad := range []string{"ACCOUNTS", "A#2=h:1", "A#zz=h:1", "=h:1", "A=h", "A=h:0", "SIXTEENCHARSXXXX=h:1", "*=h:1"} {
		if _, err := ParseGateway(bad, ""); err == nil {
			t.Errorf("gateway %q accepted", bad)
		}
	}
	for _, bad := range []string{"A=host:139", "A=::1:139", "A=10.0.0.1"} {
		if _, err := ParseRetarget(bad, ""); err == nil {
			t.Errorf("retarget %q accepted", bad)
		}
	}
}
