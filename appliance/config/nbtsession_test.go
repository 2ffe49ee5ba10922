package config

import "testing"

func TestSetGateways(t *testing.T) {
	c := Default()
	if err := c.Set("nbt.gateways", "ACCOUNTS#20=10.0.0.5:8080, LEGACY=10.0.0.6:23"); err != nil {
		t.Fatal(err)
	}
	if len(c.NBT.Gateways) != 2 || c.NBT.SessionMaxConns == 0 {
		t.Fatalf("%+v", c.NBT.NBTSessions)
	}
	if err := c.Set("nbt.retarget", "OLD=somehost:139"); err == nil {
		t.Fatal("bad retarget accepted")
	}
}
