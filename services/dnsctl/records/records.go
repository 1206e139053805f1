// Package records holds the DNS data dnsctl reads, plans, journals and
// writes back: RRsets in presentation format, so that they survive JSON and
// print as an operator reads them, and the snapshot of one domain's mail
// records as its authoritative server serves them.
package records

import (
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// RRset is the records of one owner name and type.
type RRset struct {
	// Name is the owner, a lower-case fully qualified name.
	Name string `json:"name"`
	// Type is the mnemonic, e.g. "MX".
	Type string `json:"type"`
	TTL  uint32 `json:"ttl"`
	// Data holds each record's rdata in presentation format, e.g.
	// "10 mx1.example.". Empty means the RRset does not exist.
	Data []string `json:"data,omitempty"`
}

// Empty returns the absent RRset of name and type.
func Empty(name string, typ uint16) RRset {
	return RRset{Name: dns.CanonicalName(name), Type: dns.TypeToString[typ]}
}

// FromRRs collects the records of rrs owned by name with type typ.
func FromRRs(name string, typ uint16, rrs []dns.RR) RRset {
	s := Empty(name, typ)
	for _, rr := range rrs {
		h := rr.Header()
		if h.Rrtype != typ || !strings.EqualFold(h.Name, s.Name) {
			continue
		}
		s.TTL = h.Ttl
		s.Data = append(s.Data, Rdata(rr))
	}
	return s
}

// Rdata returns the rdata of rr in presentation format.
func Rdata(rr dns.RR) string {
	return strings.TrimPrefix(rr.String(), rr.Header().String())
}

// Exists reports whether the RRset has records.
func (s RRset) Exists() bool { return len(s.Data) > 0 }

// TypeCode returns the numeric type.
func (s RRset) TypeCode() uint16 { return dns.StringToType[s.Type] }

// RRs builds fresh records (miekg/dns update helpers modify the records
// they are given, so every call returns new ones).
func (s RRset) RRs() ([]dns.RR, error) {
	out := make([]dns.RR, 0, len(s.Data))
	for _, d := range s.Data {
		rr, err := dns.NewRR(fmt.Sprintf("%s %d IN %s %s", s.Name, s.TTL, s.Type, d))
		if err != nil {
			return nil, fmt.Errorf("record %s %s %q: %w", s.Name, s.Type, d, err)
		}
		out = append(out, rr)
	}
	return out, nil
}

// Stub returns a record of the RRset's name and type without rdata, the
// form RFC 2136 prerequisites on a whole RRset take.
func (s RRset) Stub() dns.RR {
	return &dns.ANY{Hdr: dns.RR_Header{Name: s.Name, Rrtype: s.TypeCode(), Class: dns.ClassINET}}
}

// Equal reports whether s and o hold the same records, compared as DNS
// compares them (names case-insensitively, order ignored) and as RFC 2136
// prerequisites do: TTLs aside.
func (s RRset) Equal(o RRset) bool {
	if !strings.EqualFold(s.Name, o.Name) || s.Type != o.Type || len(s.Data) != len(o.Data) {
		return false
	}
	a, errA := s.RRs()
	b, errB := o.RRs()
	if errA != nil || errB != nil {
		return false
	}
	return sameRecords(a, b) && sameRecords(b, a)
}

// sameRecords reports whether every record of a is in b.
func sameRecords(a, b []dns.RR) bool {
	for _, x := range a {
		if !slices.ContainsFunc(b, func(y dns.RR) bool { return dns.IsDuplicate(x, y) }) {
			return false
		}
	}
	return true
}

// Contains reports whether rdata d is one of the RRset's records.
func (s RRset) Contains(d string) bool {
	one, err := RRset{Name: s.Name, Type: s.Type, Data: []string{d}}.RRs()
	all, errAll := s.RRs()
	return err == nil && errAll == nil && sameRecords(one, all)
}

// Lines returns the records as zone file lines.
func (s RRset) Lines() []string {
	out := make([]string, len(s.Data))
	for i, d := range s.Data {
		out[i] = fmt.Sprintf("%s %d IN %s %s", s.Name, s.TTL, s.Type, d)
	}
	return out
}

// String is the RRset as zone file lines, or "NAME TYPE (absent)".
func (s RRset) String() string {
	if !s.Exists() {
		return s.Name + " " + s.Type + " (absent)"
	}
	return strings.Join(s.Lines(), "\n")
}

// Change replaces the RRset Old by New: the same name and type, either
// side possibly absent.
type Change struct {
	Old RRset `json:"old"`
	New RRset `json:"new"`
}

// Name returns the owner name of the change.
func (c Change) Name() string { return c.Old.Name }

// Type returns the type mnemonic of the change.
func (c Change) Type() string { return c.Old.Type }

// Reverse returns the change that undoes c.
func (c Change) Reverse() Change { return Change{Old: c.New, New: c.Old} }

// Noop reports whether the change leaves the records and TTL as they are.
func (c Change) Noop() bool {
	return c.Old.Equal(c.New) && (!c.Old.Exists() || c.Old.TTL == c.New.TTL)
}
