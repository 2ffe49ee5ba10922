package smtpd

// The front end alone decides where the data of a message ends (RFC 5321
// 4.1.1.4: the line holding a single dot, "<CRLF>.<CRLF>"). The library
// parses the data again with a reader of its own, which disagrees with the
// raw stream in corner cases (it does not end a line at CR CR LF, and
// treats ".\n" at the start of a line differently). So the front end hands
// the library a canonical form of the message in which there is nothing
// left to disagree about:
//
//   - every line ends in CRLF, and the text holds no other CR or LF;
//   - every line that starts with a dot is dot-stuffed (RFC 5321 4.5.2);
//   - the data ends with the line ".", and nothing before it is that line.
//
// Line endings are normalised as the data arrives (RFC 5321 2.3.8 allows
// only CRLF; senders that get it wrong must not make stored or relayed
// mail ambiguous): CRLF, a run of CRs before LF ("\r\r\n") and a bare LF
// each end one line, and so does a run of bare CRs. Only a CRLF in the
// raw stream starts a line whose leading dot is stuffing (and which ends
// the data when it is a single dot): after a bare LF or CR a dot is text,
// so "\n.\r\n" can never end the data (SMTP smuggling).

// dotState is where the canonical transform stands in the raw data.
type dotState uint8

const (
	dotLineStart dotState = iota // at a line begun after CRLF (or at the start): a dot is stuffing or the end
	dotBareStart                 // at a line begun after a bare LF or CR: a dot is text
	dotInLine                    // inside a line
	dotDot                       // after "." at the start of a line
	dotDotCR                     // after ".\r" at the start of a line
	dotCR                        // inside a run of CRs (a line ending so far)
)

// dotCanon turns raw message data into its canonical form (see above).
// Its zero value is at the start of the data.
type dotCanon struct{ state dotState }

// feed appends the canonical form of in to out. It returns the new out,
// how many bytes of in it used, and whether the data ended (then used
// counts the terminating line, out ends with ".\r\n", and the rest of in
// are commands).
func (d *dotCanon) feed(out, in []byte) ([]byte, int, bool) {
	for i, b := range in {
		switch d.state {
		case dotLineStart:
			if b == '.' {
				d.state = dotDot
				continue
			}
			out = d.startLine(out, b)
		case dotBareStart:
			out = d.startLine(out, b)
		case dotInLine:
			switch b {
			case '\r':
				d.state = dotCR
			case '\n':
				out = append(out, '\r', '\n')
				d.state = dotBareStart
			default:
				out = append(out, b)
			}
		case dotDot:
			if b == '\r' {
				d.state = dotDotCR
				continue
			}
			// The dot was stuffing: the line's text starts with b.
			out = d.startLine(out, b)
		case dotDotCR:
			if b == '\n' {
				d.state = dotLineStart
				return append(out, '.', '\r', '\n'), i + 1, true
			}
			// An empty line ended by bare CRs.
			out = d.afterCR(out, b)
		case dotCR:
			out = d.afterCR(out, b)
		}
	}
	return out, len(in), false
}

// startLine handles the first byte of a line's text.
func (d *dotCanon) startLine(out []byte, b byte) []byte {
	switch b {
	case '.':
		d.state = dotInLine
		return append(out, '.', '.')
	case '\r':
		d.state = dotCR
		return out
	case '\n':
		d.state = dotBareStart
		return append(out, '\r', '\n')
	}
	d.state = dotInLine
	return append(out, b)
}

// afterCR handles the byte after a run of CRs, which ends a line.
func (d *dotCanon) afterCR(out []byte, b byte) []byte {
	switch b {
	case '\r':
		d.state = dotCR
		return out
	case '\n':
		d.state = dotLineStart
		return append(out, '\r', '\n')
	}
	return d.startLine(append(out, '\r', '\n'), b)
}
