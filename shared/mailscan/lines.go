package mailscan

import (
	"bytes"
	"io"
)

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
	if n.crs == 0 && crlfOnly(p) {
		// Nearly all mail: nothing to change, and no byte-by-byte copy.
		if _, err := n.w.Write(p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
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

// crlfOnly reports whether every line ending in p is a lone CRLF: each LF
// right after one CR, and no other CR (none at the end either, where it
// could begin a line ending the next piece completes).
func crlfOnly(p []byte) bool {
	if len(p) > 0 && p[len(p)-1] == '\r' {
		return false
	}
	lfs := 0
	for i := 0; ; {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			break
		}
		k := i + j
		if k == 0 || p[k-1] != '\r' || k >= 2 && p[k-2] == '\r' {
			return false
		}
		lfs++
		i = k + 1
	}
	return bytes.Count(p, cr) == lfs
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
