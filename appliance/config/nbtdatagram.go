package config

import (
	"time"

	"concierge/nbt/datagram"
)

// NBTDatagram are the datagram service's (138/udp) reassembly bounds,
// part of the nbt section: fragments of a datagram wait at most
// DatagramReassemblyTimeout for the rest, and at most
// DatagramMaxPending datagrams of DatagramMaxPendingBytes together are
// being put together at once (RFC 1002 5.3.3).
type NBTDatagram struct {
	DatagramReassemblyTimeout Duration `json:"datagram_reassembly_timeout"`
	DatagramMaxPending        int      `json:"datagram_max_pending"`
	DatagramMaxPendingBytes   int      `json:"datagram_max_pending_bytes"`
}

func defaultNBTDatagram() NBTDatagram {
	return NBTDatagram{
		DatagramReassemblyTimeout: Duration(datagram.DefaultReassemblyTimeout),
		DatagramMaxPending:        datagram.DefaultMaxPending,
		DatagramMaxPendingBytes:   datagram.DefaultMaxPendingBytes,
	}
}

func (s *NBTDatagram) validate(p string) Errors {
	var errs Errors
	if d := s.DatagramReassemblyTimeout.D(); d < 100*time.Millisecond || d > time.Minute {
		errs = append(errs, fieldErr(p+".datagram_reassembly_timeout", "must be between 100ms and 1m0s, not %s", s.DatagramReassemblyTimeout))
	}
	if s.DatagramMaxPending < 1 || s.DatagramMaxPending > 4096 {
		errs = append(errs, fieldErr(p+".datagram_max_pending", "must be between 1 and 4096 datagrams, not %d", s.DatagramMaxPending))
	}
	// One datagram's user data is at most 64 KiB; 16 MiB is far beyond
	// what a small box should hold for strangers.
	if s.DatagramMaxPendingBytes < 1<<10 || s.DatagramMaxPendingBytes > 16<<20 {
		errs = append(errs, fieldErr(p+".datagram_max_pending_bytes", "must be between 1024 and 16777216 bytes, not %d", s.DatagramMaxPendingBytes))
	}
	return errs
}
