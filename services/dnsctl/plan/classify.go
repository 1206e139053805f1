package plan

import (
	"fmt"
	"net/netip"

	"github.com/mailferry/mailferry/services/dnsctl/records"
)

// owner says whose mail host a name is.
type owner int

const (
	ownerNone       owner = iota // the host has no records
	ownerLegacy                  // the legacy provider's, by name or address
	ownerNew                     // the new provider's
	ownerOther                   // someone else's
	ownerMixed                   // addresses of the legacy provider and of others
	ownerCNAMEOther              // a CNAME to someone else
)

// classify says whose host h is and why, in words for the operator.
func (p Policy) classify(h *records.Host) (owner, string) {
	switch {
	case p.legacyName(h.Name):
		return ownerLegacy, fmt.Sprintf("%s is a legacy host name", h.Name)
	case p.newName(h.Name):
		return ownerNew, fmt.Sprintf("%s is a new provider host", h.Name)
	case h.Target != h.Name:
		return p.classifyCNAME(h)
	case !h.Exists() && h.InZone:
		return ownerNone, fmt.Sprintf("%s has no address record", h.Name)
	case !h.Exists():
		return ownerNone, fmt.Sprintf("%s is no legacy host name, and its address is not served here", h.Name)
	}
	return p.classifyAddrs(h.Name, h.Addrs)
}

func (p Policy) classifyCNAME(h *records.Host) (owner, string) {
	switch {
	case p.legacyName(h.Target):
		return ownerLegacy, fmt.Sprintf("%s is a CNAME to the legacy host %s", h.Name, h.Target)
	case p.newName(h.Target):
		return ownerNew, fmt.Sprintf("%s is a CNAME to the new host %s", h.Name, h.Target)
	}
	o, why := p.classifyAddrs(h.Target, h.Addrs)
	if o == ownerLegacy || o == ownerNew {
		return o, fmt.Sprintf("%s is a CNAME to %s, and %s", h.Name, h.Target, why)
	}
	return ownerCNAMEOther, fmt.Sprintf("%s is a CNAME to %s (third party)", h.Name, h.Target)
}

func (p Policy) classifyAddrs(name string, addrs []netip.Addr) (owner, string) {
	if len(addrs) == 0 {
		return ownerOther, fmt.Sprintf("%s is not the legacy provider's (no address known here)", name)
	}
	var legacy, fresh int
	for _, a := range addrs {
		switch {
		case p.legacyAddr(a):
			legacy++
		case p.newAddr(a):
			fresh++
		}
	}
	switch {
	case legacy == len(addrs):
		return ownerLegacy, fmt.Sprintf("%s resolves to the legacy address %s", name, addrs[0])
	case fresh == len(addrs):
		return ownerNew, fmt.Sprintf("%s resolves to the new address %s", name, addrs[0])
	case legacy > 0:
		return ownerMixed, fmt.Sprintf("%s resolves to legacy and other addresses %v", name, addrs)
	}
	return ownerOther, fmt.Sprintf("%s resolves to %s, not the legacy provider", name, addrs[0])
}
