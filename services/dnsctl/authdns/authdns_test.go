package authdns_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailferry/mailferry/services/dnsctl/authdns"
	"github.com/mailferry/mailferry/services/dnsctl/testenv/bindtest"
)

const customer = `$TTL 600
@ SOA ns1.hosting.test. hostmaster.hosting.test. 42 3600 600 86400 300
@ NS ns1.hosting.test.
@ MX 10 mail
@ MX 20 mx.provider.test.
@ MX 30 mx.unknown.test.
mail CNAME relay
relay A 192.0.2.10
relay AAAA 2001:db8::10
@ TXT "v=spf1 mx -all"
_imaps._tcp SRV 0 1 993 mail.customer.test.
`

const provider = `$TTL 600
@ SOA ns1.hosting.test. hostmaster.hosting.test. 1 3600 600 86400 300
@ NS ns1.hosting.test.
mx A 192.0.2.20
`

func TestSnapshotReadsTheMailRecordsAndFollowsCNAMEs(t *testing.T) {
	c := bindtest.StartT(t, bindtest.Options{NoSecondary: true, Zones: []bindtest.Zone{
		{Name: "customer.test.", Text: customer}, {Name: "provider.test.", Text: provider},
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := &authdns.Reader{Client: &authdns.Client{}, Server: c.Primary.Addr, HostLabels: []string{"mail"}, SRVNames: []string{"_imaps._tcp"}}
	s, err := r.Snapshot(ctx, "Customer.Test")
	if err != nil {
		t.Fatal(err)
	}
	if s.Domain != "customer.test." || s.Serial != 42 || len(s.MX.Data) != 3 || len(s.TXT.Data) != 1 || len(s.SRV) != 1 || !s.SRV[0].Exists() {
		t.Errorf("snapshot %+v", s)
	}
	mail := s.Hosts["mail.customer.test."]
	wantAddrs := []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")}
	if mail == nil || !mail.InZone || !mail.CNAME.Exists() || mail.Target != "relay.customer.test." || !slices.Equal(mail.Addrs, wantAddrs) || mail.A.Exists() {
		t.Errorf("mail host %+v, want a CNAME to relay resolving to %v", mail, wantAddrs)
	}
	if p := s.Hosts["mx.provider.test."]; p == nil || p.InZone || !p.Resolved || !slices.Equal(p.Addrs, []netip.Addr{netip.MustParseAddr("192.0.2.20")}) {
		t.Errorf("provider host %+v, want 192.0.2.20 read from its zone on the same server", p)
	}
	if u := s.Hosts["mx.unknown.test."]; u == nil || u.Resolved || len(u.Addrs) != 0 {
		t.Errorf("unknown host %+v, want unresolved: the server does not serve it", u)
	}
	if _, err := r.Snapshot(ctx, "elsewhere.test."); !errors.Is(err, authdns.ErrNotAuthoritative) {
		t.Errorf("a zone the server does not serve: err = %v, want ErrNotAuthoritative", err)
	}
	if _, err := r.Snapshot(ctx, "relay.customer.test."); !errors.Is(err, authdns.ErrNotAuthoritative) {
		t.Errorf("a name below the apex: err = %v, want ErrNotAuthoritative (no SOA)", err)
	}
	if _, err := (&authdns.Client{}).RRset(ctx, c.Primary.Addr, "customer.test.", dns.TypeMX); err != nil {
		t.Errorf("RRset: %v", err)
	}
}

func TestSerialAtLeastFollowsRFC1982(t *testing.T) {
	tests := []struct {
		a, b uint32
		want bool
	}{
		{5, 5, true},
		{6, 5, true},
		{5, 6, false},
		{1, 4294967295, true}, // wrapped around
		{4294967295, 1, false},
		{2147483647, 0, true},
	}
	for _, tt := range tests {
		if got := authdns.SerialAtLeast(tt.a, tt.b); got != tt.want {
			t.Errorf("SerialAtLeast(%d, %d) = %t, want %t", tt.a, tt.b, got, tt.want)
		}
	}
}
