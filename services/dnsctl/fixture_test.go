package dnsctl_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/services/dnsctl"
	"github.com/mailferry/mailferry/services/dnsctl/testenv/bindtest"
	"github.com/mailferry/mailferry/services/dnsctl/testenv/zonegen"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/subject"
)

// fixture is a BIND primary and secondary serving generated customer
// zones, an embedded NATS and an engine configured for them.
type fixture struct {
	t       *testing.T
	ctx     context.Context
	dir     string
	bind    *bindtest.Cluster
	cfg     *config.Config
	broker  *broker.Broker
	eng     *dnsctl.Engine
	kinds   map[string]zonegen.Kind
	domains []string
}

// dnsDefaults are the dns keys of the test world; %s are filled in by
// newFixture.
func dnsDefaults(c *bindtest.Cluster, domainsFile string) map[string]string {
	var verify []string
	for _, s := range c.Servers() {
		verify = append(verify, fmt.Sprintf("%q", s.Addr))
	}
	return map[string]string{
		"server":             fmt.Sprintf("%q", c.Primary.Addr),
		"tsig_key_file":      fmt.Sprintf("%q", c.KeyFile),
		"verify_servers":     "[" + strings.Join(verify, ", ") + "]",
		"verify_ns":          "false",
		"legacy_mail_hosts":  fmt.Sprintf("[%s, %q]", zonegen.LegacyIP, zonegen.OldNamePattern),
		"new_mx":             fmt.Sprintf("[\"10 %s\", \"20 %s\"]", zonegen.NewMX1, zonegen.NewMX2),
		"mail_host_a":        zonegen.NewIP,
		"spf":                fmt.Sprintf("{replace: %q, with: %q}", zonegen.SPFOld, zonegen.SPFNew),
		"domains_file":       fmt.Sprintf("%q", domainsFile),
		"max_change_percent": "100",
		"rate":               "-1",
		"verify_timeout":     "30s",
	}
}

// newFixture starts BIND with the support zones and the given customer
// zones, and builds an engine; dns keys in extra override the defaults.
func newFixture(t *testing.T, zones []bindtest.Zone, kinds map[string]zonegen.Kind, extra map[string]string, opts ...func(*bindtest.Options)) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	o := bindtest.Options{Zones: append(zonegen.Support(), zones...)}
	for _, f := range opts {
		f(&o)
	}
	c := bindtest.StartT(t, o)
	dir := t.TempDir()
	f := &fixture{t: t, ctx: ctx, dir: dir, bind: c, kinds: kinds}
	for _, z := range zones {
		f.domains = append(f.domains, z.Name)
	}
	domainsFile := filepath.Join(dir, "domains.txt")
	if err := os.WriteFile(domainsFile, []byte(strings.Join(f.domains, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	keys := dnsDefaults(c, domainsFile)
	maps.Copy(keys, extra)
	yaml := fmt.Sprintf("nats: {data_dir: %q}\nlog: {level: warn}\ndns:\n", filepath.Join(dir, "nats"))
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		yaml += "  " + k + ": " + keys[k] + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "mailferry.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(yaml), dir, nil)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yaml)
	}
	f.cfg = cfg
	b, err := broker.Open(ctx, cfg.NATS, "dnsctl-test", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	f.broker = b
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	f.eng, err = dnsctl.New(ctx, cfg, b.JS, event.Publisher{JS: b.JS, Service: dnsctl.ServiceName}, log)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// configPath is the fixture's configuration file, for the CLI.
func (f *fixture) configPath() string { return filepath.Join(f.dir, "mailferry.yaml") }

// syncTimeout bounds how long the secondary may take to transfer a change
// of a handful of zones: NOTIFY and IXFR take milliseconds on an idle
// machine, seconds on a loaded two-core one.
const syncTimeout = 60 * time.Second

// waitSynced waits until the secondary serves the primary's SOA serial of
// every zone named (all customer zones when none are), so that a snapshot
// taken next shows both servers in the same state.
func (f *fixture) waitSynced(zones ...string) {
	f.t.Helper()
	if len(zones) == 0 {
		zones = f.domains
	}
	ctx, cancel := context.WithTimeout(f.ctx, syncTimeout)
	defer cancel()
	if err := f.bind.WaitSynced(ctx, zones); err != nil {
		f.t.Fatalf("the secondary did not catch up with the primary within %s: %v", syncTimeout, err)
	}
}

// snapshot transfers every customer zone from every server. A zone just
// changed on the primary may not have reached the secondary yet: call
// waitSynced first.
func (f *fixture) snapshot() map[string][]string {
	f.t.Helper()
	type job struct {
		s *bindtest.Server
		d string
	}
	jobs := make(chan job)
	out := map[string][]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				rrs, err := f.bind.AXFR(f.ctx, j.s, j.d)
				if err != nil {
					f.t.Error(err)
					continue
				}
				mu.Lock()
				out[j.s.Addr+" "+j.d] = rrs
				mu.Unlock()
			}
		}()
	}
	for _, s := range f.bind.Servers() {
		for _, d := range f.domains {
			jobs <- job{s, d}
		}
	}
	close(jobs)
	wg.Wait()
	if f.t.Failed() {
		f.t.FailNow()
	}
	return out
}

// withoutSOA drops the SOA records of a transfer: a change and its
// rollback leave everything but the serial as it was.
func withoutSOA(rrs []string) []string {
	return slices.DeleteFunc(slices.Clone(rrs), func(l string) bool { return strings.Contains(l, "\tSOA\t") })
}

// events returns the dns.* events published so far, by type.
func (f *fixture) events() map[string][]event.Event {
	f.t.Helper()
	cons, err := f.broker.JS.OrderedConsumer(f.ctx, broker.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject.EventPrefix + ".dns.>"},
	})
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string][]event.Event{}
	for {
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			f.t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			e, err := event.Decode(m.Data())
			if err != nil {
				f.t.Fatal(err)
			}
			out[e.Type] = append(out[e.Type], *e)
		}
		if n == 0 {
			return out
		}
	}
}

func decode[T any](t *testing.T, e event.Event) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(e.Data, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// outcomes maps each domain of a report to its outcome.
func outcomes(r *dnsctl.Report) map[string]dnsctl.Result {
	out := map[string]dnsctl.Result{}
	for _, res := range r.Results {
		out[res.Domain] = res
	}
	return out
}
