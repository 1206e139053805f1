package records

import (
	"net/netip"
	"strings"
)

// Snapshot is what the authoritative server serves about one domain's
// mail: the apex records that say where mail goes and the mail hosts they
// name.
type Snapshot struct {
	// Domain is the zone apex, lower-case and fully qualified.
	Domain string `json:"domain"`
	// Server is the host:port the snapshot was read from.
	Server string `json:"server"`
	SOA    RRset  `json:"soa"`
	Serial uint32 `json:"serial"`
	NS     RRset  `json:"ns"`
	MX     RRset  `json:"mx"`
	// TXT is the whole apex TXT RRset, SPF and everything else.
	TXT RRset `json:"txt"`
	// SRV holds the RRsets of the configured SRV names.
	SRV []RRset `json:"srv,omitempty"`
	// Hosts are the MX hosts and the configured mail host names, by name.
	Hosts map[string]*Host `json:"hosts"`
}

// Host is one mail host as the authoritative server resolves it.
type Host struct {
	// Name is the host, lower-case and fully qualified.
	Name string `json:"name"`
	// InZone reports whether the host is at or below the domain, so its
	// own records are the domain's to change.
	InZone bool `json:"in_zone"`
	// CNAME, A and AAAA are the RRsets owned by Name (in-zone hosts only).
	CNAME RRset `json:"cname"`
	A     RRset `json:"a"`
	AAAA  RRset `json:"aaaa"`
	// Target is the end of the CNAME chain, or Name without one.
	Target string `json:"target"`
	// Addrs are the addresses Target resolves to on the server.
	Addrs []netip.Addr `json:"addrs,omitempty"`
	// Resolved reports whether the server answered for Target
	// authoritatively; an out-of-zone host the server does not serve is
	// unresolved and known by name only.
	Resolved bool `json:"resolved"`
}

// Exists reports whether the host has any record on the server.
func (h *Host) Exists() bool {
	return h.CNAME.Exists() || h.A.Exists() || h.AAAA.Exists() || (!h.InZone && h.Resolved && len(h.Addrs) > 0)
}

// InZone reports whether name is domain or below it.
func InZone(name, domain string) bool {
	name, domain = strings.ToLower(name), strings.ToLower(domain)
	return name == domain || strings.HasSuffix(name, "."+domain)
}
