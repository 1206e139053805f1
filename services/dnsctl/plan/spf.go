package plan

import (
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/mailferry/mailferry/services/dnsctl/records"
)

// maxTXTString is the longest character-string in a TXT record (RFC 1035).
const maxTXTString = 255

// spfChange replaces the legacy mechanism in the SPF record of the apex
// TXT RRset; every other TXT record stays as it is, byte for byte, and so
// does the rest of the SPF record, down to its split into strings. It
// returns nil when nothing changes.
func (p Policy) spfChange(txt records.RRset) (*records.Change, error) {
	if p.SPFReplace == "" || !txt.Exists() {
		return nil, nil
	}
	rrs, err := txt.RRs()
	if err != nil {
		return nil, err
	}
	next := txt
	next.Data = slices.Clone(txt.Data)
	changed := false
	for i, rr := range rrs {
		strs := rr.(*dns.TXT).Txt
		joined := strings.Join(strs, "")
		if !isSPF(joined) {
			continue
		}
		edits := spfEdits(joined, p.SPFReplace, p.SPFWith)
		if len(edits) == 0 {
			continue
		}
		next.Data[i] = records.Rdata(&dns.TXT{Hdr: *rr.Header(), Txt: applyEdits(strs, edits)})
		changed = true
	}
	if !changed {
		return nil, nil
	}
	return &records.Change{Old: txt, New: next}, nil
}

func isSPF(s string) bool {
	return strings.EqualFold(s, "v=spf1") || len(s) > 7 && strings.EqualFold(s[:7], "v=spf1 ")
}

// edit replaces spf[start:end] by text.
type edit struct {
	start, end int
	text       string
}

// spfEdits finds the terms of spf whose mechanism is old and returns the
// edits that replace the first by repl (keeping its qualifier) and remove
// the others, or remove them all when repl is there already. Terms are
// separated by spaces (RFC 7208 §4.6.1); the strings of a TXT record are
// joined without one (§3.3).
func spfEdits(spf, old, repl string) []edit {
	type term struct{ start, end int }
	var terms []term
	for i := 0; i < len(spf); {
		if spf[i] == ' ' {
			i++
			continue
		}
		j := i
		for j < len(spf) && spf[j] != ' ' {
			j++
		}
		terms = append(terms, term{i, j})
		i = j
	}
	present := slices.ContainsFunc(terms, func(t term) bool { return strings.EqualFold(mechanism(spf[t.start:t.end]), mechanism(repl)) })
	var edits []edit
	for k, t := range terms {
		tok := spf[t.start:t.end]
		if !strings.EqualFold(mechanism(tok), mechanism(old)) {
			continue
		}
		if !present {
			edits = append(edits, edit{t.start, t.end, qualifier(tok) + mechanism(repl)})
			present = true
			continue
		}
		// Remove the term with the space before it (or after it, first).
		start, end := t.start, t.end
		if k > 0 {
			start = terms[k-1].end
		} else if k+1 < len(terms) {
			end = terms[k+1].start
		}
		edits = append(edits, edit{start, end, ""})
	}
	return edits
}

// RewriteSPF replaces the mechanism old by repl in the SPF record spf,
// keeping its qualifier and every other byte. When repl is already there,
// old is dropped instead of doubled. It reports whether old was found.
func RewriteSPF(spf, old, repl string) (string, bool) {
	edits := spfEdits(spf, old, repl)
	return strings.Join(applyEdits([]string{spf}, edits), ""), len(edits) > 0
}

// applyEdits applies edits, given as offsets into the concatenation of
// strs, and keeps the boundaries between the strings where they were
// (an edit across a boundary moves it to the edit's end). Only when a
// string grows beyond 255 bytes is the record split anew.
func applyEdits(strs []string, edits []edit) []string {
	joined := strings.Join(strs, "")
	var b strings.Builder
	var cuts []int // boundaries, as offsets into the new string
	boundary, pos := 0, 0
	bounds := make([]int, 0, len(strs))
	for _, s := range strs[:len(strs)-1] {
		boundary += len(s)
		bounds = append(bounds, boundary)
	}
	for _, e := range edits {
		b.WriteString(joined[pos:e.start])
		shift := b.Len() - e.start
		for len(bounds) > 0 && bounds[0] <= e.start {
			cuts, bounds = append(cuts, bounds[0]+shift), bounds[1:]
		}
		b.WriteString(e.text)
		for len(bounds) > 0 && bounds[0] < e.end {
			cuts, bounds = append(cuts, b.Len()), bounds[1:]
		}
		pos = e.end
	}
	shift := b.Len() - pos
	b.WriteString(joined[pos:])
	for _, bd := range bounds {
		cuts = append(cuts, bd+shift)
	}
	return cutAt(b.String(), cuts)
}

// cutAt splits s at the offsets cuts, dropping empty pieces; a piece over
// 255 bytes makes it fall back to 255-byte pieces.
func cutAt(s string, cuts []int) []string {
	var out []string
	prev := 0
	for _, c := range append(cuts, len(s)) {
		if c > prev {
			out = append(out, s[prev:c])
			prev = c
		}
	}
	if len(out) == 0 {
		out = []string{""}
	}
	if slices.ContainsFunc(out, func(p string) bool { return len(p) > maxTXTString }) {
		return split(s)
	}
	return out
}

func qualifier(t string) string {
	if t != "" && strings.ContainsRune("+-~?", rune(t[0])) {
		return t[:1]
	}
	return ""
}

func mechanism(t string) string { return t[len(qualifier(t)):] }

// split cuts s into character-strings of at most 255 bytes.
func split(s string) []string {
	var out []string
	for len(s) > maxTXTString {
		out = append(out, s[:maxTXTString])
		s = s[maxTXTString:]
	}
	return append(out, s)
}
