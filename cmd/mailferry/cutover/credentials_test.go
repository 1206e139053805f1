package cutover

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/campaign"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/sourcecred"
	"github.com/mailferry/mailferry/shared/testenv/configtest"
)

// handedOver opens an embedded broker whose credentials bucket holds a
// password handed over for each of mailboxes.
func handedOver(t *testing.T, mailboxes ...string) *broker.Broker {
	t.Helper()
	cfg := configtest.Parse(t, "nats: {data_dir: nats}\n")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := broker.Connect(ctx, cfg.NATS, "cutover-test", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	if err := b.Use(ctx, broker.Needs{Writes: []string{broker.BucketSourceCredentials}}); err != nil {
		t.Fatal(err)
	}
	kv, err := sourcecred.Bind(ctx, b.JS)
	if err != nil {
		t.Fatal(err)
	}
	key, err := sourcecred.ParseKey([]byte(sourcecred.NewKeyText()))
	if err != nil {
		t.Fatal(err)
	}
	for _, mb := range mailboxes {
		if _, err := (&sourcecred.Store{KV: kv, Key: key}).HandOff(ctx, mb, "pw of "+mb); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func TestADoneDomainForgetsThePasswordsItsUsersHandedOver(t *testing.T) {
	b := handedOver(t, "ann@alpha.test", "ben@alpha.test", "cy@beta.test")
	ctx := context.Background()
	tm := &term{o: &Orchestrator{Broker: b}, log: zerolog.Nop()}
	if err := tm.forgetCredentials(ctx, campaign.Domain{Domain: "alpha.test", Mailboxes: []string{"ann@alpha.test", "ben@alpha.test", "dee@alpha.test"}}); err != nil {
		t.Fatal(err)
	}
	kv, err := sourcecred.Bind(ctx, b.JS)
	if err != nil {
		t.Fatal(err)
	}
	for mb, want := range map[string]bool{"ann@alpha.test": false, "ben@alpha.test": false, "cy@beta.test": true} {
		if has, err := sourcecred.Has(ctx, kv, mb); err != nil || has != want {
			t.Errorf("%s: has a credential %v (%v), want %v", mb, has, err, want)
		}
	}
}

func TestCutoverStatusNamesTheMailboxesWaitingForTheirUser(t *testing.T) {
	b := handedOver(t, "ben@alpha.test")
	cfg := configtest.Parse(t, "nats: {data_dir: nats}\nsource: {address: 127.0.0.1:1, tls: none, auth: user}\n")
	boxes := []job.Mailbox{
		{SourceUser: "ann@alpha.test", TargetUser: "ann@alpha.test"},                                     // waiting
		{SourceUser: "ben@alpha.test", TargetUser: "ben@alpha.test"},                                     // signed in
		{SourceUser: "cy@alpha.test", TargetUser: "cy@alpha.test", SourcePasswordFile: "/secrets/cy.pw"}, // the operator's
		{SourceUser: "dee@beta.test", TargetUser: "dee@beta.test"},                                       // loaded, credential gone
	}
	st := &Status{Domains: []DomainStatus{
		{Domain: "alpha.test", Phase: campaign.Prestaging, Mailboxes: []MailboxStatus{
			{Mailbox: "ann@alpha.test", Phase: campaign.BoxFailed}, {Mailbox: "ben@alpha.test", Phase: campaign.BoxCopying}, {Mailbox: "cy@alpha.test", Phase: campaign.BoxCopying}}},
		{Domain: "beta.test", Phase: campaign.Delta, Mailboxes: []MailboxStatus{{Mailbox: "dee@beta.test", Phase: campaign.BoxLoaded}}},
	}, Totals: map[campaign.Phase]int{campaign.Prestaging: 1, campaign.Delta: 1}}
	if err := st.MarkWaiting(context.Background(), b.JS, cfg, boxes); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.WaitingForUser, []string{"ann@alpha.test"}) || !st.Domains[0].Mailboxes[0].WaitingForUser {
		t.Fatalf("waiting %q; want ann@alpha.test alone", st.WaitingForUser)
	}
	var out bytes.Buffer
	st.WriteText(&out)
	for _, want := range []string{"failed (waiting for its user's sign-in)", "waiting for their user: 1 (ann@alpha.test)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("cutover status lacks %q:\n%s", want, out.String())
		}
	}
}

func TestCutoverStatusNamesTheMailboxesADoneDomainLeftWaitingForTheirUser(t *testing.T) {
	b := handedOver(t)
	ctx := context.Background()
	if err := b.Use(ctx, campaign.Needs); err != nil {
		t.Fatal(err)
	}
	store, err := campaign.Open(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	d, err := campaign.NewDomain("alpha.test", []string{"ann@alpha.test", "ben@alpha.test"}, nil, campaign.OrderPrestage, 0, &campaign.DNS{SkipCode: "external"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.Add(ctx, d); err != nil {
		t.Fatal(err)
	}
	pass := campaign.PassID(d.Domain, campaign.PassPrestage, 1)
	ann := campaign.MailboxFailed{Mailbox: "ann@alpha.test", Pass: pass, Reason: "extracting: no source password", WaitingForUser: true}
	for _, f := range []campaign.Fact{campaign.Start{}, campaign.Provisioned{}, ann,
		campaign.MailboxLoaded{Mailbox: "ben@alpha.test", Pass: pass}, campaign.MailboxVerified{Mailbox: "ben@alpha.test", Pass: pass}} {
		if mb, ok := f.(campaign.MailboxFailed); ok {
			if _, _, err := store.ApplyMailbox(ctx, mb.Mailbox, f); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := store.Apply(ctx, d.Domain, f); err != nil {
			t.Fatal(err)
		}
	}
	st, err := ReadStatus(ctx, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ds := st.Domains[0]; ds.Phase != campaign.Done || !slices.Equal(ds.WaitingForUser, []string{"ann@alpha.test"}) || !slices.Equal(st.WaitingForUser, ds.WaitingForUser) {
		t.Fatalf("domain %s waiting %q (all %q); want done, ann waiting", ds.Phase, ds.WaitingForUser, st.WaitingForUser)
	}
	var out bytes.Buffer
	st.WriteText(&out)
	for _, want := range []string{"done; waiting for their user (copied when they sign in): ann@alpha.test",
		"(waiting for its user's sign-in)", "waiting for their user: 1 (ann@alpha.test): copied when they sign in"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("cutover status lacks %q:\n%s", want, out.String())
		}
	}
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"waiting_for_user":["ann@alpha.test"],"updated"`) {
		t.Errorf("JSON lacks the domain's waiting mailbox: %s", raw)
	}

	// With the inventory: still waiting while ann has not signed in, no
	// more once she has (her sign-in's pass copies the mailbox).
	cfg := configtest.Parse(t, "nats: {data_dir: nats}\nsource: {address: 127.0.0.1:1, tls: none, auth: user}\n")
	boxes := []job.Mailbox{{SourceUser: "ann@alpha.test", TargetUser: "ann@alpha.test"}, {SourceUser: "ben@alpha.test", TargetUser: "ben@alpha.test"}}
	if err := st.MarkWaiting(ctx, b.JS, cfg, boxes); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.WaitingForUser, []string{"ann@alpha.test"}) {
		t.Fatalf("waiting with the inventory %q, want ann", st.WaitingForUser)
	}
	kv, err := sourcecred.Bind(ctx, b.JS)
	if err != nil {
		t.Fatal(err)
	}
	key, err := sourcecred.ParseKey([]byte(sourcecred.NewKeyText()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&sourcecred.Store{KV: kv, Key: key}).HandOff(ctx, "ann@alpha.test", "pw"); err != nil {
		t.Fatal(err)
	}
	if err := st.MarkWaiting(ctx, b.JS, cfg, boxes); err != nil {
		t.Fatal(err)
	}
	if len(st.WaitingForUser) != 0 || len(st.Domains[0].WaitingForUser) != 0 {
		t.Errorf("waiting after ann signed in %q, want none", st.WaitingForUser)
	}
}
