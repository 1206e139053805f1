// Package plan decides, from a snapshot of a domain's records, whether the
// domain's mail is the legacy provider's and exactly which RRsets must
// change to send it to the new provider. It does no I/O.
package plan

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/mailferry/mailferry/services/dnsctl/dnsconfig"
)

// Policy says what identifies the legacy provider and what replaces it.
type Policy struct {
	// LegacyNames are lower-case FQDNs; "*.x." matches any name below x.
	LegacyNames []string
	// LegacyPrefixes are the legacy provider's addresses.
	LegacyPrefixes []netip.Prefix
	// NewMX is the new MX set, rdata as "10 mx1.example.".
	NewMX []string
	// MailHostA, MailHostAAAA (zero: none) and MailHostCNAME ("": none)
	// are the new targets of mail hosts.
	MailHostA, MailHostAAAA netip.Addr
	MailHostCNAME           string
	// SPFReplace is replaced by SPFWith in SPF records ("": no SPF change).
	SPFReplace, SPFWith string
	// SRV are the RFC 6186 records every switched domain gets.
	SRV []SRV
}

// SRV is one service record to add below each domain.
type SRV struct {
	// Service is the owner below the domain, e.g. "_imaps._tcp".
	Service string
	// Data is the rdata, e.g. "0 1 993 imap.example.".
	Data string
}

// FromConfig builds a policy from the dns configuration section.
func FromConfig(c dnsconfig.DNS) (Policy, error) {
	p := Policy{MailHostCNAME: dns.CanonicalName(c.MailHostCNAME), SPFReplace: c.SPF.Replace, SPFWith: c.SPF.With}
	if c.MailHostCNAME == "" {
		p.MailHostCNAME = ""
	}
	for _, h := range c.LegacyMailHosts {
		if err := p.addLegacy(h); err != nil {
			return Policy{}, err
		}
	}
	for _, mx := range c.NewMX {
		pref, host, err := dnsconfig.ParseMX(mx)
		if err != nil {
			return Policy{}, fmt.Errorf("new_mx: %w", err)
		}
		p.NewMX = append(p.NewMX, fmt.Sprintf("%d %s", pref, dns.CanonicalName(host)))
	}
	var err error
	if c.MailHostA != "" {
		if p.MailHostA, err = netip.ParseAddr(c.MailHostA); err != nil {
			return Policy{}, fmt.Errorf("mail_host_a: %w", err)
		}
	}
	if c.MailHostAAAA != "" {
		if p.MailHostAAAA, err = netip.ParseAddr(c.MailHostAAAA); err != nil {
			return Policy{}, fmt.Errorf("mail_host_aaaa: %w", err)
		}
	}
	for _, s := range c.SRV {
		p.SRV = append(p.SRV, SRV{
			Service: strings.ToLower(strings.Trim(s.Service, ".")),
			Data:    fmt.Sprintf("%d %d %d %s", s.Priority, s.Weight, s.Port, dns.CanonicalName(s.Target)),
		})
	}
	return p, nil
}

func (p *Policy) addLegacy(h string) error {
	if pfx, err := netip.ParsePrefix(h); err == nil {
		p.LegacyPrefixes = append(p.LegacyPrefixes, pfx.Masked())
		return nil
	}
	if a, err := netip.ParseAddr(h); err == nil {
		p.LegacyPrefixes = append(p.LegacyPrefixes, netip.PrefixFrom(a, a.BitLen()))
		return nil
	}
	name := dns.CanonicalName(h)
	if _, ok := dns.IsDomainName(strings.TrimPrefix(name, "*.")); !ok {
		return fmt.Errorf("legacy_mail_hosts: %q is neither a name nor an address", h)
	}
	p.LegacyNames = append(p.LegacyNames, name)
	return nil
}

// legacyName reports whether name is one of the legacy provider's.
func (p Policy) legacyName(name string) bool {
	name = dns.CanonicalName(name)
	for _, l := range p.LegacyNames {
		if name == l || strings.HasPrefix(l, "*.") && strings.HasSuffix(name, l[1:]) {
			return true
		}
	}
	return false
}

func (p Policy) legacyAddr(a netip.Addr) bool {
	return slices.ContainsFunc(p.LegacyPrefixes, func(pfx netip.Prefix) bool { return pfx.Contains(a.Unmap()) })
}

// newName reports whether name is one of the new provider's hosts.
func (p Policy) newName(name string) bool {
	name = dns.CanonicalName(name)
	if p.MailHostCNAME != "" && name == p.MailHostCNAME {
		return true
	}
	return slices.ContainsFunc(p.NewMX, func(mx string) bool { return strings.HasSuffix(mx, " "+name) })
}

func (p Policy) newAddr(a netip.Addr) bool {
	a = a.Unmap()
	return p.MailHostA.IsValid() && a == p.MailHostA || p.MailHostAAAA.IsValid() && a == p.MailHostAAAA
}
