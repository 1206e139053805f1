package campaign_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/campaign"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/event"
)

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// bucket starts an embedded broker, declares what the campaign writes as
// the orchestrator does, and returns its bucket.
func bucket(t *testing.T) jetstream.KeyValue {
	t.Helper()
	ctx := testContext(t)
	cfg, err := config.Parse(fmt.Appendf(nil, "nats: {data_dir: '%s'}\n", t.TempDir()), ".", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.Connect(ctx, cfg.NATS, "campaign-test", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	if err := b.Use(ctx, campaign.Needs); err != nil {
		t.Fatal(err)
	}
	kv, err := b.JS.KeyValue(ctx, broker.BucketCampaign)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := campaign.Open(ctx, b); err != nil {
		t.Fatal(err)
	}
	return kv
}

// added is a store over a fresh bucket holding newDomain(order).
func added(t *testing.T, kv campaign.KV, order campaign.Order) *campaign.Store {
	t.Helper()
	s := campaign.NewStore(kv)
	if _, ok, err := s.Add(testContext(t), newDomain(t, order, false)); err != nil || !ok {
		t.Fatalf("add: %v, %v", ok, err)
	}
	return s
}

func revision(t *testing.T, kv jetstream.KeyValue, key string) uint64 {
	t.Helper()
	e, err := kv.Get(testContext(t), key)
	if err != nil {
		t.Fatal(err)
	}
	return e.Revision()
}

func TestFiftyConcurrentAppliesOfOneFactMakeOneTransition(t *testing.T) {
	kv := bucket(t)
	ctx := testContext(t)
	added(t, kv, campaign.OrderPrestage)
	const n = 50
	var changed, provision atomic.Int32
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			res, err := campaign.NewStore(kv).Apply(ctx, dom, campaign.Start{})
			if err != nil {
				t.Error(err)
				return
			}
			if res.Domain.Phase != campaign.Provisioning {
				t.Errorf("phase %s after start", res.Domain.Phase)
			}
			if res.Changed {
				changed.Add(1)
			}
			if res.Action.Kind == campaign.ProvisionDomain {
				provision.Add(1)
			}
		})
	}
	wg.Wait()
	if changed.Load() != 1 || provision.Load() != 1 {
		t.Errorf("%d applies changed the record and %d were told to provision, want 1 and 1", changed.Load(), provision.Load())
	}
	// Revisions count every key's writes; the key's history has the
	// record as added and as started.
	if h, err := kv.History(ctx, campaign.DomainKey(dom)); err != nil || len(h) != 2 {
		t.Errorf("record's history has %d entries (%v), want 2: added, started once", len(h), err)
	}
}

func TestConcurrentFactsOfEveryMailboxAllLandAndCallForTheVerificationOnce(t *testing.T) {
	kv := bucket(t)
	ctx := testContext(t)
	s := added(t, kv, campaign.OrderPrestage)
	for _, f := range []campaign.Fact{campaign.Start{}, campaign.Provisioned{}} {
		if _, err := s.Apply(ctx, dom, f); err != nil {
			t.Fatal(err)
		}
	}
	var verifies atomic.Int32
	var wg sync.WaitGroup
	for i := range 20 {
		mb := []string{mbA, mbB}[i%2]
		wg.Go(func() {
			res, err := campaign.NewStore(kv).Apply(ctx, dom, campaign.MailboxLoaded{Mailbox: mb, Pass: prestage(1)})
			if err != nil {
				t.Error(err)
			}
			if res.Action.Kind == campaign.Verify {
				verifies.Add(1)
			}
		})
	}
	wg.Wait()
	d, _, err := s.Get(ctx, dom)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Loaded) != 2 || verifies.Load() != 1 {
		t.Errorf("loaded %v, verification asked %d times; want both, once", d.Loaded, verifies.Load())
	}
}

// racing is a bucket where another writer writes first, between this
// writer's read and its first write of a domain record: what a process
// that crashed after reading, or a second instance, leaves behind.
type racing struct {
	jetstream.KeyValue
	other func(d campaign.Domain) campaign.Domain
	raced atomic.Bool
}

func (r *racing) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if !r.raced.Swap(true) {
		e, err := r.KeyValue.Get(ctx, key)
		if err != nil {
			return 0, err
		}
		var d campaign.Domain
		if err := json.Unmarshal(e.Value(), &d); err != nil {
			return 0, err
		}
		b, err := json.Marshal(r.other(d))
		if err != nil {
			return 0, err
		}
		if _, err := r.KeyValue.Update(ctx, key, b, rev); err != nil {
			return 0, err
		}
	}
	return r.KeyValue.Update(ctx, key, value, rev)
}

func TestAWriteBetweenReadAndWriteConverges(t *testing.T) {
	stepped := func(f campaign.Fact) func(campaign.Domain) campaign.Domain {
		return func(d campaign.Domain) campaign.Domain {
			next, _, err := campaign.Step(d, f, t0)
			if err != nil {
				panic(err)
			}
			return next
		}
	}
	t.Run("the same fact written by another", func(t *testing.T) {
		kv := bucket(t)
		ctx := testContext(t)
		added(t, kv, campaign.OrderPrestage)
		s := campaign.NewStore(&racing{KeyValue: kv, other: stepped(campaign.Start{})})
		res, err := s.Apply(ctx, dom, campaign.Start{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Changed || res.Action.Kind != campaign.None || res.Domain.Phase != campaign.Provisioning {
			t.Errorf("= %+v, want provisioning, unchanged by this writer", res)
		}
	})
	t.Run("another fact written by another", func(t *testing.T) {
		kv := bucket(t)
		ctx := testContext(t)
		s := added(t, kv, campaign.OrderPrestage)
		if _, err := s.Apply(ctx, dom, campaign.Start{}); err != nil {
			t.Fatal(err)
		}
		rs := campaign.NewStore(&racing{KeyValue: kv, other: stepped(campaign.Pause{Reason: "by another"})})
		res, err := rs.Apply(ctx, dom, campaign.Provisioned{})
		if err != nil {
			t.Fatal(err)
		}
		d := res.Domain
		if !res.Changed || d.Phase != campaign.Paused || d.Stopped != campaign.Prestaging || d.Reason != "by another" || res.Action.Kind != campaign.None {
			t.Errorf("= %s stopped %s (%q), %+v; want paused in prestaging: both facts", d.Phase, d.Stopped, d.Reason, res.Action)
		}
	})
}

// campaignEvents are the events of a prestage-order cutover of newDomain.
func campaignEvents(t *testing.T) []*event.Event {
	t.Helper()
	var out []*event.Event
	add := func(o event.Outgoing) {
		e, err := o.Envelope("test", t0)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	add(event.ProvisionedDomain(event.DomainProvisionedData{Domain: dom, Mailboxes: 2}))
	for _, p := range []string{prestage(1), delta(1)} {
		if p == delta(1) {
			add(event.Switched(dom+".", event.DNSSwitchedData{Serial: 7, OldTTL: 300, OldTTLExpiresAt: switched.OldTTLExpiresAt, VerifiedAt: switched.At}))
		}
		for _, mb := range []string{mbA, mbB} {
			add(event.Queued(mb, p))
			add(event.Loaded(mb, event.LoadedData{Pass: p, Appended: 10, Bytes: 1000}))
			add(event.Verified(mb, event.VerifiedData{Pass: p, Messages: 10, Digest: "d"}))
		}
	}
	return out
}

func TestReplayingTheEventStreamAfterACrashConverges(t *testing.T) {
	kv := bucket(t)
	ctx := testContext(t)
	s := added(t, kv, campaign.OrderPrestage)
	clock := drainEnd
	s.Now = func() time.Time { return clock }
	events := campaignEvents(t)
	// The first run: start, then every event, ticking whenever told to wait.
	if _, err := s.Apply(ctx, dom, campaign.Start{}); err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		res, err := s.ApplyEvent(ctx, e)
		if err != nil {
			t.Fatalf("%s: %v", e.ID, err)
		}
		if res.Action.Kind == campaign.Wait {
			if _, err := s.Apply(ctx, dom, campaign.Tick{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	d, _, err := s.Get(ctx, dom)
	if err != nil || d.Phase != campaign.Done {
		t.Fatalf("after the run: %s, %v; want done", d.Phase, err)
	}
	rev := revision(t, kv, campaign.DomainKey(dom))
	// After a crash the orchestrator reads the stream from the start.
	for _, e := range events {
		res, err := campaign.NewStore(kv).ApplyEvent(ctx, e)
		if err != nil || res.Changed {
			t.Errorf("replayed %s: changed %v, err %v", e.ID, res.Changed, err)
		}
	}
	if got := revision(t, kv, campaign.DomainKey(dom)); got != rev {
		t.Errorf("replay wrote the domain %d times", got-rev)
	}
	boxes, err := s.Mailboxes(ctx, dom)
	if err != nil {
		t.Fatal(err)
	}
	if len(boxes) != 2 {
		t.Fatalf("mailboxes %+v", boxes)
	}
	for _, m := range boxes {
		if m.Phase != campaign.BoxVerified || m.Pass != delta(1) || m.Counts.Appended != 20 || m.Counts.Bytes != 2000 {
			t.Errorf("mailbox %s: %s in %s, counts %+v; want verified in the delta pass, both passes counted once", m.Mailbox, m.Phase, m.Pass, m.Counts)
		}
	}
}

func TestAfterACrashNextSaysTheActionOfThePhaseAgain(t *testing.T) {
	kv := bucket(t)
	ctx := testContext(t)
	s := added(t, kv, campaign.OrderSwitchFirst)
	for _, f := range []campaign.Fact{campaign.Start{}, campaign.Provisioned{}} {
		if _, err := s.Apply(ctx, dom, f); err != nil {
			t.Fatal(err)
		}
	}
	d, _, err := campaign.NewStore(kv).Get(ctx, dom)
	if err != nil {
		t.Fatal(err)
	}
	if act := campaign.Next(d); act.Kind != campaign.RequestSwitch {
		t.Errorf("next after a restart in %s: %+v, want the switch requested again", d.Phase, act)
	}
}

func TestStoreListsGetsAndKeepsADomainAddedTwice(t *testing.T) {
	kv := bucket(t)
	ctx := testContext(t)
	s := added(t, kv, campaign.OrderPrestage)
	if _, err := s.Apply(ctx, dom, campaign.Start{}); err != nil {
		t.Fatal(err)
	}
	again, ok, err := s.Add(ctx, newDomain(t, campaign.OrderPrestage, false))
	if err != nil || ok || again.Phase != campaign.Provisioning {
		t.Errorf("added again: %v, %s, %v; want the record under way kept", ok, again.Phase, err)
	}
	other, err := campaign.NewDomain("beta.test", []string{"x@beta.test"}, nil, "", 0, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Add(ctx, other); err != nil {
		t.Fatal(err)
	}
	for prefix, want := range map[string]int{"": 2, "acme": 1, "b": 1, "zz": 0} {
		got, err := s.List(ctx, prefix)
		if err != nil || len(got) != want {
			t.Errorf("List(%q) = %d domains, %v; want %d", prefix, len(got), err, want)
		}
	}
	if _, ok, err := s.Get(ctx, "nowhere.test"); ok || err != nil {
		t.Errorf("Get of an unknown domain: %v, %v", ok, err)
	}
	if _, err := s.Apply(ctx, "nowhere.test", campaign.Start{}); !errors.Is(err, campaign.ErrNoDomain) {
		t.Errorf("Apply to an unknown domain: %v", err)
	}
	e, _ := event.Loaded("z@nowhere.test", event.LoadedData{Pass: "p"}).Envelope("test", t0)
	if res, err := s.ApplyEvent(ctx, e); err != nil || res.Changed {
		t.Errorf("event of a domain outside the campaign: %+v, %v", res, err)
	}
	if _, err := s.Apply(ctx, dom, campaign.Pause{}); err != nil {
		t.Fatal(err)
	}
	var te *campaign.TransitionError
	if _, err := s.Apply(ctx, dom, campaign.Switched{At: t0}); !errors.As(err, &te) || te.From != campaign.Provisioning || te.To != campaign.Draining {
		t.Errorf("switched while paused in provisioning: %v, want refused from provisioning to draining", err)
	}
}

func TestAMailboxLoadedInAPassWhoseQueuedEventWasLostTakesThatPass(t *testing.T) {
	m := campaign.Mailbox{Mailbox: mbA, Domain: dom, Phase: campaign.BoxLoaded, Pass: "p1", Counted: []string{"p1"}}
	next, ok := campaign.StepMailbox(m, campaign.MailboxLoaded{Mailbox: mbA, Pass: "p2", Counts: campaign.Counts{Appended: 3}}, t0)
	if !ok || next.Pass != "p2" || next.Phase != campaign.BoxLoaded || next.Counts.Appended != 3 {
		t.Fatalf("after p2 loaded: %+v, %v", next, ok)
	}
	if v, ok := campaign.StepMailbox(next, campaign.MailboxVerified{Mailbox: mbA, Pass: "p2"}, t0); !ok || v.Phase != campaign.BoxVerified {
		t.Errorf("p2 verified: %+v, %v", v, ok)
	}
	// An old pass's loaded, replayed, changes nothing.
	if again, ok := campaign.StepMailbox(next, campaign.MailboxLoaded{Mailbox: mbA, Pass: "p1"}, t0); ok {
		t.Errorf("p1 replayed moved the record: %+v", again)
	}
	// While another pass copies, a loaded of a pass never seen does not
	// take it over (it counts).
	copying := campaign.Mailbox{Mailbox: mbA, Phase: campaign.BoxCopying, Pass: "p3", Counted: []string{"p1"}}
	if got, _ := campaign.StepMailbox(copying, campaign.MailboxLoaded{Mailbox: mbA, Pass: "p2"}, t0); got.Pass != "p3" || got.Phase != campaign.BoxCopying {
		t.Errorf("p2 loaded while p3 copies: %+v", got)
	}
}
