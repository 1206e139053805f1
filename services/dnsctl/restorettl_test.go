package dnsctl_test

import (
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"

	"github.com/mailferry/mailferry/services/dnsctl"
	"github.com/mailferry/mailferry/services/dnsctl/testenv/bindtest"
	"github.com/mailferry/mailferry/services/dnsctl/testenv/zonegen"
	"github.com/mailferry/mailferry/shared/event"
)

// switched lowers the TTL of domain's mail records to lower (none when
// 0), then switches and verifies it, and returns the primary's serial.
func (f *fixture) switched(domain string, lower uint32) uint32 {
	f.t.Helper()
	if lower > 0 {
		r, err := f.eng.LowerTTL(f.ctx, []string{domain}, lower, dnsctl.ApplyOptions{})
		if err != nil || r.Results[0].Outcome != dnsctl.Lowered {
			f.t.Fatalf("lower-ttl: %+v (%v)", r, err)
		}
	}
	r, err := f.eng.Apply(f.ctx, []string{domain}, dnsctl.ApplyOptions{Verify: true, Replan: true})
	if err != nil || r.Results[0].Outcome != dnsctl.Verified {
		f.t.Fatalf("apply: %+v (%v)", r, err)
	}
	return f.serial(f.bind.Primary, domain)
}

func (f *fixture) serial(s *bindtest.Server, domain string) uint32 {
	f.t.Helper()
	n, err := s.Serial(f.ctx, domain)
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

// mailTTLs returns the TTL of domain's MX and mail A records as server
// serves them.
func (f *fixture) mailTTLs(s *bindtest.Server, domain string) [2]uint32 {
	f.t.Helper()
	var out [2]uint32
	for i, q := range []struct {
		name string
		typ  uint16
	}{{domain, dns.TypeMX}, {"mail." + domain, dns.TypeA}} {
		set, err := f.eng.Client.RRset(f.ctx, s.Addr, q.name, q.typ)
		if err != nil || !set.Exists() {
			f.t.Fatalf("%s %s at %s: %+v (%v)", q.name, dns.TypeToString[q.typ], s.Addr, set, err)
		}
		out[i] = set.TTL
	}
	return out
}

func TestRestoreTTLAfterTheSwitchSetsTheTTLOnEveryServerOnce(t *testing.T) {
	zones := []bindtest.Zone{zonegen.Zone("restore.test.", zonegen.LegacyByAddress, 1)}
	f := newFixture(t, zones, nil, nil)
	before := f.switched("restore.test.", 300)

	// No TTL given: dns.restore_ttl, 3600 by default.
	res := f.eng.RestoreTTL(f.ctx, "Restore.test", 0)
	if res.Outcome != dnsctl.TTLRestored || res.Serial != before+1 || len(res.Servers) != 2 {
		t.Fatalf("restore-ttl: %+v, want restored at serial %d on both servers", res, before+1)
	}
	for _, s := range f.bind.Servers() {
		if got := f.mailTTLs(s, "restore.test."); got != [2]uint32{3600, 3600} {
			t.Errorf("%s serves MX and mail A with TTLs %v, want 3600", s.Addr, got)
		}
		if n := f.serial(s, "restore.test."); n != res.Serial {
			t.Errorf("%s serves serial %d, want %d", s.Addr, n, res.Serial)
		}
	}
	st, err := f.eng.Status(f.ctx, []string{"restore.test."})
	if err != nil || len(st) != 1 || st[0].Restored == nil {
		t.Fatalf("status %+v (%v), want the restore journaled", st, err)
	}
	r := *st[0].Restored
	if r.From != 300 || r.To != 3600 || r.Serial != res.Serial || r.Pending {
		t.Errorf("journaled restore %+v, want 300 -> 3600 at serial %d", r, res.Serial)
	}
	// The written records carry the restored TTL, so that a rollback
	// replaces them whole.
	for _, c := range st[0].Changes {
		if (c.Type() == "MX" || c.Type() == "A") && c.New.TTL != 3600 {
			t.Errorf("journaled %s %s written with TTL %d, want 3600", c.Name(), c.Type(), c.New.TTL)
		}
	}
	evs := f.events()[event.DNSTTLRestored]
	if len(evs) != 1 || evs[0].Key != "restore.test" {
		t.Fatalf("dns.ttl_restored events %+v, want one keyed restore.test", evs)
	}
	if d := decode[dnsctl.TTLRestoredData](t, evs[0]); d.Serial != res.Serial || d.TTL != 3600 || d.From != 300 {
		t.Errorf("dns.ttl_restored %+v", d)
	}

	again := f.eng.RestoreTTL(f.ctx, "restore.test.", 3600)
	if again.Outcome != dnsctl.Unchanged {
		t.Errorf("second restore-ttl: %+v, want unchanged", again)
	}
	if n := f.serial(f.bind.Primary, "restore.test."); n != res.Serial {
		t.Errorf("second restore-ttl moved the serial to %d", n)
	}
	if st, _ := f.eng.Status(f.ctx, []string{"restore.test."}); st[0].Restored == nil || !st[0].Restored.At.Equal(r.At) {
		t.Errorf("second restore-ttl rewrote the journal: %+v, was %+v", st[0].Restored, r)
	}
	if n := len(f.events()[event.DNSTTLRestored]); n != 1 {
		t.Errorf("%d dns.ttl_restored events after the second run, want 1", n)
	}
}

func TestRestoreTTLRefusesADomainNotSwitchedAndADryRunChangesNothing(t *testing.T) {
	zones := []bindtest.Zone{zonegen.Zone("early.test.", zonegen.LegacyByAddress, 1), zonegen.Zone("dry.test.", zonegen.LegacyByAddress, 2)}
	f := newFixture(t, zones, nil, nil)
	if r, err := f.eng.LowerTTL(f.ctx, []string{"early.test."}, 300, dnsctl.ApplyOptions{}); err != nil || r.Results[0].Outcome != dnsctl.Lowered {
		t.Fatalf("lower-ttl: %+v (%v)", r, err)
	}
	f.switched("dry.test.", 300)
	f.waitSynced()
	before := f.snapshot()

	r, err := f.eng.RestoreTTLs(f.ctx, []string{"early.test.", "dry.test."}, 3600, dnsctl.ApplyOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	got := outcomes(r)
	if res := got["early.test."]; res.Outcome != dnsctl.Refused || res.Code != "not_switched" || !strings.Contains(res.Reason, "not switched and verified") {
		t.Errorf("early.test.: %+v, want refused as not switched", res)
	}
	if res := got["dry.test."]; res.Outcome != dnsctl.WouldRestore || len(res.Changes) != 2 {
		t.Errorf("dry.test.: %+v, want would restore MX and mail A", res)
	} else {
		for _, c := range res.Changes {
			if c.Old.TTL != 300 || c.New.TTL != 3600 || !c.Old.Equal(c.New) {
				t.Errorf("dry run change %+v, want the same records from TTL 300 to 3600", c)
			}
		}
	}
	refused := f.eng.RestoreTTL(f.ctx, "early.test.", 3600)
	if refused.Outcome != dnsctl.Refused {
		t.Errorf("restore-ttl before the switch: %+v, want refused", refused)
	}
	if !equalSnapshots(before, f.snapshot()) {
		t.Error("a dry run or a refused restore changed zones")
	}
	for _, d := range []string{"early.test.", "dry.test."} {
		if en, err := f.eng.Journal.Get(f.ctx, d); err != nil || en == nil || en.Restored != nil {
			t.Errorf("%s journal %+v (%v), want no restore journaled", d, en, err)
		}
	}
	if n := len(f.events()[event.DNSTTLRestored]); n != 0 {
		t.Errorf("%d dns.ttl_restored events, want none", n)
	}
}

func TestFiftyConcurrentRestoresOfADomainSendOneUpdate(t *testing.T) {
	zones := []bindtest.Zone{zonegen.Zone("many.test.", zonegen.LegacyByAddress, 1)}
	f := newFixture(t, zones, nil, nil)
	before := f.switched("many.test.", 300)
	results := make([]dnsctl.Result, 50)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = f.eng.RestoreTTL(f.ctx, "many.test.", 3600)
		}()
	}
	wg.Wait()
	count := map[dnsctl.Outcome]int{}
	for _, r := range results {
		count[r.Outcome]++
		if r.Outcome == dnsctl.Failed {
			t.Errorf("a concurrent restore failed: %+v", r)
		}
	}
	if count[dnsctl.TTLRestored] != 1 || count[dnsctl.Unchanged] != 49 {
		t.Errorf("outcomes %v, want 1 restored and 49 unchanged", count)
	}
	if n := f.serial(f.bind.Primary, "many.test."); n != before+1 {
		t.Errorf("serial %d after the restores, want %d: one update", n, before+1)
	}
	if n := len(f.events()[event.DNSTTLRestored]); n != 1 {
		t.Errorf("%d dns.ttl_restored events, want 1", n)
	}
	en, err := f.eng.Journal.Get(f.ctx, "many.test.")
	if err != nil || en.Restored == nil || en.Restored.Serial != before+1 || en.Restored.From != 300 {
		t.Errorf("journal %+v (%v), want one restore from 300 at serial %d", en, err, before+1)
	}
}

func TestRollbackAfterARestoreGivesBackTheRecordsAndTTLsFromBeforeTheSwitch(t *testing.T) {
	tests := []struct {
		name    string
		kind    zonegen.Kind
		lower   uint32
		restore uint32
	}{
		// The cutover as run: lowered to 300, switched, restored to 3600;
		// the rollback gives back the lowered records of before the switch.
		{"lowered then restored", zonegen.LegacyByAddress, 300, 3600},
		// MX at 7200 and mail A at 3600, both restored to 600.
		{"two TTLs restored to one", zonegen.LegacyByName, 0, 600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, []bindtest.Zone{zonegen.Zone("undo.test.", tt.kind, 1)}, nil, nil)
			if tt.lower > 0 {
				if r, err := f.eng.LowerTTL(f.ctx, f.domains, tt.lower, dnsctl.ApplyOptions{}); err != nil || r.Results[0].Outcome != dnsctl.Lowered {
					t.Fatalf("lower-ttl: %+v (%v)", r, err)
				}
			}
			f.waitSynced()
			original := f.snapshot()
			f.switched("undo.test.", 0)
			if res := f.eng.RestoreTTL(f.ctx, "undo.test.", tt.restore); res.Outcome != dnsctl.TTLRestored {
				t.Fatalf("restore-ttl: %+v", res)
			}
			r, err := f.eng.Rollback(f.ctx, f.domains, false)
			if err != nil || r.Results[0].Outcome != dnsctl.RolledBack {
				t.Fatalf("rollback: %+v (%v)", r, err)
			}
			f.waitSynced()
			after := f.snapshot()
			for key, rrs := range original {
				if got := withoutSOA(after[key]); !slices.Equal(withoutSOA(rrs), got) {
					t.Errorf("%s after the rollback:\n%s\nwant as before the switch:\n%s", key, strings.Join(got, "\n"), strings.Join(withoutSOA(rrs), "\n"))
				}
			}
		})
	}
}
