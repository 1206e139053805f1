package dnsctl_test

import (
	"flag"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/services/dnsctl"
	"github.com/mailferry/mailferry/services/dnsctl/journal"
	"github.com/mailferry/mailferry/services/dnsctl/testenv/zonegen"
	"github.com/mailferry/mailferry/shared/event"
)

// roundTripZones sizes the round trip: thousands of zones by default,
// `go test -run RoundTrip -dnsctl.zones 5000` on the scale.
var roundTripZones = flag.Int("dnsctl.zones", 2000, "customer zones in the round-trip test")

// TestRoundTripSwitchesLegacyDomainsAndLeavesTheRestByteForByte is the
// issue's definition of done: plan, a hand edit between plan and apply,
// apply with verification, a second apply, rollback; then every zone is
// compared with its transfer from before.
func TestRoundTripSwitchesLegacyDomainsAndLeavesTheRestByteForByte(t *testing.T) {
	zones, kinds := zonegen.Mix(*roundTripZones, "rt.test.")
	f := newFixture(t, zones, kinds, nil)
	original := f.snapshot()

	planned, err := f.eng.Plan(f.ctx, f.domains, true)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := planned.ToSwitch(), countSwitching(kinds); got != want {
		t.Fatalf("plan switches %d domains, want %d: %v", got, want, planned.Totals)
	}

	// An operator edits a legacy domain between plan and apply.
	edited := "c0.rt.test."
	if err := f.bind.NSUpdate(f.ctx, "zone "+edited+"\nupdate delete "+edited+" MX\nupdate add "+edited+" 3600 MX 5 mx.elsewhere.test."); err != nil {
		t.Fatal(err)
	}
	if err := f.bind.WaitSynced(f.ctx, []string{edited}); err != nil {
		t.Fatal(err)
	}
	beforeApply := f.snapshot()

	rep, err := f.eng.Apply(f.ctx, f.domains, dnsctl.ApplyOptions{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	got := outcomes(rep)
	for d, k := range kinds {
		res := got[d]
		switch {
		case d == edited:
			if res.Outcome != dnsctl.Failed || !strings.Contains(res.Error, "changed since it was planned") {
				t.Errorf("%s (edited after plan): %s %s, want failed: changed since it was planned", d, res.Outcome, res.Error)
			}
		case k.Switches():
			if res.Outcome != dnsctl.Verified {
				t.Errorf("%s (%s): %s %s %s, want verified", d, k, res.Outcome, res.Reason, res.Error)
			}
		default:
			if res.Outcome != dnsctl.Skipped || res.Code != string(k) {
				t.Errorf("%s (%s): %s (%s), want skipped (%s)", d, k, res.Outcome, res.Code, k)
			}
		}
	}
	afterApply := f.snapshot()
	for key, rrs := range beforeApply {
		d := key[strings.Index(key, " ")+1:]
		if (!kinds[d].Switches() || d == edited) && !slices.Equal(rrs, afterApply[key]) {
			t.Errorf("%s: apply changed a domain it must leave alone:\nbefore %q\nafter  %q", key, rrs, afterApply[key])
		}
		if kinds[d].Switches() && d != edited && !slices.ContainsFunc(afterApply[key], func(l string) bool {
			return strings.HasSuffix(l, "MX\t10 "+zonegen.NewMX1)
		}) {
			t.Errorf("%s serves no new MX after apply: %q", key, afterApply[key])
		}
	}

	again, err := f.eng.Apply(f.ctx, f.domains, dnsctl.ApplyOptions{Verify: false})
	if err != nil {
		t.Fatal(err)
	}
	if n := again.Totals[string(dnsctl.Switched)]; n != 0 {
		t.Errorf("second apply switched %d domains, want 0 (idempotent): %v", n, again.Totals)
	}
	if n, want := again.Totals[string(dnsctl.Unchanged)], countSwitching(kinds)-1; n != want {
		t.Errorf("second apply reports %d unchanged, want %d: %v", n, want, again.Totals)
	}
	if after := f.snapshot(); !equalSnapshots(after, afterApply) {
		t.Error("second apply changed zones")
	}

	checkSwitchedEvents(t, f, kinds, edited)
	checkReverifyKeepsTheExpiry(t, f, "c1.rt.test.")

	back, err := f.eng.Rollback(f.ctx, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if n, want := back.Totals[string(dnsctl.RolledBack)], countSwitching(kinds)-1; n != want {
		t.Errorf("rollback restored %d domains, want %d: %v", n, want, back.Totals)
	}
	if err := f.bind.WaitSynced(f.ctx, f.domains); err != nil {
		t.Fatal(err)
	}
	final := f.snapshot()
	for key, rrs := range final {
		d := key[strings.Index(key, " ")+1:]
		switch {
		case d == edited:
			if !slices.Equal(rrs, beforeApply[key]) {
				t.Errorf("%s: the hand-edited domain is not as the operator left it", key)
			}
		case kinds[d].Switches():
			if !slices.Equal(withoutSOA(rrs), withoutSOA(original[key])) {
				t.Errorf("%s: not restored:\nwant %q\ngot  %q", key, withoutSOA(original[key]), withoutSOA(rrs))
			}
		default:
			if !slices.Equal(rrs, original[key]) {
				t.Errorf("%s: a skipped domain changed during the round trip", key)
			}
		}
	}
	if n := len(f.events()[event.DNSRolledBack]); n != countSwitching(kinds)-1 {
		t.Errorf("%d dns.rolled_back events, want %d", n, countSwitching(kinds)-1)
	}
}

func countSwitching(kinds map[string]zonegen.Kind) int {
	n := 0
	for _, k := range kinds {
		if k.Switches() {
			n++
		}
	}
	return n
}

func equalSnapshots(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// checkSwitchedEvents checks one dns.switched per switched domain, whose
// old-TTL expiry is the verification time plus the MX TTL of its kind.
func checkSwitchedEvents(t *testing.T, f *fixture, kinds map[string]zonegen.Kind, edited string) {
	t.Helper()
	evs := f.events()
	if n, want := len(evs[event.DNSSwitched]), countSwitching(kinds)-1; n != want {
		t.Errorf("%d dns.switched events, want %d", n, want)
	}
	for _, e := range evs[event.DNSSwitched] {
		data := decode[dnsctl.SwitchedData](t, e)
		want := 3600 * time.Second
		if kinds[e.Key+"."] == zonegen.LegacyByName {
			want = 7200 * time.Second
		}
		if got := data.OldTTLExpiresAt.Sub(data.VerifiedAt); got != want {
			t.Errorf("%s: old TTL expires %s after verification, want %s", e.Key, got, want)
		}
		if len(data.Servers) != 2 {
			t.Errorf("%s: verified on %v, want both servers", e.Key, data.Servers)
		}
		en, err := f.eng.Journal.Get(f.ctx, e.Key)
		if err != nil || en == nil || en.State != journal.Verified {
			t.Errorf("%s: journal %+v (%v), want verified", e.Key, en, err)
		}
	}
	for _, e := range evs[event.DNSFailed] {
		if e.Key+"." != edited {
			t.Errorf("dns.failed for %s, want only %s", e.Key, edited)
		}
	}
	if len(evs[event.DNSFailed]) == 0 {
		t.Errorf("no dns.failed event for %s", edited)
	}
	if n, want := len(evs[event.DNSSkipped]), len(kinds)-countSwitching(kinds); n != want {
		t.Errorf("%d dns.skipped events, want %d", n, want)
	}
}

// checkReverifyKeepsTheExpiry verifies a verified domain again: the old
// records began to expire at the first verification, not now.
func checkReverifyKeepsTheExpiry(t *testing.T, f *fixture, domain string) {
	t.Helper()
	before, err := f.eng.Journal.Get(f.ctx, domain)
	if err != nil || before == nil {
		t.Fatalf("journal of %s: %+v, %v", domain, before, err)
	}
	// Verify again an hour later by the engine's clock: an expiry taken
	// from this verification would then differ by an hour, however fast
	// the machine is.
	f.eng.Now = func() time.Time { return time.Now().Add(time.Hour) }
	defer func() { f.eng.Now = nil }()
	v, err := f.eng.Verify(f.ctx, []string{domain})
	if err != nil {
		t.Fatal(err)
	}
	if res := v.Results[0]; res.Outcome != dnsctl.Verified || !res.OldTTLExpiresAt.Equal(before.OldTTLExpiresAt) {
		t.Errorf("verified again: %+v, want the expiry %s of the first verification", res, before.OldTTLExpiresAt)
	}
}
