package records

import (
	"testing"

	"github.com/miekg/dns"
)

func TestRdataSurvivesTheRoundTripThroughText(t *testing.T) {
	for _, line := range []string{
		`a.test. 60 IN TXT "v=DKIM1; k=rsa; p=abc" "second string"`,
		`a.test. 60 IN TXT "quote \" and backslash \\ and \240 byte"`,
		`a.test. 60 IN MX 10 Mail.A.Test.`,
		`_imaps._tcp.a.test. 60 IN SRV 0 1 993 imap.new.test.`,
	} {
		rr, err := dns.NewRR(line)
		if err != nil {
			t.Fatal(err)
		}
		s := FromRRs(rr.Header().Name, rr.Header().Rrtype, []dns.RR{rr})
		back, err := s.RRs()
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if len(back) != 1 || !dns.IsDuplicate(back[0], rr) {
			t.Errorf("%s came back as %v", line, back)
		}
	}
}

func TestEqualComparesAsDNSDoes(t *testing.T) {
	mx := RRset{Name: "a.test.", Type: "MX", TTL: 60, Data: []string{"10 mx1.test.", "20 mx2.test."}}
	tests := []struct {
		name  string
		other RRset
		want  bool
	}{
		{"same records in another order and TTL", RRset{Name: "A.test.", Type: "MX", TTL: 300, Data: []string{"20 mx2.test.", "10 MX1.test."}}, true},
		{"one record less", RRset{Name: "a.test.", Type: "MX", TTL: 60, Data: []string{"10 mx1.test."}}, false},
		{"another preference", RRset{Name: "a.test.", Type: "MX", TTL: 60, Data: []string{"10 mx1.test.", "30 mx2.test."}}, false},
		{"absent", Empty("a.test.", dns.TypeMX), false},
	}
	for _, tt := range tests {
		if got := mx.Equal(tt.other); got != tt.want {
			t.Errorf("%s: Equal = %t, want %t", tt.name, got, tt.want)
		}
	}
	if !Empty("a.test.", dns.TypeA).Equal(Empty("a.test.", dns.TypeA)) {
		t.Error("two absent RRsets differ")
	}
}

func TestAChangeIsANoopOnlyWhenRecordsAndTTLStay(t *testing.T) {
	a := RRset{Name: "a.test.", Type: "A", TTL: 60, Data: []string{"192.0.2.1"}}
	lower := a
	lower.TTL = 30
	if !(Change{Old: a, New: a}).Noop() || (Change{Old: a, New: lower}).Noop() {
		t.Error("Noop must see TTL changes")
	}
}
