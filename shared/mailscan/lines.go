package mailscan

import "io"

// LineNormalizer writes what it is given with every line ending spelled
// CRLF: a bare LF gets its CR, and CRs piled up before an LF collapse into
// one. Servers store line endings their own way (Dovecot turns "\r\r\n"
// into "\r\n"); a hash of the normalised bytes tells such a change apart
// from a different message.
type LineNormalizer struct {
	w   io.Writer
	crs int
	buf []byte
}

// Write normalises p; it always reports all of p written.
func (n *LineNormalizer) Write(p []byte) (int, error) {
	n.buf = n.buf[:0]
	for _, c := range p {
		switch c {
		case '\r':
			n.crs++
		case '\n':
			n.buf = append(n.buf, '\r', '\n')
			n.crs = 0
		default:
			for ; n.crs > 0; n.crs-- {
				n.buf = append(n.buf, '\r')
			}
			n.buf = append(n.buf, c)
		}
	}
	if _, err := n.w.Write(n.buf); err != nil {
		return 0, err
	}
	return len(p), nil
}

// NewLineNormalizer returns a LineNormalizer writing to w.
func NewLineNormalizer(w io.Writer) *LineNormalizer { return &LineNormalizer{w: w} }

// Close writes CRs left at the very end.
func (n *LineNormalizer) Close() error {
	for ; n.crs > 0; n.crs-- {
		if _, err := n.w.Write([]byte{'\r'}); err != nil {
			return err
		}
	}
	return nil
}
