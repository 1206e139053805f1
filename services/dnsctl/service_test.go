package dnsctl_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/services/dnsctl"
	"github.com/mailferry/mailferry/services/dnsctl/testenv/bindtest"
	"github.com/mailferry/mailferry/services/dnsctl/testenv/zonegen"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/metrics"
	"github.com/mailferry/mailferry/shared/testenv/syncbuf"
)

func TestServiceSwitchesAProvisionedDomainAndReportsTheOthers(t *testing.T) {
	zones := []bindtest.Zone{
		zonegen.Zone("legacy.customer.test.", zonegen.LegacyByAddress, 1),
		zonegen.Zone("google.customer.test.", zonegen.External, 2),
		zonegen.Zone("asked.customer.test.", zonegen.LegacyByName, 3),
	}
	f := newFixture(t, zones, nil, map[string]string{"switch_on_provisioned": "true"})
	m := metrics.New()
	f.runService(zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel), m)

	auth := event.Publisher{JS: f.broker.JS, Service: "auth"}
	for _, d := range []string{"legacy.customer.test", "google.customer.test"} {
		if err := auth.Publish(f.ctx, event.ProvisionedDomain(event.DomainProvisionedData{Domain: d, Mailboxes: 1, Provider: "dovecot"})); err != nil {
			t.Fatal(err)
		}
	}
	if err := dnsctl.RequestCutover(f.ctx, event.Publisher{JS: f.broker.JS, Service: "cli"}, "asked.customer.test"); err != nil {
		t.Fatal(err)
	}

	evs := f.waitEvents(map[string]int{event.DNSSwitched: 2, event.DNSSkipped: 1})
	switched := map[string]dnsctl.SwitchedData{}
	for _, e := range evs[event.DNSSwitched] {
		switched[e.Key] = decode[dnsctl.SwitchedData](t, e)
	}
	for d, ttl := range map[string]time.Duration{"legacy.customer.test": time.Hour, "asked.customer.test": 2 * time.Hour} {
		data, ok := switched[d]
		if !ok {
			t.Errorf("no dns.switched for %s", d)
			continue
		}
		if got := data.OldTTLExpiresAt.Sub(data.VerifiedAt); got != ttl {
			t.Errorf("%s: old TTL expires %s after verification, want %s", d, got, ttl)
		}
	}
	skipped := evs[event.DNSSkipped][0]
	if data := decode[dnsctl.SkippedData](t, skipped); skipped.Key != "google.customer.test" || data.Code != string(zonegen.External) {
		t.Errorf("dns.skipped %s %+v, want google.customer.test external", skipped.Key, data)
	}
	f.waitConsumed()
	got := map[string]float64{}
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range families {
		if fam.GetName() != "mailferry_dns_updates_total" {
			continue
		}
		for _, mt := range fam.GetMetric() {
			got[mt.GetLabel()[0].GetValue()] = mt.GetCounter().GetValue()
		}
	}
	if want := map[string]float64{"switched": 2, "skipped": 1}; !maps.Equal(got, want) {
		t.Errorf("mailferry_dns_updates_total by outcome %v, want %v", got, want)
	}
}

func TestServiceWithTheDefaultConfigLeavesAProvisionedDomainToACutoverRequest(t *testing.T) {
	zones := []bindtest.Zone{
		zonegen.Zone("provisioned.customer.test.", zonegen.LegacyByAddress, 1),
		zonegen.Zone("asked.customer.test.", zonegen.LegacyByName, 2),
	}
	f := newFixture(t, zones, nil, nil)
	f.waitSynced()
	before := f.snapshot()
	logs := &syncbuf.Buffer{}
	f.runService(zerolog.New(logs).Level(zerolog.InfoLevel), nil)

	auth := event.Publisher{JS: f.broker.JS, Service: "auth"}
	// Two events for the domain, spelled differently: said once.
	for _, d := range []string{"Provisioned.customer.test", "provisioned.customer.test."} {
		if err := auth.Publish(f.ctx, event.ProvisionedDomain(event.DomainProvisionedData{Domain: d, Mailboxes: 3, Provider: "dovecot"})); err != nil {
			t.Fatal(err)
		}
	}
	if err := dnsctl.RequestCutover(f.ctx, event.Publisher{JS: f.broker.JS, Service: "cli"}, "asked.customer.test"); err != nil {
		t.Fatal(err)
	}
	evs := f.waitEvents(map[string]int{event.DNSSwitched: 1})
	f.waitConsumed()
	if n := len(evs[event.DNSSwitched]); n != 1 || evs[event.DNSSwitched][0].Key != "asked.customer.test" {
		t.Errorf("dns.switched %v, want one, for the domain whose cutover was requested", evs[event.DNSSwitched])
	}
	evs = f.events()
	for typ, es := range evs {
		for _, e := range es {
			if e.Key == "provisioned.customer.test" {
				t.Errorf("%s for the provisioned domain: the service acted on domain.provisioned", typ)
			}
		}
	}
	f.waitSynced()
	after := f.snapshot()
	for key, rrs := range before {
		if strings.HasSuffix(key, " provisioned.customer.test.") && !slices.Equal(rrs, after[key]) {
			t.Errorf("%s changed on domain.provisioned", key)
		}
	}
	if en, err := f.eng.Journal.Get(f.ctx, "provisioned.customer.test."); err != nil || en != nil {
		t.Errorf("journal of the provisioned domain: %+v (%v), want none", en, err)
	}
	said := 0
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, `"domain":"provisioned.customer.test."`) && strings.Contains(line, "dns cutover or campaign requests it") {
			said++
			if !strings.Contains(line, `"level":"info"`) {
				t.Errorf("logged as %s, want info", line)
			}
		}
	}
	if said != 1 {
		t.Errorf("the service said %d times that it leaves the provisioned domain to a cutover request, want once:\n%s", said, logs.String())
	}
}

// runService runs the dnsctl service until the test ends.
// It counts on m (nil: nothing).
func (f *fixture) runService(log zerolog.Logger, m *metrics.Metrics) {
	f.t.Helper()
	ctx, cancel := context.WithCancel(f.ctx)
	svc := &dnsctl.Service{Config: f.cfg, Broker: f.broker, Log: log, Metrics: m}
	var wg sync.WaitGroup
	wg.Add(1)
	var runErr error
	go func() {
		defer wg.Done()
		runErr = svc.Run(ctx)
	}()
	f.t.Cleanup(func() {
		cancel()
		wg.Wait()
		if runErr != nil {
			f.t.Errorf("service: %v", runErr)
		}
	})
}

// waitConsumed waits until the service has handled every event its
// consumer was given.
func (f *fixture) waitConsumed() {
	f.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		info, err := f.broker.JS.Consumer(f.ctx, broker.StreamEvents, "dnsctl")
		if err == nil {
			i := info.CachedInfo()
			if got, err := info.Info(f.ctx); err == nil {
				i = got
			}
			if i.NumPending == 0 && i.NumAckPending == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("the service has not handled every event within 60s (%v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitEvents polls the events stream until it holds at least the wanted
// number of events of each type.
func (f *fixture) waitEvents(want map[string]int) map[string][]event.Event {
	f.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		evs := f.events()
		done := true
		for typ, n := range want {
			done = done && len(evs[typ]) >= n
		}
		if done {
			return evs
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("events %v, want at least %v", counts(evs), want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func counts(evs map[string][]event.Event) map[string]int {
	out := map[string]int{}
	for k, v := range evs {
		out[k] = len(v)
	}
	return out
}
