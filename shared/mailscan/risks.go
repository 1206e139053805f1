package mailscan

import (
	"bytes"
	"strings"
)

// Risks notes, as a message's bytes go by, what in them IMAP servers are
// known to rewrite when they store an APPEND: NUL bytes (Dovecot stores
// 0x80, Cyrus refuses the message), line endings other than CRLF (Dovecot
// stores "\r\r\n" as "\r\n") and 8-bit bytes in the header (Cyrus, by
// default, replaces each with "X"). NUL and header bytes are replaced
// one for one, so a size check alone does not show those (SameSize).
type Risks struct {
	// NUL is set when the message holds a NUL byte.
	NUL bool
	// LineEndings is set for a CR or LF that is not part of a CRLF pair.
	LineEndings bool
	// Header8Bit is set for a byte above 0x7f before the first empty line.
	Header8Bit bool

	body    bool // past the header's end
	crs     int  // CRs seen since the last other byte
	lineLen int  // bytes on the current line, CRs left out
}

// Write notes the risks in p; it never fails. It is on the loader's path
// for every byte sent, so the body, where only NUL bytes and line endings
// matter, is looked at with the bytes package's vectorised searches.
func (r *Risks) Write(p []byte) (int, error) {
	n := len(p)
	for !r.body && len(p) > 0 {
		// The header is short: byte by byte.
		r.note(p[0])
		p = p[1:]
	}
	if len(p) == 0 {
		return n, nil
	}
	if !r.NUL && bytes.IndexByte(p, 0) >= 0 {
		r.NUL = true
	}
	if r.LineEndings {
		return n, nil
	}
	if r.crs > 0 {
		// CRs that ended the last piece must be one, before an LF.
		if r.crs > 1 || p[0] != '\n' {
			r.LineEndings = true
			return n, nil
		}
		r.crs = 0
		p = p[1:]
	}
	// CRs at the end wait for the next piece.
	trail := 0
	for trail < len(p) && p[len(p)-1-trail] == '\r' {
		trail++
	}
	q := p[:len(p)-trail]
	// Every line ending is CRLF exactly when CRs, LFs and CRLF pairs are
	// as many.
	pairs := bytes.Count(q, crlf)
	if bytes.Count(q, []byte{'\r'}) != pairs || bytes.Count(q, []byte{'\n'}) != pairs {
		r.LineEndings = true
	}
	r.crs = trail
	return n, nil
}

var crlf = []byte("\r\n")

// note takes one byte, byte by byte: Write uses it for the header.
func (r *Risks) note(c byte) {
	switch {
	case c == '\r':
		r.crs++
		return
	case c == '\n':
		if r.crs != 1 {
			r.LineEndings = true
		}
		if r.lineLen == 0 {
			r.body = true
		}
		r.crs, r.lineLen = 0, 0
		return
	case c == 0:
		r.NUL = true
	case c >= 0x80 && !r.body:
		r.Header8Bit = true
	}
	if r.crs > 0 {
		r.LineEndings = true
		r.crs = 0
	}
	r.lineLen++
}

// Any reports whether the message holds anything servers are known to
// rewrite.
func (r *Risks) Any() bool {
	return r.NUL || r.LineEndings || r.Header8Bit || r.crs > 0
}

// SameSize reports whether a server may have rewritten the message
// without changing its size: NUL bytes and 8-bit header bytes are
// replaced one for one. The known rewrites of line endings change the
// size, which is cheaper to ask for than the bytes.
func (r *Risks) SameSize() bool { return r.NUL || r.Header8Bit }

// String lists the risks found, for logs: "nul,line-endings".
func (r *Risks) String() string {
	var out []string
	if r.NUL {
		out = append(out, "nul")
	}
	if r.LineEndings || r.crs > 0 {
		out = append(out, "line-endings")
	}
	if r.Header8Bit {
		out = append(out, "8bit-header")
	}
	return strings.Join(out, ",")
}
