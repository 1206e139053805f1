package foldermap

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// cleanLevel makes one source level valid as one target level and says why
// it changed. top marks the first level of the target name, where "#" and
// "~" would be read as a namespace prefix.
func (m *Mapper) cleanLevel(level string, top bool) (string, []string) {
	if level == "" {
		return m.sub, []string{fmt.Sprintf("empty level replaced with %q", m.sub)}
	}
	out, why := m.replaceRunes(level)
	if out == "." || out == ".." {
		// Filesystem-backed servers treat these as directory references.
		// Substituting per dot keeps "." and ".." distinct.
		rep := strings.Repeat(m.sub, len(out))
		why = append(why, fmt.Sprintf("level %q is reserved, replaced with %q", level, rep))
		out = rep
	}
	if top && (out[0] == '#' || out[0] == '~') {
		why = append(why, fmt.Sprintf("top-level name %q must not start with %q, replaced with %q", level, out[:1], m.sub))
		out = m.sub + out[1:]
	}
	return out, why
}

// replaceRunes substitutes the target delimiter (which would otherwise split
// the level in two), control characters and invalid UTF-8 bytes.
func (m *Mapper) replaceRunes(level string) (string, []string) {
	var b strings.Builder
	var delim, ctrl, bad bool
	for i := 0; i < len(level); {
		r, size := utf8.DecodeRuneInString(level[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			bad = true
			b.WriteString(m.sub)
		case r == m.delim:
			delim = true
			b.WriteString(m.sub)
		case unicode.IsControl(r):
			ctrl = true
			b.WriteString(m.sub)
		default:
			b.WriteString(level[i : i+size])
		}
		i += size
	}
	var why []string
	if delim {
		why = append(why, fmt.Sprintf("level %q contains target delimiter %q, replaced with %q", level, m.delim, m.sub))
	}
	if ctrl {
		why = append(why, fmt.Sprintf("level %q contains control characters, replaced with %q", level, m.sub))
	}
	if bad {
		why = append(why, fmt.Sprintf("level %q contains invalid UTF-8, replaced with %q", level, m.sub))
	}
	return b.String(), why
}

// splitName splits a source name into levels; a NIL delimiter means the
// namespace is flat and the whole name is one level.
func splitName(name string, delim rune) []string {
	if delim == 0 {
		return []string{name}
	}
	return strings.Split(name, string(delim))
}

// foldKey is the key under which target names collide. Names differing only
// in case collide because many targets (Exchange, Gmail) compare mailbox
// names case-insensitively; renaming on a case-sensitive target is harmless,
// merging on a case-insensitive one is not. Each rune is replaced by the
// smallest member of its simple case-folding orbit, matching strings.EqualFold.
func foldKey(s string) string {
	return strings.Map(func(r rune) rune {
		low := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			low = min(low, f)
		}
		return low
	}, s)
}
