package update_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/services/dnsctl/bindkey"
	"github.com/mailferry/mailferry/services/dnsctl/records"
	"github.com/mailferry/mailferry/services/dnsctl/testenv/bindtest"
	"github.com/mailferry/mailferry/services/dnsctl/update"
)

const zoneText = `$TTL 3600
@ SOA ns1.hosting.test. hostmaster.hosting.test. 1 3600 600 86400 300
@ NS ns1.hosting.test.
@ MX 10 mail
mail A 192.0.2.10
@ TXT "v=spf1 ip4:192.0.2.10 -all"
@ TXT "site-verification=1"
`

// switchMX replaces the MX of a.test. from its zone file value.
var switchMX = records.Change{
	Old: records.RRset{Name: "a.test.", Type: "MX", TTL: 3600, Data: []string{"10 mail.a.test."}},
	New: records.RRset{Name: "a.test.", Type: "MX", TTL: 3600, Data: []string{"10 mx1.new.test."}},
}

var switchSPF = records.Change{
	Old: records.RRset{Name: "a.test.", Type: "TXT", TTL: 3600, Data: []string{`"v=spf1 ip4:192.0.2.10 -all"`, `"site-verification=1"`}},
	New: records.RRset{Name: "a.test.", Type: "TXT", TTL: 3600, Data: []string{`"v=spf1 ip4:198.51.100.25 -all"`, `"site-verification=1"`}},
}

func randomSecret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func send(t *testing.T, server string, key bindkey.Key, changes ...records.Change) error {
	t.Helper()
	m, err := update.Message("a.test.", changes)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return (&update.Sender{Server: server, Key: key}).Send(ctx, m)
}

func TestRefusedUpdatesSayWhyAndChangeNothing(t *testing.T) {
	c := bindtest.StartT(t, bindtest.Options{
		Zones:       []bindtest.Zone{{Name: "a.test.", Text: zoneText}},
		UpdateTypes: []string{"MX", "A", "AAAA", "CNAME", "SRV"}, // no TXT
	})
	ctx := context.Background()
	before, err := c.AXFR(ctx, c.Primary, "a.test.")
	if err != nil {
		t.Fatal(err)
	}
	wrongSecret, err := bindkey.New(c.Key.Name, "hmac-sha256", randomSecret(t))
	if err != nil {
		t.Fatal(err)
	}
	unknownKey, err := bindkey.New("nobody-key", "hmac-sha256", randomSecret(t))
	if err != nil {
		t.Fatal(err)
	}
	stale := switchMX
	stale.Old.Data = []string{"10 somewhere.else.test."}
	tests := []struct {
		name    string
		server  string
		key     bindkey.Key
		changes []records.Change
		kind    error
		says    string
	}{
		{"the key's secret is wrong", c.Primary.Addr, wrongSecret, []records.Change{switchMX}, update.ErrTSIG, "BADSIG"},
		{"the key is unknown", c.Primary.Addr, unknownKey, []records.Change{switchMX}, update.ErrTSIG, "BADKEY"},
		{"the policy does not grant TXT", c.Primary.Addr, c.Key, []records.Change{switchMX, switchSPF}, update.ErrRefused, "update-policy"},
		{"the prerequisite no longer holds", c.Primary.Addr, c.Key, []records.Change{stale}, update.ErrPrerequisite, "NXRRSET"},
		{"the server is the secondary", c.Secondary.Addr, c.Key, []records.Change{switchMX}, update.ErrRefused, "not the primary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := send(t, tt.server, tt.key, tt.changes...)
			if !errors.Is(err, tt.kind) || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("err = %v, want %v saying %q", err, tt.kind, tt.says)
			}
			if strings.Contains(err.Error(), tt.key.Secret()) {
				t.Errorf("error leaks the secret")
			}
		})
	}
	after, err := c.AXFR(ctx, c.Primary, "a.test.")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(before, after) {
		t.Errorf("a refused update changed the zone:\n%q\n%q", before, after)
	}
}

func TestAnUpdateWithHoldingPrerequisitesReplacesOnlyItsRecords(t *testing.T) {
	c := bindtest.StartT(t, bindtest.Options{Zones: []bindtest.Zone{{Name: "a.test.", Text: zoneText}}, NoSecondary: true})
	if err := send(t, c.Primary.Addr, c.Key, switchMX, switchSPF); err != nil {
		t.Fatal(err)
	}
	got, err := c.AXFR(context.Background(), c.Primary, "a.test.")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(got, "\n")
	for _, want := range []string{"MX\t10 mx1.new.test.", `TXT	"v=spf1 ip4:198.51.100.25 -all"`, `TXT	"site-verification=1"`, "A\t192.0.2.10"} {
		if !strings.Contains(text, want) {
			t.Errorf("zone lacks %q:\n%s", want, text)
		}
	}
	for _, gone := range []string{"10 mail.a.test.", "ip4:192.0.2.10"} {
		if strings.Contains(text, gone) {
			t.Errorf("zone still has %q", gone)
		}
	}
	if err := send(t, c.Primary.Addr, c.Key, switchMX); !errors.Is(err, update.ErrPrerequisite) {
		t.Errorf("the same update again: err = %v, want a failed prerequisite", err)
	}
}

func TestMessageNeverTouchesNSOrSOA(t *testing.T) {
	for _, typ := range []string{"NS", "SOA"} {
		_, err := update.Message("a.test.", []records.Change{{
			Old: records.RRset{Name: "a.test.", Type: typ},
			New: records.RRset{Name: "a.test.", Type: typ, TTL: 60, Data: []string{"ns.evil.test."}},
		}})
		if !errors.Is(err, update.ErrType) {
			t.Errorf("%s change: err = %v, want ErrType", typ, err)
		}
	}
	_, err := update.Message("a.test.", []records.Change{{
		Old: records.RRset{Name: "b.test.", Type: "MX"},
		New: records.RRset{Name: "b.test.", Type: "MX", TTL: 60, Data: []string{"10 mx.test."}},
	}})
	if err == nil || !strings.Contains(err.Error(), "outside the zone") {
		t.Errorf("change outside the zone: err = %v", err)
	}
}
