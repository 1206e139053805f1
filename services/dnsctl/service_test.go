package dnsctl_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/services/dnsctl"
	"github.com/mailferry/mailferry/services/dnsctl/testenv/bindtest"
	"github.com/mailferry/mailferry/services/dnsctl/testenv/zonegen"
	"github.com/mailferry/mailferry/shared/event"
)

func TestServiceSwitchesAProvisionedDomainAndReportsTheOthers(t *testing.T) {
	zones := []bindtest.Zone{
		zonegen.Zone("legacy.customer.test.", zonegen.LegacyByAddress, 1),
		zonegen.Zone("google.customer.test.", zonegen.External, 2),
		zonegen.Zone("asked.customer.test.", zonegen.LegacyByName, 3),
	}
	f := newFixture(t, zones, nil, nil)
	ctx, cancel := context.WithCancel(f.ctx)
	svc := &dnsctl.Service{Config: f.cfg, Broker: f.broker, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)}
	var wg sync.WaitGroup
	wg.Add(1)
	var runErr error
	go func() {
		defer wg.Done()
		runErr = svc.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if runErr != nil {
			t.Errorf("service: %v", runErr)
		}
	})

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
