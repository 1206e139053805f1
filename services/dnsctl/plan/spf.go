package plan

import (
	"strings"

	"github.com/miekg/dns"

	"github.com/mailferry/mailferry/services/dnsctl/records"
)

// maxTXTString is the longest character-string in a TXT record (RFC 1035).
const maxTXTString = 255

// spfChange replaces the legacy mechanism in the SPF record of the apex
// TXT RRset; every other TXT record stays as it is, byte for byte. It
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
	next.Data = make([]string, len(txt.Data))
	changed := false
	for i, rr := range rrs {
		next.Data[i] = txt.Data[i]
		joined := strings.Join(rr.(*dns.TXT).Txt, "")
		if !isSPF(joined) {
			continue
		}
		rewritten, ok := RewriteSPF(joined, p.SPFReplace, p.SPFWith)
		if !ok {
			continue
		}
		next.Data[i] = records.Rdata(&dns.TXT{Hdr: *rr.Header(), Txt: split(rewritten)})
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

// RewriteSPF replaces the mechanism old by repl in the SPF record spf,
// keeping its qualifier and every other term. When repl is already there,
// old is dropped instead of doubled. It reports whether old was found.
func RewriteSPF(spf, old, repl string) (string, bool) {
	terms := strings.Fields(spf)
	out := make([]string, 0, len(terms))
	found, present := false, false
	for _, t := range terms {
		if strings.EqualFold(mechanism(t), mechanism(repl)) {
			present = true
		}
	}
	for _, t := range terms {
		if !strings.EqualFold(mechanism(t), mechanism(old)) {
			out = append(out, t)
			continue
		}
		found = true
		if !present {
			out = append(out, qualifier(t)+mechanism(repl))
			present = true
		}
	}
	return strings.Join(out, " "), found
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
