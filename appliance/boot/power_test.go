package boot

import (
	"encoding/binary"
	"testing"
)

// inputEvent is one struct input_event as evdev returns it on amd64.
func inputEvent(typ, code uint16, value int32) []byte {
	b := make([]byte, inputEventSize)
	binary.NativeEndian.PutUint64(b[0:], 1700000000) // tv_sec
	binary.NativeEndian.PutUint64(b[8:], 250000)     // tv_usec
	binary.NativeEndian.PutUint16(b[16:], typ)
	binary.NativeEndian.PutUint16(b[18:], code)
	binary.NativeEndian.PutUint32(b[20:], uint32(value))
	return b
}

func TestPowerPressed(t *testing.T) {
	cat := func(evs ...[]byte) (b []byte) {
		for _, e := range evs {
			b = append(b, e...)
		}
		return b
	}
	syn := inputEvent(0, 0, 0) // EV_SYN SYN_REPORT
	for _, c := range []struct {
		name   string
		events []byte
		want   bool
	}{
		{"press then sync", cat(inputEvent(evKey, keyPower, 1), syn), true},
		{"sync then press", cat(syn, inputEvent(evKey, keyPower, 1)), true},
		{"release", cat(inputEvent(evKey, keyPower, 0), syn), false},
		{"repeat", cat(inputEvent(evKey, keyPower, 2), syn), false},
		{"another key", cat(inputEvent(evKey, 142, 1), syn), false}, // KEY_SLEEP
		{"not a key event", cat(inputEvent(0x04, keyPower, 1), syn), false},
		{"a cut record", inputEvent(evKey, keyPower, 1)[:inputEventSize-1], false},
		{"nothing", nil, false},
	} {
		if got := powerPressed(c.events); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
