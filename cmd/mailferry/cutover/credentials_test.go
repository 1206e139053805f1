package cutover

import (
	"bytes"
	"context"
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
