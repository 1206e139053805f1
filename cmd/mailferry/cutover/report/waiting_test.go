package report_test

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/cmd/mailferry/cutover/report"
	"github.com/mailferry/mailferry/shared/campaign"
)

// putDomain overwrites the campaign record of d.
func (f *fixture) putDomain(t *testing.T, d campaign.Domain) {
	t.Helper()
	raw, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.kv.Put(testContext(t), campaign.DomainKey(d.Domain), raw); err != nil {
		t.Fatal(err)
	}
}

func TestTheReportOfADoneDomainNamesTheMailboxesWaitingForTheirUser(t *testing.T) {
	f := newFixture(t, "", true)
	f.addDomain(t)
	d, _, err := f.store.Get(testContext(t), "acme.test")
	if err != nil {
		t.Fatal(err)
	}
	pass := campaign.PassID(d.Domain, campaign.PassDelta, 1)
	d.Phase, d.Stopped, d.Reason, d.Pass = campaign.Done, "", "", pass
	delete(d.Entered, campaign.Failed)
	d.Entered[campaign.Done] = t0.Add(4 * time.Hour)
	// bob's and zoë's users had not signed in when the delta pass ran;
	// zoë's did since, and her sign-in's pass copied her mailbox.
	d.Loaded, d.Verified, d.Waiting = []string{"anna@acme.test"}, []string{"anna@acme.test"}, []string{"bob@acme.test", "zoë@acme.test"}
	f.putDomain(t, d)
	waiting := campaign.MailboxFailed{Pass: pass, Reason: "extracting: no source password: waiting for its user to sign in on the change page", WaitingForUser: true}
	f.apply(t, "anna@acme.test", campaign.MailboxQueued{Mailbox: "anna@acme.test", Pass: pass},
		campaign.MailboxLoaded{Mailbox: "anna@acme.test", Pass: pass, Counts: campaign.Counts{Appended: 3, Bytes: 300}},
		campaign.MailboxVerified{Mailbox: "anna@acme.test", Pass: pass})
	bob, zoe := waiting, waiting
	bob.Mailbox, zoe.Mailbox = "bob@acme.test", "zoë@acme.test"
	f.apply(t, "bob@acme.test", campaign.MailboxQueued{Mailbox: "bob@acme.test", Pass: pass}, bob)
	f.apply(t, "zoë@acme.test", campaign.MailboxQueued{Mailbox: "zoë@acme.test", Pass: pass}, zoe,
		campaign.MailboxQueued{Mailbox: "zoë@acme.test", Pass: "signin-1"},
		campaign.MailboxLoaded{Mailbox: "zoë@acme.test", Pass: "signin-1", Counts: campaign.Counts{Appended: 2, Bytes: 200}})

	r, err := report.Gather(testContext(t), f.cfg, f.b, f.store, "acme.test")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.WaitingForUser, []string{"bob@acme.test"}) || r.Phase != campaign.Done {
		t.Fatalf("waiting for their user %q in %s; want bob alone in a done domain", r.WaitingForUser, r.Phase)
	}
	for _, m := range r.Mailboxes {
		if m.WaitingForUser != (m.Mailbox == "bob@acme.test") {
			t.Errorf("%s: waiting for its user %v", m.Mailbox, m.WaitingForUser)
		}
	}
	raw, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"waiting_for_user":["bob@acme.test"]`) || !strings.Contains(string(raw), `"mailbox":"bob@acme.test","phase":"failed","reason":"extracting: no source password: waiting for its user to sign in on the change page","waiting_for_user":true`) {
		t.Errorf("JSON lacks the waiting mailbox:\n%s", raw)
	}
	var page bytes.Buffer
	if err := r.HTML(&page); err != nil {
		t.Fatal(err)
	}
	checkPage(t, page.Bytes(), []string{
		"Completed",
		"Waiting for their user 1: copied when they sign in (listed below)",
		"bob@acme.test waiting for their user: copied when they sign in",
		"zoë@acme.test copied 2",
	}, []string{"problem", "extracting: no source password"})
}
