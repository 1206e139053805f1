package plan

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/mailferry/mailferry/services/dnsctl/dnsconfig"
	"github.com/mailferry/mailferry/services/dnsctl/records"
)

func policy(t *testing.T, edit func(*dnsconfig.DNS)) Policy {
	t.Helper()
	c := dnsconfig.DNS{
		LegacyMailHosts: []string{"192.0.2.0/28", "*.oldmail.test."},
		NewMX:           []string{"10 mx1.new.test.", "20 mx2.new.test."},
		MailHostA:       "198.51.100.25",
		SPF:             dnsconfig.SPF{Replace: "ip4:192.0.2.10", With: "ip4:198.51.100.25"},
	}
	if edit != nil {
		edit(&c)
	}
	p, err := FromConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// world builds a snapshot of example.test. from zone-file-like lines
// ("NAME TTL TYPE DATA", names relative to the domain or absolute) and
// the addresses out-of-zone hosts resolve to.
func world(t *testing.T, lines []string, foreign map[string]string) *records.Snapshot {
	t.Helper()
	const domain = "example.test."
	var rrs []dns.RR
	for _, l := range lines {
		rr, err := dns.NewRR("$ORIGIN " + domain + "\n" + l)
		if err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		rrs = append(rrs, rr)
	}
	s := &records.Snapshot{Domain: domain, Serial: 7, Hosts: map[string]*records.Host{}}
	s.MX, s.TXT, s.NS = records.FromRRs(domain, dns.TypeMX, rrs), records.FromRRs(domain, dns.TypeTXT, rrs), records.FromRRs(domain, dns.TypeNS, rrs)
	names := []string{"mail." + domain}
	for _, d := range s.MX.Data {
		names = append(names, dns.CanonicalName(strings.Fields(d)[1]))
	}
	for _, n := range names {
		s.Hosts[n] = host(n, domain, rrs, foreign)
	}
	return s
}

// host resolves a name as authdns.Reader does, within the given records.
func host(name, domain string, rrs []dns.RR, foreign map[string]string) *records.Host {
	h := &records.Host{Name: name, InZone: records.InZone(name, domain), Target: name}
	h.CNAME, h.A, h.AAAA = records.FromRRs(name, dns.TypeCNAME, rrs), records.FromRRs(name, dns.TypeA, rrs), records.FromRRs(name, dns.TypeAAAA, rrs)
	target := name
	if h.CNAME.Exists() {
		target = dns.CanonicalName(h.CNAME.Data[0])
		h.Target = target
	}
	if records.InZone(target, domain) {
		h.Resolved = true
		for _, d := range records.FromRRs(target, dns.TypeA, rrs).Data {
			h.Addrs = append(h.Addrs, netip.MustParseAddr(d))
		}
		return h
	}
	if a, ok := foreign[target]; ok {
		h.Resolved, h.Addrs = true, []netip.Addr{netip.MustParseAddr(a)}
	}
	return h
}

func TestDecideSelectsOnlyDomainsWhoseMailIsAtTheLegacyProvider(t *testing.T) {
	foreign := map[string]string{"mx.legacy.test.": "192.0.2.10", "ghs.google.test.": "203.0.113.9", "aspmx.google.test.": "203.0.113.8"}
	tests := []struct {
		name     string
		lines    []string
		wantCode string // "" means switch
		reason   string
	}{
		{"MX host resolves to a legacy address", []string{"@ 3600 MX 10 mail", "mail 3600 A 192.0.2.10"}, "", ""},
		{"MX host matches a legacy name pattern", []string{"@ 3600 MX 10 mx.oldmail.test."}, "", ""},
		{"out-of-zone MX host resolves to a legacy address", []string{"@ 3600 MX 10 mx.legacy.test."}, "", ""},
		{"MX at a third party", []string{"@ 3600 MX 1 aspmx.google.test."}, CodeExternal, "mail is hosted elsewhere"},
		{"null MX (RFC 7505)", []string{"@ 3600 MX 0 ."}, CodeExternal, "null MX"},
		{"no MX", []string{"@ 3600 TXT \"v=spf1 -all\""}, CodeNoMX, "no MX"},
		{"MX host is a CNAME to a third party", []string{"@ 3600 MX 10 mail", "mail 3600 CNAME ghs.google.test."}, CodeCNAMEThirdParty, "CNAME to ghs.google.test."},
		{"mail host is a CNAME to a third party", []string{"@ 3600 MX 10 mx.legacy.test.", "mail 3600 CNAME ghs.google.test."}, CodeCNAMEThirdParty, "mail host"},
		{"MX mixes legacy and third party", []string{"@ 3600 MX 10 mx.legacy.test.", "@ 3600 MX 20 aspmx.google.test."}, CodeMixed, "mixes"},
		{"MX host has legacy and other addresses", []string{"@ 3600 MX 10 mail", "mail 3600 A 192.0.2.10", "mail 3600 A 203.0.113.1"}, CodeMixed, "legacy and other"},
		{"already at the new provider", []string{"@ 3600 MX 10 mx1.new.test.", "@ 3600 MX 20 mx2.new.test.", "mail 3600 A 198.51.100.25"}, CodeAlreadySwitched, "already"},
		{"MX moved by hand but mail host still legacy", []string{"@ 3600 MX 10 mx1.new.test.", "mail 3600 A 192.0.2.10"}, CodeMixed, "already points at the new provider but"},
		{"legacy MX but mail host elsewhere", []string{"@ 3600 MX 10 mx.legacy.test.", "mail 3600 A 203.0.113.50"}, CodeMixed, "mail host"},
	}
	p := policy(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(world(t, tt.lines, foreign))
			if tt.wantCode == "" {
				if d.Action != Switch {
					t.Fatalf("got %s, want switch", d)
				}
				return
			}
			if d.Action != Skip || d.Code != tt.wantCode || !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("got %s, want skip (%s) mentioning %q", d, tt.wantCode, tt.reason)
			}
		})
	}
}

// changeOf returns the change of name and type, failing when absent.
func changeOf(t *testing.T, d Domain, name, typ string) records.Change {
	t.Helper()
	for _, c := range d.Changes {
		if c.Name() == name && c.Type() == typ {
			return c
		}
	}
	t.Fatalf("no %s %s change in %+v", name, typ, d.Changes)
	return records.Change{}
}

func TestDecideReplacesMXMailHostAndOnlyTheSPFMechanism(t *testing.T) {
	s := world(t, []string{
		"@ 600 MX 10 mail", "mail 600 A 192.0.2.10", "@ 900 A 192.0.2.10",
		"@ 300 TXT \"v=spf1 a mx ip4:192.0.2.10 ~all\"", "@ 300 TXT \"google-site-verification=abc\"",
	}, nil)
	d := policy(t, nil).Decide(s)
	if d.Action != Switch {
		t.Fatalf("got %s", d)
	}
	mx := changeOf(t, d, "example.test.", "MX")
	if want := []string{"10 mx1.new.test.", "20 mx2.new.test."}; !slices.Equal(mx.New.Data, want) || mx.New.TTL != 600 {
		t.Errorf("new MX %v ttl %d, want %v ttl 600 (the old TTL)", mx.New.Data, mx.New.TTL, want)
	}
	if a := changeOf(t, d, "mail.example.test.", "A"); !slices.Equal(a.New.Data, []string{"198.51.100.25"}) {
		t.Errorf("mail A -> %v", a.New.Data)
	}
	txt := changeOf(t, d, "example.test.", "TXT")
	want := []string{`"v=spf1 a mx ip4:198.51.100.25 ~all"`, `"google-site-verification=abc"`}
	if !slices.Equal(txt.New.Data, want) {
		t.Errorf("TXT -> %q, want %q", txt.New.Data, want)
	}
	for _, c := range d.Changes {
		if c.Name() == "example.test." && c.Type() == "A" {
			t.Errorf("the apex A (the web site) is changed: %+v", c)
		}
		if c.Type() == "NS" || c.Type() == "SOA" {
			t.Errorf("plan touches %s", c.Type())
		}
	}
	if d.OldTTL != 600 {
		t.Errorf("old TTL %d, want 600", d.OldTTL)
	}
}

func TestDecideTurnsALegacyCNAMEIntoTheConfiguredTarget(t *testing.T) {
	lines := []string{"@ 3600 MX 10 mx.legacy.test.", "mail 1800 CNAME mx.legacy.test."}
	foreign := map[string]string{"mx.legacy.test.": "192.0.2.10"}
	t.Run("an A record without mail_host_cname", func(t *testing.T) {
		d := policy(t, nil).Decide(world(t, lines, foreign))
		cname, a := changeOf(t, d, "mail.example.test.", "CNAME"), changeOf(t, d, "mail.example.test.", "A")
		if cname.New.Exists() || !slices.Equal(a.New.Data, []string{"198.51.100.25"}) || a.New.TTL != 1800 {
			t.Errorf("CNAME -> %v, A -> %v ttl %d", cname.New.Data, a.New.Data, a.New.TTL)
		}
		if d.Changes[0].New.Exists() {
			t.Errorf("first change %+v adds records: the CNAME must go before the A comes", d.Changes[0])
		}
	})
	t.Run("a CNAME with mail_host_cname", func(t *testing.T) {
		p := policy(t, func(c *dnsconfig.DNS) { c.MailHostCNAME = "imap.new.test." })
		cname := changeOf(t, p.Decide(world(t, lines, foreign)), "mail.example.test.", "CNAME")
		if !slices.Equal(cname.New.Data, []string{"imap.new.test."}) {
			t.Errorf("CNAME -> %v", cname.New.Data)
		}
	})
}

func TestDecideAddsRFC6186ServiceRecords(t *testing.T) {
	p := policy(t, func(c *dnsconfig.DNS) {
		c.SRV = []dnsconfig.SRV{{Service: "_imaps._tcp", Port: 993, Weight: 1, Target: "imap.new.test."}}
	})
	d := p.Decide(world(t, []string{"@ 3600 MX 10 mx.oldmail.test."}, nil))
	srv := changeOf(t, d, "_imaps._tcp.example.test.", "SRV")
	if srv.Old.Exists() || !slices.Equal(srv.New.Data, []string{"0 1 993 imap.new.test."}) {
		t.Errorf("SRV change %+v", srv)
	}
}

func TestRewriteSPF(t *testing.T) {
	tests := []struct {
		spf, want string
		found     bool
	}{
		{"v=spf1 ip4:192.0.2.10 -all", "v=spf1 ip4:198.51.100.25 -all", true},
		{"v=spf1 a mx ~ip4:192.0.2.10 include:x.test ?all", "v=spf1 a mx ~ip4:198.51.100.25 include:x.test ?all", true},
		{"v=spf1 IP4:192.0.2.10 -all", "v=spf1 ip4:198.51.100.25 -all", true},
		{"v=spf1 ip4:192.0.2.10 ip4:198.51.100.25 -all", "v=spf1 ip4:198.51.100.25 -all", true},
		{"v=spf1 ip4:192.0.2.100 -all", "v=spf1 ip4:192.0.2.100 -all", false},
		{"v=spf1 include:_spf.google.test ~all", "v=spf1 include:_spf.google.test ~all", false},
		{"v=spf1  mx   ip4:192.0.2.10  -all", "v=spf1  mx   ip4:198.51.100.25  -all", true},
		{"v=spf1  ip4:192.0.2.10 ip4:198.51.100.25  -all", "v=spf1 ip4:198.51.100.25  -all", true},
	}
	for _, tt := range tests {
		got, found := RewriteSPF(tt.spf, "ip4:192.0.2.10", "ip4:198.51.100.25")
		if got != tt.want || found != tt.found {
			t.Errorf("RewriteSPF(%q) = %q, %t; want %q, %t", tt.spf, got, found, tt.want, tt.found)
		}
	}
}

func TestSPFKeepsItsStringsAndIsSplitAnewOnlyPast255Bytes(t *testing.T) {
	long := "v=spf1 ip4:192.0.2.10 include:" + strings.Repeat("a", 160) + ".test "
	tests := []struct {
		name    string
		strings []string
		want    []string
	}{
		{"two strings keep their boundary", []string{long, "ip4:203.0.113.0/24 -all"},
			[]string{strings.Replace(long, "192.0.2.10", "198.51.100.25", 1), "ip4:203.0.113.0/24 -all"}},
		{"a string outgrowing 255 bytes is split there", []string{"v=spf1 ip4:192.0.2.10 " + strings.Repeat("b", 232)},
			[]string{"v=spf1 ip4:198.51.100.25 " + strings.Repeat("b", 230), "bb"}},
		{"a mechanism across the boundary", []string{"v=spf1 ip4:192.0", ".2.10 -all"},
			[]string{"v=spf1 ip4:198.51.100.25", " -all"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rr := &dns.TXT{Hdr: dns.RR_Header{Name: "example.test.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: tt.strings}
			txt := records.RRset{Name: "example.test.", Type: "TXT", TTL: 60, Data: []string{records.Rdata(rr)}}
			c, err := policy(t, nil).spfChange(txt)
			if err != nil || c == nil {
				t.Fatalf("spfChange: %v, %v", c, err)
			}
			rrs, err := c.New.RRs()
			if err != nil {
				t.Fatal(err)
			}
			if got := rrs[0].(*dns.TXT).Txt; !slices.Equal(got, tt.want) {
				t.Errorf("strings %q, want %q", got, tt.want)
			}
		})
	}
}
