// Package browse announces the box to the office's browse list (MS-BRWS,
// the "Network Neighborhood"): Host Announcements to WORKGROUP<1D> at
// start and then with a growing period (MS-BRWS 3.2.6: 1 minute doubling
// to 12), and answers to Announcement Requests. The frames are SMB
// transactions to the mailslot \MAILSLOT\BROWSE (MS-BRWS 2.2, MS-MAIL
// 2.2, MS-CIFS 2.2.4.33.1) carried in NetBIOS datagrams (nbt/datagram).
// The box does not take part in browser elections.
package browse

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Mailslot is where browser frames go (MS-BRWS 2.2).
const Mailslot = `\MAILSLOT\BROWSE`

// Browser frame opcodes (MS-BRWS 2.2).
const (
	OpHostAnnouncement    = 0x01
	OpAnnouncementRequest = 0x02
)

// Server type bits (MS-BRWS 2.2.1; MS-RAP SV_TYPE_*).
const (
	SVTypeWorkstation = 0x00000001
	SVTypeServer      = 0x00000002
)

// Errors of the codec.
var (
	ErrShort   = errors.New("browse: frame too short")
	ErrNotSMB  = errors.New("browse: not an SMB mailslot transaction")
	ErrMailbox = errors.New("browse: not for " + Mailslot)
)

const (
	smbHeaderLen   = 32
	transWords     = 17 // 14 parameter words and 3 setup words
	smbComTrans    = 0x25
	mailslotWrite  = 1 // setup[0], MS-MAIL 2.2.1
	mailslotClass2 = 2 // setup[2]: unreliable, broadcast
	maxNameLen     = 15
	// MaxComment is the longest comment of a Host Announcement
	// (MS-BRWS 2.2.2: 43 bytes and the NUL).
	MaxComment = 43
	// browser configuration version and signature of a Host
	// Announcement (MS-BRWS 2.2.2).
	browserMajor = 0x0f
	browserMinor = 0x01
	signature    = 0xaa55
)

// HostAnnouncement is the frame a host sends to be listed (MS-BRWS 2.2.2).
type HostAnnouncement struct {
	UpdateCount      uint8
	Periodicity      time.Duration // until the next announcement
	ServerName       string        // at most 15 characters
	OSMajor, OSMinor uint8
	ServerType       uint32
	Comment          string // at most MaxComment characters
}

// Append appends the announcement's browser frame (without the SMB
// transaction) to b.
func (a *HostAnnouncement) Append(b []byte) ([]byte, error) {
	if len(a.ServerName) > maxNameLen || len(a.Comment) > MaxComment {
		return b, fmt.Errorf("browse: name %q or comment too long", a.ServerName)
	}
	b = append(b, OpHostAnnouncement, a.UpdateCount)
	b = binary.LittleEndian.AppendUint32(b, uint32(a.Periodicity/time.Millisecond))
	var name [16]byte
	copy(name[:], a.ServerName)
	b = append(b, name[:]...)
	b = append(b, a.OSMajor, a.OSMinor)
	b = binary.LittleEndian.AppendUint32(b, a.ServerType)
	b = append(b, browserMajor, browserMinor)
	b = binary.LittleEndian.AppendUint16(b, signature)
	b = append(b, a.Comment...)
	return append(b, 0), nil
}

// ParseHostAnnouncement decodes a Host Announcement frame.
func ParseHostAnnouncement(f []byte) (*HostAnnouncement, error) {
	if len(f) < 33 {
		return nil, ErrShort
	}
	if f[0] != OpHostAnnouncement {
		return nil, fmt.Errorf("browse: opcode %#02x is not a host announcement", f[0])
	}
	a := &HostAnnouncement{
		UpdateCount: f[1],
		Periodicity: time.Duration(binary.LittleEndian.Uint32(f[2:])) * time.Millisecond,
		ServerName:  cstring(f[6:22]),
		OSMajor:     f[22], OSMinor: f[23],
		ServerType: binary.LittleEndian.Uint32(f[24:]),
		Comment:    cstring(f[32:]),
	}
	return a, nil
}

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// MailslotWrite wraps a browser frame in an SMB_COM_TRANSACTION request that
// writes it to \MAILSLOT\BROWSE (MS-CIFS 2.2.4.33.1, MS-MAIL 2.2.1).
func MailslotWrite(frame []byte) []byte {
	name := Mailslot + "\x00"
	dataOff := smbHeaderLen + 1 + 2*transWords + 2 + len(name)
	b := make([]byte, 0, dataOff+len(frame))
	b = append(b, 0xff, 'S', 'M', 'B', smbComTrans)
	b = append(b, make([]byte, smbHeaderLen-5)...) // status, flags, ids: zero
	b = append(b, transWords)
	le16 := func(v int) { b = binary.LittleEndian.AppendUint16(b, uint16(v)) }
	le16(0)          // TotalParameterCount
	le16(len(frame)) // TotalDataCount
	le16(0)          // MaxParameterCount
	le16(0)          // MaxDataCount
	b = append(b, 0, 0)
	le16(0)                                    // Flags
	b = binary.LittleEndian.AppendUint32(b, 0) // Timeout
	le16(0)                                    // Reserved2
	le16(0)                                    // ParameterCount
	le16(dataOff)                              // ParameterOffset
	le16(len(frame))                           // DataCount
	le16(dataOff)                              // DataOffset
	b = append(b, 3, 0)                        // SetupCount, Reserved3
	le16(mailslotWrite)
	le16(1) // priority
	le16(mailslotClass2)
	le16(len(name) + len(frame)) // ByteCount
	b = append(b, name...)
	return append(b, frame...)
}

// ParseMailslot returns the mailslot name and the data of an SMB
// mailslot write transaction; every offset is checked.
func ParseMailslot(msg []byte) (slot string, data []byte, err error) {
	if len(msg) < smbHeaderLen+1 || !bytes.Equal(msg[:4], []byte{0xff, 'S', 'M', 'B'}) || msg[4] != smbComTrans {
		return "", nil, ErrNotSMB
	}
	words := int(msg[smbHeaderLen])
	p := smbHeaderLen + 1
	if words < transWords || p+2*words+2 > len(msg) {
		return "", nil, ErrShort
	}
	w := func(i int) int { return int(binary.LittleEndian.Uint16(msg[p+2*i:])) }
	dataCount, dataOff := w(11), w(12)
	if msg[p+26] < 3 || w(14) != mailslotWrite {
		return "", nil, ErrNotSMB
	}
	bytesStart := p + 2*words + 2
	byteCount := int(binary.LittleEndian.Uint16(msg[p+2*words:]))
	if bytesStart+byteCount > len(msg) {
		return "", nil, ErrShort
	}
	nul := bytes.IndexByte(msg[bytesStart:bytesStart+byteCount], 0)
	if nul < 0 {
		return "", nil, ErrNotSMB
	}
	slot = string(msg[bytesStart : bytesStart+nul])
	if dataOff < bytesStart || dataOff+dataCount > len(msg) {
		return "", nil, ErrShort
	}
	return slot, msg[dataOff : dataOff+dataCount], nil
}

// ParseAnnouncementRequest returns the response name of an Announcement
// Request frame (MS-BRWS 2.2.3).
func ParseAnnouncementRequest(f []byte) (string, error) {
	if len(f) < 2 || f[0] != OpAnnouncementRequest {
		return "", fmt.Errorf("browse: not an announcement request")
	}
	return cstring(f[2:]), nil
}
