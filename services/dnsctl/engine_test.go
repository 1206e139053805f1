package dnsctl_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailferry/mailferry/services/dnsctl"
	"github.com/mailferry/mailferry/services/dnsctl/testenv/bindtest"
	"github.com/mailferry/mailferry/services/dnsctl/testenv/zonegen"
)

func TestApplyRefusesToChangeMoreThanTheSafetyShareWithoutForce(t *testing.T) {
	zones, kinds := zonegen.Mix(20, "share.test.")
	f := newFixture(t, zones, kinds, map[string]string{"max_change_percent": "50"})
	before := f.snapshot()
	_, err := f.eng.Apply(f.ctx, f.domains, dnsctl.ApplyOptions{})
	if !errors.Is(err, dnsctl.ErrThreshold) || !strings.Contains(err.Error(), "12 of 20 domains (60%)") {
		t.Fatalf("err = %v, want the threshold naming 12 of 20 domains (60%%)", err)
	}
	if !equalSnapshots(before, f.snapshot()) {
		t.Fatal("a refused run changed zones")
	}
	r, err := f.eng.Apply(f.ctx, f.domains, dnsctl.ApplyOptions{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := r.Totals[string(dnsctl.Switched)]; n != 12 {
		t.Errorf("with force: %d switched, want 12: %v", n, r.Totals)
	}
}

func TestDryRunShowsTheChangesAndChangesNothing(t *testing.T) {
	zones, kinds := zonegen.Mix(20, "dry.test.")
	f := newFixture(t, zones, kinds, nil)
	before := f.snapshot()
	r, err := f.eng.Apply(f.ctx, f.domains, dnsctl.ApplyOptions{DryRun: true, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := r.Totals[string(dnsctl.WouldSwitch)]; n != 12 {
		t.Errorf("%d would switch, want 12: %v", n, r.Totals)
	}
	for _, res := range r.Results {
		if res.Outcome == dnsctl.WouldSwitch && len(res.Changes) == 0 {
			t.Errorf("%s: dry run shows no changes", res.Domain)
		}
	}
	if !equalSnapshots(before, f.snapshot()) {
		t.Error("dry run changed zones")
	}
	if evs := f.events(); len(evs) != 0 {
		t.Errorf("dry run published events: %v", evs)
	}
	if st, err := f.eng.Status(f.ctx, nil); err != nil || len(st) != 0 {
		t.Errorf("dry run journaled %d entries (%v)", len(st), err)
	}
}

func TestLowerTTLThenSwitchReportsWhenTheLongOldTTLRunsOut(t *testing.T) {
	zones := []bindtest.Zone{zonegen.Zone("ttl.test.", zonegen.LegacyByAddress, 1)}
	f := newFixture(t, zones, nil, nil)
	r, err := f.eng.LowerTTL(f.ctx, f.domains, 300, dnsctl.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res := r.Results[0]; res.Outcome != dnsctl.Lowered {
		t.Fatalf("lower-ttl: %+v", res)
	}
	mx, err := f.eng.Client.RRset(f.ctx, f.bind.Primary.Addr, "ttl.test.", dns.TypeMX)
	if err != nil || mx.TTL != 300 || !slices.Equal(mx.Data, []string{"10 mail.ttl.test."}) {
		t.Fatalf("MX after lower-ttl: %+v (%v), want the same record with TTL 300", mx, err)
	}
	again, err := f.eng.LowerTTL(f.ctx, f.domains, 300, dnsctl.ApplyOptions{})
	if err != nil || again.Results[0].Outcome != dnsctl.Unchanged {
		t.Errorf("second lower-ttl: %+v (%v), want unchanged", again.Results, err)
	}
	applied, err := f.eng.Apply(f.ctx, f.domains, dnsctl.ApplyOptions{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	res := applied.Results[0]
	if res.Outcome != dnsctl.Verified {
		t.Fatalf("apply: %+v", res)
	}
	en, err := f.eng.Journal.Get(f.ctx, "ttl.test.")
	if err != nil || en.OldTTL != 300 || en.Lowered == nil || en.Lowered.From != 3600 {
		t.Fatalf("journal %+v (%v): want old TTL 300 and a lowering from 3600", en, err)
	}
	// Resolvers may hold the MX with its old TTL of 3600 s from just
	// before the lowering: that, not 300 s after the switch, is when the
	// legacy server stops receiving mail.
	if want := en.Lowered.At.Add(time.Hour); !res.OldTTLExpiresAt.Equal(want) || !en.Lowered.HeldUntil.Equal(want) {
		t.Errorf("old records expire at %s, want an hour after the lowering (%s)", res.OldTTLExpiresAt, want)
	}
	if !en.VerifiedAt.Add(300 * time.Second).Before(res.OldTTLExpiresAt) {
		t.Errorf("verified at %s: the lowered TTL runs out before the expiry, so the test shows nothing", en.VerifiedAt)
	}
}

func TestRollbackLeavesADomainEditedSinceTheSwitchAlone(t *testing.T) {
	zones := []bindtest.Zone{zonegen.Zone("keep.test.", zonegen.LegacyByAddress, 1), zonegen.Zone("back.test.", zonegen.LegacyByAddress, 2)}
	f := newFixture(t, zones, nil, nil)
	if _, err := f.eng.Apply(f.ctx, f.domains, dnsctl.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := f.bind.NSUpdate(f.ctx, "zone keep.test.\nupdate add keep.test. 3600 MX 30 backup.customer.test."); err != nil {
		t.Fatal(err)
	}
	// Apply does not verify here, and nsupdate returns once the primary
	// has the edit: the secondary transfers both later.
	f.waitSynced()
	edited := f.snapshot()
	r, err := f.eng.Rollback(f.ctx, []string{"keep.test.", "back.test."}, false)
	if err != nil {
		t.Fatal(err)
	}
	got := outcomes(r)
	if res := got["keep.test."]; res.Outcome != dnsctl.Failed || !strings.Contains(res.Error, "changed since dnsctl switched it") || !strings.Contains(res.Error, "backup.customer.test.") {
		t.Errorf("keep.test.: %+v, want failed naming the edit", res)
	}
	if res := got["back.test."]; res.Outcome != dnsctl.RolledBack {
		t.Errorf("back.test.: %+v, want rolled back", res)
	}
	f.waitSynced()
	after := f.snapshot()
	for key, rrs := range edited {
		if strings.HasSuffix(key, " keep.test.") && !slices.Equal(rrs, after[key]) {
			t.Errorf("%s changed by a refused rollback", key)
		}
	}
	again, err := f.eng.Rollback(f.ctx, []string{"back.test."}, false)
	if err != nil || again.Results[0].Outcome != dnsctl.Unchanged {
		t.Errorf("second rollback: %+v (%v), want unchanged", again.Results, err)
	}
}

func TestVerifyAsksEveryNSHostOfTheZone(t *testing.T) {
	zones := []bindtest.Zone{zonegen.Zone("ns.test.", zonegen.LegacyByAddress, 1)}
	f := newFixture(t, zones, nil, nil)
	// ns1 and ns2.hosting.test. are 127.0.0.1; port 53 there is nobody's,
	// so point the NS port at the secondary.
	f.eng.VerifyNS, f.eng.NSPort, f.eng.VerifyServers = true, port(f.bind.Secondary.Addr), nil
	r, err := f.eng.Apply(f.ctx, f.domains, dnsctl.ApplyOptions{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	if res := r.Results[0]; res.Outcome != dnsctl.Verified || !slices.Equal(res.Servers, []string{f.bind.Secondary.Addr}) {
		t.Errorf("%+v, want verified on %s", res, f.bind.Secondary.Addr)
	}
}

func TestVerifyFailsNamingTheServerThatLags(t *testing.T) {
	zones := []bindtest.Zone{zonegen.Zone("lag.test.", zonegen.LegacyByAddress, 1)}
	f := newFixture(t, zones, nil, map[string]string{"verify_timeout": "1s"})
	if err := f.bind.Secondary.Stop(); err != nil {
		t.Fatal(err)
	}
	r, err := f.eng.Apply(f.ctx, f.domains, dnsctl.ApplyOptions{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	res := r.Results[0]
	if res.Outcome != dnsctl.Failed || !strings.Contains(res.Error, f.bind.Secondary.Addr) {
		t.Errorf("%+v, want failed naming %s", res, f.bind.Secondary.Addr)
	}
	if n := len(f.events()["dns.switched"]); n != 0 {
		t.Errorf("%d dns.switched events for an unverified switch", n)
	}
}

func port(addr string) int {
	var p int
	for _, c := range addr[strings.LastIndex(addr, ":")+1:] {
		p = 10*p + int(c-'0')
	}
	return p
}
