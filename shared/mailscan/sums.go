package mailscan

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"hash"
)

// Sums computes, in one pass over a message's bytes, the fingerprints
// mailferry compares: the SHA-256 of the exact bytes, the SHA-256 with
// line endings normalised (see LineNormalizer) and, for a message holding
// bytes that servers are known to rewrite, the SHA-256 of its loose form
// (see LooseSHA256).
type Sums struct {
	exact hash.Hash
	norm  *LineNormalizer
	tap   *looseTap
	// same says line normalisation has changed nothing so far: the
	// line-ending sum's input is the exact one's, and tap.lines is not
	// fed (it is made from exact when they part).
	same bool
	done bool
	sums [3]string
}

// NewSums returns an empty Sums.
func NewSums() *Sums {
	s := &Sums{exact: sha256.New(), tap: &looseTap{}, same: true}
	s.norm = NewLineNormalizer(s.tap)
	return s
}

// Write adds p to every sum. Nearly all mail has CRLF line endings and
// nothing the loose form rewrites: then p is hashed once, for both the
// exact and the line-ending sum.
func (s *Sums) Write(p []byte) (int, error) {
	if s.same && s.norm.crs == 0 && crlfOnly(p) && s.tap.plain(p) {
		s.exact.Write(p)
		return len(p), nil
	}
	if s.same {
		s.tap.lines, s.same = cloneHash(s.exact), false
	}
	s.exact.Write(p)
	return s.norm.Write(p)
}

func (s *Sums) finish() {
	if s.done {
		return
	}
	s.done = true
	if s.same && s.norm.crs > 0 {
		s.tap.lines, s.same = cloneHash(s.exact), false
	}
	_ = s.norm.Close()
	s.sums[0] = hex.EncodeToString(s.exact.Sum(nil))
	s.sums[1] = s.sums[0]
	if !s.same {
		s.sums[1] = hex.EncodeToString(s.tap.lines.Sum(nil))
	}
	if s.tap.loose != nil {
		s.sums[2] = hex.EncodeToString(s.tap.loose.Sum(nil))
	}
}

// Hex returns the exact and the line-ending sums in hex, after the last
// Write.
func (s *Sums) Hex() (exact, lines string) {
	s.finish()
	return s.sums[0], s.sums[1]
}

// LooseHex returns the sum of the loose form in hex, after the last
// Write; "" when the loose form is the line-normalised one (nothing in
// the message is rewritten by it).
func (s *Sums) LooseHex() string {
	s.finish()
	return s.sums[2]
}

// LooseSHA256 returns the SHA-256 of b's loose form, or "" when b holds
// nothing the loose form rewrites (its LinesSHA256 then stands for it).
// The loose form has line endings normalised, every bare CR (one that ends
// no line: not before an LF, or the message's last byte) left out, every
// NUL byte as 0x80 and every byte above 0x7f in the header (before the
// first empty line) as "X": a copy keeps it through the rewrites servers
// are known to make on APPEND (Dovecot turns NUL into 0x80, "\r\r\n" into
// "\r\n" and drops a CR that ends the message; Cyrus, by default, replaces
// 8-bit header bytes with "X"). A target copy with the same loose form as
// a message it was sent is that message, altered. Most mail has nothing to
// rewrite and costs one scan for a NUL byte and one for bare CRs.
func LooseSHA256(b []byte) string {
	if !rewritable(b) {
		return ""
	}
	t := &looseTap{lines: sha256.New()}
	n := NewLineNormalizer(t)
	n.Write(b)
	_ = n.Close()
	if t.loose == nil {
		return ""
	}
	return hex.EncodeToString(t.loose.Sum(nil))
}

// rewritable reports whether b's loose form differs from its
// line-normalised form. The header's end is found on the raw bytes: line
// normalisation changes only CRs and LFs, which headerState ignores or
// keeps.
func rewritable(b []byte) bool {
	if hasBareCR(b) {
		return true
	}
	body, lineLen := false, 0
	for i, c := range b {
		if looseByte(c, body) != c {
			return true
		}
		if body, lineLen = headerState(c, body, lineLen); body {
			return bytes.IndexByte(b[i+1:], 0) >= 0
		}
	}
	return false
}

// hasBareCR reports whether raw bytes hold a CR that line normalisation
// leaves bare: a run of CRs not followed by an LF.
func hasBareCR(b []byte) bool {
	for {
		i := bytes.IndexByte(b, '\r')
		if i < 0 {
			return false
		}
		j := i + 1
		for j < len(b) && b[j] == '\r' {
			j++
		}
		if j == len(b) || b[j] != '\n' {
			return true
		}
		b = b[j+1:]
	}
}

// bareCR reports whether p[i], in line-normalised bytes as a
// LineNormalizer writes them, is a bare CR. A LineNormalizer writes each
// CRLF in one piece, so a CR that ends a piece ends no line.
func bareCR(p []byte, i int) bool {
	return p[i] == '\r' && (i+1 == len(p) || p[i+1] != '\n')
}

// noBareCR reports whether line-normalised p holds no bare CR.
func noBareCR(p []byte) bool {
	return bytes.Count(p, cr) == bytes.Count(p, crlf)
}

var cr = []byte{'\r'}

// Loose returns the hash a message's loose form has: its LooseSHA256, or
// its LinesSHA256 when that is empty.
func Loose(looseSHA256, linesSHA256 string) string {
	if looseSHA256 != "" {
		return looseSHA256
	}
	return linesSHA256
}

// looseTap takes the line-normalised bytes from a LineNormalizer: it
// feeds them to lines and, from the first byte the loose form rewrites on,
// their loose form to a copy of lines made at that point. Most mail has no
// such byte, and then costs no second hash.
type looseTap struct {
	lines, loose hash.Hash
	body         bool // past the header's end
	lineLen      int  // bytes on the current line, CR left out
	buf          []byte
}

func (t *looseTap) Write(p []byte) (int, error) {
	if t.loose == nil && t.body && bytes.IndexByte(p, 0) < 0 && noBareCR(p) {
		// In the body only a NUL byte and a bare CR are rewritten: the
		// fast path for nearly all bytes of nearly all mail.
		t.lines.Write(p)
		return len(p), nil
	}
	first := -1
	body, lineLen := t.body, t.lineLen
	for i, c := range p {
		if t.loose == nil && first < 0 && (looseByte(c, body) != c || bareCR(p, i)) {
			first = i
		}
		body, lineLen = headerState(c, body, lineLen)
	}
	if t.loose == nil && first >= 0 {
		t.lines.Write(p[:first])
		t.loose = cloneHash(t.lines)
		t.lines.Write(p[first:])
		b, l := t.stateAt(p[:first])
		t.loose.Write(t.mapped(p[first:], b, l))
		t.body, t.lineLen = body, lineLen
		return len(p), nil
	}
	t.lines.Write(p)
	if t.loose != nil {
		t.loose.Write(t.mapped(p, t.body, t.lineLen))
	}
	t.body, t.lineLen = body, lineLen
	return len(p), nil
}

// plain reports whether p, line-normalised already (crlfOnly), holds
// nothing the loose form rewrites from the tap's state on, and if so
// moves the tap's header state past it: such a piece need not be written
// to the tap at all while its line-ending sum is the exact one.
func (t *looseTap) plain(p []byte) bool {
	if t.loose != nil {
		return false
	}
	if t.body {
		return bytes.IndexByte(p, 0) < 0
	}
	body, lineLen := t.body, t.lineLen
	for i, c := range p {
		if looseByte(c, body) != c {
			return false
		}
		if body, lineLen = headerState(c, body, lineLen); body {
			if bytes.IndexByte(p[i+1:], 0) >= 0 {
				return false
			}
			break
		}
	}
	t.body, t.lineLen = body, lineLen
	return true
}

// stateAt is the header state after p, from the tap's.
func (t *looseTap) stateAt(p []byte) (bool, int) {
	body, lineLen := t.body, t.lineLen
	for _, c := range p {
		body, lineLen = headerState(c, body, lineLen)
	}
	return body, lineLen
}

// mapped returns p's loose form, starting in the given header state.
func (t *looseTap) mapped(p []byte, body bool, lineLen int) []byte {
	t.buf = t.buf[:0]
	for i, c := range p {
		if !bareCR(p, i) {
			t.buf = append(t.buf, looseByte(c, body))
		}
		body, lineLen = headerState(c, body, lineLen)
	}
	return t.buf
}

// looseByte is c in the loose form, in the header or the body.
func looseByte(c byte, body bool) byte {
	if c == 0 {
		c = 0x80
	}
	if c >= 0x80 && !body {
		return 'X'
	}
	return c
}

// headerState follows the header's end over line-normalised bytes: the
// first empty line ends it.
func headerState(c byte, body bool, lineLen int) (bool, int) {
	switch c {
	case '\r':
		return body, lineLen
	case '\n':
		return body || lineLen == 0, 0
	}
	return body, lineLen + 1
}

// cloneHash copies a SHA-256 in its current state.
func cloneHash(h hash.Hash) hash.Hash {
	if c, ok := h.(hash.Cloner); ok {
		if d, err := c.Clone(); err == nil {
			return d
		}
	}
	state, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		panic("mailscan: sha256 state cannot be copied: " + err.Error())
	}
	d := sha256.New()
	if err := d.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
		panic("mailscan: sha256 state cannot be copied: " + err.Error())
	}
	return d
}
