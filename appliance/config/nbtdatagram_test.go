package config

import (
	"strings"
	"testing"

	"concierge/nbt/datagram"
)

// The reassembly bounds default to the datagram service's own, and can be
// set; a bad value is refused with the field named.
func TestNBTDatagramSettings(t *testing.T) {
	d := DefaultNBT()
	if d.DatagramReassemblyTimeout.D() != datagram.DefaultReassemblyTimeout || d.DatagramMaxPending != datagram.DefaultMaxPending ||
		d.DatagramMaxPendingBytes != datagram.DefaultMaxPendingBytes {
		t.Fatalf("defaults %+v", d.NBTDatagram)
	}
	c := Default()
	if err := c.Set("nbt.datagram_max_pending", "8"); err != nil || c.NBT.DatagramMaxPending != 8 {
		t.Fatalf("%v %d", err, c.NBT.DatagramMaxPending)
	}
	if err := c.Set("nbt.datagram_reassembly_timeout", "2h"); err == nil || !strings.Contains(err.Error(), "nbt.datagram_reassembly_timeout") {
		t.Fatalf("accepted, or without the field: %v", err)
	}
}
