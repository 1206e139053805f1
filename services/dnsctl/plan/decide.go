package plan

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/mailferry/mailferry/services/dnsctl/records"
)

// Action is what a plan does with a domain.
type Action string

// Actions.
const (
	// Switch changes the domain's records to the new provider.
	Switch Action = "switch"
	// Skip leaves the domain alone; Code and Reason say why.
	Skip Action = "skip"
)

// Codes of skipped domains.
const (
	CodeNoMX            = "no_mx"             // the domain receives no mail
	CodeExternal        = "external"          // its mail is hosted elsewhere
	CodeAlreadySwitched = "already_switched"  // it points at the new provider
	CodeCNAMEThirdParty = "cname_third_party" // a mail host is a CNAME to a third party
	CodeMixed           = "mixed"             // legacy and other hosts together: a human decides
	CodeNotServed       = "not_served"        // the server is not authoritative for it
	CodeReadFailed      = "read_failed"       // its records could not be read
)

// Domain is the plan for one domain.
type Domain struct {
	Domain string `json:"domain"`
	Action Action `json:"action"`
	Code   string `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Changes are the RRsets to replace, in the order they are sent.
	Changes []records.Change `json:"changes,omitempty"`
	// Serial is the zone's SOA serial when the plan was made.
	Serial uint32 `json:"serial"`
	// OldTTL is the longest TTL of the replaced RRsets that route mail
	// (MX, A, AAAA, CNAME): how long resolvers may still send mail to the
	// legacy provider after the switch.
	OldTTL uint32 `json:"old_ttl"`
	// NS are the zone's name servers, for verification.
	NS []string `json:"ns,omitempty"`
	// PlannedAt is when the records were read.
	PlannedAt time.Time `json:"planned_at"`
}

// Skipped returns a skipped domain plan.
func Skipped(domain, code, reason string) Domain {
	return Domain{Domain: dns.CanonicalName(domain), Action: Skip, Code: code, Reason: reason, PlannedAt: time.Now().UTC()}
}

// Decide plans domain s under policy p.
func (p Policy) Decide(s *records.Snapshot) Domain {
	d := Domain{Domain: s.Domain, Action: Skip, Serial: s.Serial, PlannedAt: time.Now().UTC()}
	for _, ns := range s.NS.Data {
		d.NS = append(d.NS, dns.CanonicalName(ns))
	}
	d.Code, d.Reason = p.eligible(s)
	if d.Code != "" {
		return d
	}
	changes, err := p.changes(s)
	if err != nil {
		d.Code, d.Reason = CodeReadFailed, err.Error()
		return d
	}
	d.Action, d.Changes = Switch, changes
	d.OldTTL = routingTTL(changes)
	return d
}

// eligible returns a skip code and reason, or "" when the domain's mail
// is the legacy provider's.
func (p Policy) eligible(s *records.Snapshot) (string, string) {
	mx, err := s.MX.RRs()
	if err != nil {
		return CodeReadFailed, err.Error()
	}
	if len(mx) == 0 {
		return CodeNoMX, "no MX records"
	}
	var legacy, fresh, other []string
	for _, rr := range mx {
		host := dns.CanonicalName(rr.(*dns.MX).Mx)
		h := s.Hosts[host]
		if host == "." || h == nil {
			return CodeExternal, "null MX: the domain accepts no mail"
		}
		switch o, why := p.classify(h); o {
		case ownerLegacy:
			legacy = append(legacy, host)
		case ownerNew:
			fresh = append(fresh, host)
		case ownerCNAMEOther:
			return CodeCNAMEThirdParty, "MX host " + why
		case ownerMixed:
			return CodeMixed, "MX host " + why
		default:
			other = append(other, why)
		}
	}
	switch {
	case len(other) > 0 && len(legacy)+len(fresh) == 0:
		return CodeExternal, "mail is hosted elsewhere: MX " + other[0]
	case len(other) > 0:
		return CodeMixed, "MX mixes the legacy provider with other hosts: " + other[0]
	}
	if code, why := p.checkHosts(s); code != "" {
		return code, why
	}
	switch {
	case len(fresh) == len(mx):
		return CodeAlreadySwitched, "MX already points at the new provider (" + strings.Join(fresh, ", ") + ")"
	case len(fresh) > 0:
		return CodeMixed, "MX mixes the legacy provider and the new one: a partial manual switch?"
	}
	return "", ""
}

// checkHosts refuses domains whose in-zone mail hosts point at a third
// party, or still at the legacy provider after the MX moved.
func (p Policy) checkHosts(s *records.Snapshot) (string, string) {
	allNew := p.mxAllNew(s)
	for _, h := range sortedHosts(s) {
		if !h.InZone || h.Name == s.Domain || !h.Exists() {
			continue
		}
		switch o, why := p.classify(h); o {
		case ownerCNAMEOther:
			return CodeCNAMEThirdParty, "mail host " + why
		case ownerOther, ownerMixed:
			return CodeMixed, "mail host " + why
		case ownerLegacy:
			if allNew {
				return CodeMixed, "MX already points at the new provider but mail host " + why
			}
		}
	}
	return "", ""
}

func (p Policy) mxAllNew(s *records.Snapshot) bool {
	for _, d := range s.MX.Data {
		f := strings.Fields(d)
		h := s.Hosts[dns.CanonicalName(f[len(f)-1])]
		if h == nil {
			return false
		}
		if o, _ := p.classify(h); o != ownerNew {
			return false
		}
	}
	return true
}

func sortedHosts(s *records.Snapshot) []*records.Host {
	out := make([]*records.Host, 0, len(s.Hosts))
	for _, h := range s.Hosts {
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b *records.Host) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// changes lists the RRsets to replace: removals first, since a CNAME must
// be gone before an A record can join its name.
func (p Policy) changes(s *records.Snapshot) ([]records.Change, error) {
	var out []records.Change
	out = append(out, records.Change{Old: s.MX, New: withData(s.MX, s.MX.TTL, p.NewMX)})
	for _, h := range sortedHosts(s) {
		if !h.InZone || h.Name == s.Domain || !h.Exists() {
			continue // the apex's own address is the web site's, never ours
		}
		if o, _ := p.classify(h); o == ownerLegacy {
			out = append(out, p.hostChanges(h)...)
		}
	}
	txt, err := p.spfChange(s.TXT)
	if err != nil {
		return nil, err
	}
	if txt != nil {
		out = append(out, *txt)
	}
	out = append(out, p.srvChanges(s)...)
	slices.SortStableFunc(out, func(a, b records.Change) int {
		return boolInt(a.New.Exists()) - boolInt(b.New.Exists())
	})
	return slices.DeleteFunc(out, records.Change.Noop), nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// hostChanges points a legacy mail host at the new provider, keeping it a
// CNAME when it is one and a CNAME target is configured.
func (p Policy) hostChanges(h *records.Host) []records.Change {
	ttl := max(h.CNAME.TTL, h.A.TTL, h.AAAA.TTL)
	useCNAME := p.MailHostCNAME != "" && (h.CNAME.Exists() || !p.MailHostA.IsValid())
	var cname, a, aaaa []string
	if useCNAME {
		cname = []string{p.MailHostCNAME}
	} else {
		if p.MailHostA.IsValid() {
			a = []string{p.MailHostA.String()}
		}
		if p.MailHostAAAA.IsValid() {
			aaaa = []string{p.MailHostAAAA.String()}
		}
	}
	return []records.Change{
		{Old: h.CNAME, New: withData(h.CNAME, ttl, cname)},
		{Old: h.A, New: withData(h.A, ttl, a)},
		{Old: h.AAAA, New: withData(h.AAAA, ttl, aaaa)},
	}
}

func withData(s records.RRset, ttl uint32, data []string) records.RRset {
	if len(data) == 0 {
		return records.RRset{Name: s.Name, Type: s.Type}
	}
	return records.RRset{Name: s.Name, Type: s.Type, TTL: ttl, Data: data}
}

func (p Policy) srvChanges(s *records.Snapshot) []records.Change {
	var out []records.Change
	for _, srv := range p.SRV {
		name := srv.Service + "." + s.Domain
		old := records.Empty(name, dns.TypeSRV)
		for _, have := range s.SRV {
			if have.Name == name {
				old = have
			}
		}
		ttl := old.TTL
		if !old.Exists() {
			ttl = s.MX.TTL
		}
		out = append(out, records.Change{Old: old, New: withData(old, ttl, []string{srv.Data})})
	}
	return out
}

// routingTTL is the longest TTL of the replaced records that say where
// mail goes.
func routingTTL(changes []records.Change) uint32 {
	var ttl uint32
	for _, c := range changes {
		switch c.Type() {
		case "MX", "A", "AAAA", "CNAME":
			if c.Old.Exists() {
				ttl = max(ttl, c.Old.TTL)
			}
		}
	}
	return ttl
}

// String summarises the plan in one line.
func (d Domain) String() string {
	if d.Action == Skip {
		return fmt.Sprintf("%s skip (%s): %s", d.Domain, d.Code, d.Reason)
	}
	return fmt.Sprintf("%s switch: %d RRsets", d.Domain, len(d.Changes))
}
