package bindtest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func zone(name string) Zone {
	return Zone{Name: name, Text: fmt.Sprintf(`$TTL 3600
@ SOA ns1.hosting.test. hostmaster.hosting.test. 1 3600 600 86400 300
@ NS ns1.hosting.test.
@ MX 10 mail
mail A 192.0.2.10
`)}
}

func TestSecondaryFollowsAnUpdateOfThePrimary(t *testing.T) {
	c := StartT(t, Options{Zones: []Zone{zone("a.test."), zone("b.test.")}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before, err := c.AXFR(ctx, c.Secondary, "b.test.")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.NSUpdate(ctx, "zone a.test.\nupdate delete mail.a.test. A\nupdate add mail.a.test. 300 A 198.51.100.25"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitSynced(ctx, c.Zones); err != nil {
		t.Fatal(err)
	}
	got, err := c.AXFR(ctx, c.Secondary, "a.test.")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(got, func(l string) bool { return strings.HasSuffix(l, "A\t198.51.100.25") }) {
		t.Errorf("secondary's a.test. lacks the new A record:\n%s", strings.Join(got, "\n"))
	}
	after, err := c.AXFR(ctx, c.Secondary, "b.test.")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(before, after) {
		t.Errorf("b.test. changed:\n%v\n%v", before, after)
	}
}

func TestUpdatePolicyRefusesNS(t *testing.T) {
	c := StartT(t, Options{Zones: []Zone{zone("a.test.")}, NoSecondary: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := c.NSUpdate(ctx, "zone a.test.\nupdate add a.test. 300 NS ns9.evil.test.")
	if err == nil || !strings.Contains(err.Error(), "REFUSED") {
		t.Fatalf("NS update: err = %v, want REFUSED", err)
	}
}
