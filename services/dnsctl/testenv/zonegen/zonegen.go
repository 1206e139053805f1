// Package zonegen writes customer zones of every kind dnsctl meets on a
// hosting company's authoritative servers, for tests and benchmarks: mail
// at the legacy provider (found by address, by name, through a CNAME),
// mail elsewhere, mail hosts that are CNAMEs to a third party, domains
// already switched, domains without mail; all with the site verifications,
// DKIM keys and web records real zones carry.
package zonegen

import (
	"fmt"
	"strings"

	"github.com/mailferry/mailferry/services/dnsctl/testenv/bindtest"
)

// The test world's providers. The addresses are documentation ranges.
const (
	// LegacyIP is the legacy mail server's address.
	LegacyIP = "192.0.2.10"
	// LegacyHost resolves to LegacyIP in LegacyZone: legacy by address.
	LegacyHost = "mx.legacy.test."
	// OldNameHost is known by name only (legacy_mail_hosts "*.oldmail.test.").
	OldNameHost = "mx.oldmail.test."
	// OldNamePattern is the legacy_mail_hosts entry that matches OldNameHost.
	OldNamePattern = "*.oldmail.test."
	// NewIP, NewMX1 and NewMX2 are the new provider's.
	NewIP  = "198.51.100.25"
	NewMX1 = "mx1.newmail.test."
	NewMX2 = "mx2.newmail.test."
	// SPFOld and SPFNew are the SPF mechanisms of the two providers.
	SPFOld = "ip4:192.0.2.10"
	SPFNew = "ip4:198.51.100.25"
	// HostingZone serves the NS hosts ns1 and ns2, both 127.0.0.1.
	HostingZone = "hosting.test."
)

// Kind is a kind of customer zone.
type Kind string

// Kinds of zones and the plan dnsctl must make for each.
const (
	LegacyByAddress Kind = "legacy_addr"       // MX mail.D, mail.D A LegacyIP: switch
	LegacyByName    Kind = "legacy_name"       // MX OldNameHost, mail.D A LegacyIP: switch
	LegacyCNAME     Kind = "legacy_cname"      // MX LegacyHost, mail.D CNAME LegacyHost: switch
	External        Kind = "external"          // MX at a third party: skip
	CNAMEThirdParty Kind = "cname_third_party" // mail.D CNAME to a third party: skip
	AlreadySwitched Kind = "already_switched"  // at the new provider: skip
	NoMail          Kind = "no_mx"             // no MX: skip
)

// Switches reports whether dnsctl must switch zones of kind k.
func (k Kind) Switches() bool {
	return k == LegacyByAddress || k == LegacyByName || k == LegacyCNAME
}

// Kinds lists every kind.
var Kinds = []Kind{LegacyByAddress, LegacyByName, LegacyCNAME, External, CNAMEThirdParty, AlreadySwitched, NoMail}

// Zone returns zone name of kind k; i varies the verification tokens.
func Zone(name string, k Kind, i int) bindtest.Zone {
	var b strings.Builder
	fmt.Fprintf(&b, "$TTL 3600\n@ SOA ns1.%s hostmaster.%s 2024010101 3600 600 86400 300\n", HostingZone, HostingZone)
	fmt.Fprintf(&b, "@ NS ns1.%s\n@ NS ns2.%s\n@ A 203.0.113.80\nwww CNAME @\n", HostingZone, HostingZone)
	fmt.Fprintf(&b, "@ TXT \"google-site-verification=tok%06d\"\n@ TXT \"MS=ms%06d\"\n", i, i)
	fmt.Fprintf(&b, "sel1._domainkey TXT \"v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GN%06d\"\n", i)
	b.WriteString(mailRecords(k, i))
	return bindtest.Zone{Name: name, Text: b.String()}
}

func mailRecords(k Kind, i int) string {
	switch k {
	case LegacyByAddress:
		spf := fmt.Sprintf("\"v=spf1 a mx %s ~all\"", SPFOld)
		if i%5 == 0 {
			// Longer than one character-string: split in two.
			spf = fmt.Sprintf("\"v=spf1 a mx %s include:_spf.partner%s.test \" \"%s ~all\"", SPFOld, strings.Repeat("x", 190), "ip4:203.0.113.0/24")
		}
		return fmt.Sprintf("@ MX 10 mail\nmail A %s\n@ TXT %s\n", LegacyIP, spf)
	case LegacyByName:
		return fmt.Sprintf("@ 7200 MX 10 %s\n@ 7200 MX 20 mail\nmail A %s\n@ TXT \"v=spf1 mx -all\"\n", OldNameHost, LegacyIP)
	case LegacyCNAME:
		return fmt.Sprintf("@ MX 10 %s\nmail CNAME %s\n@ TXT \"v=spf1 %s -all\"\n", LegacyHost, LegacyHost, SPFOld)
	case External:
		return "@ MX 1 aspmx.l.google.test.\n@ MX 5 alt1.aspmx.l.google.test.\n@ TXT \"v=spf1 include:_spf.google.test ~all\"\nmail CNAME ghs.google.test.\n"
	case CNAMEThirdParty:
		return fmt.Sprintf("@ MX 10 mail\nmail CNAME mail.thirdparty.test.\n@ TXT \"v=spf1 %s include:thirdparty.test -all\"\n", SPFOld)
	case AlreadySwitched:
		return fmt.Sprintf("@ MX 10 %s\n@ MX 20 %s\nmail A %s\n@ TXT \"v=spf1 a mx %s ~all\"\n", NewMX1, NewMX2, NewIP, SPFNew)
	}
	return "@ TXT \"v=spf1 -all\"\n"
}

// Support returns the zones every world needs besides the customers':
// the legacy provider's (so its host resolves to LegacyIP) and the
// hosting company's (so NS hosts resolve).
func Support() []bindtest.Zone {
	soa := "$TTL 3600\n@ SOA ns1.hosting.test. hostmaster.hosting.test. 1 3600 600 86400 300\n@ NS ns1.hosting.test.\n"
	return []bindtest.Zone{
		{Name: "legacy.test.", Text: soa + "mx A " + LegacyIP + "\n"},
		{Name: HostingZone, Text: soa + "ns1 A 127.0.0.1\nns2 A 127.0.0.1\n"},
	}
}

// Mix returns n customer zones named c<i>.<suffix>, cycling through
// weights: of every 20 zones, 12 switch and 8 are skipped for a reason.
func Mix(n int, suffix string) ([]bindtest.Zone, map[string]Kind) {
	cycle := []Kind{
		LegacyByAddress, LegacyByAddress, LegacyByAddress, LegacyByAddress, LegacyByAddress, LegacyByAddress,
		LegacyByName, LegacyByName, LegacyByName, LegacyCNAME, LegacyCNAME, LegacyCNAME,
		External, External, External, CNAMEThirdParty, CNAMEThirdParty, AlreadySwitched, AlreadySwitched, NoMail,
	}
	zones := make([]bindtest.Zone, n)
	kinds := make(map[string]Kind, n)
	for i := range n {
		name := fmt.Sprintf("c%d.%s", i, strings.TrimSuffix(suffix, ".")) + "."
		k := cycle[i%len(cycle)]
		zones[i] = Zone(name, k, i)
		kinds[name] = k
	}
	return zones, kinds
}
