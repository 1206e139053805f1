package campaign_test

import (
	"testing"
	"time"

	"github.com/mailferry/mailferry/shared/campaign"
	"github.com/mailferry/mailferry/shared/event"
)

// sent is when the events of these tests were sent: after the domains
// entered their phases, so a failure is not taken for a stale one.
var sent = t0.Add(time.Hour)

// fact is the fact FromEvent reads from o, sent at sent.
func fact(t *testing.T, o event.Outgoing) (campaign.Fact, string) {
	t.Helper()
	e, err := o.Envelope("test", sent)
	if err != nil {
		t.Fatal(err)
	}
	f, domain, err := campaign.FromEvent(e, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f, domain
}

func TestAVerificationWithDifferencesFailsTheMailboxAndItsDomain(t *testing.T) {
	tests := []struct {
		name  string
		data  event.VerifiedData
		want  campaign.Fact
		phase campaign.Phase // the domain's after it in prestaging
	}{
		{"no differences", event.VerifiedData{Pass: prestage(1), Messages: 4},
			campaign.MailboxVerified{Mailbox: mbB, Pass: prestage(1)}, campaign.Switching},
		{"differences, some missing", event.VerifiedData{Pass: prestage(1), Messages: 4, Differences: 3, Missing: 2},
			campaign.MailboxFailed{Mailbox: mbB, Pass: prestage(1), Reason: "verification: 3 differences (2 missing)", At: sent}, campaign.Failed},
		{"differences, none missing", event.VerifiedData{Pass: prestage(1), Messages: 4, Differences: 1},
			campaign.MailboxFailed{Mailbox: mbB, Pass: prestage(1), Reason: "verification: 1 differences (0 missing)", At: sent}, campaign.Failed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, domain := fact(t, event.Verified(mbB, tt.data))
			if f != tt.want || domain != dom {
				t.Fatalf("FromEvent = %+v, %q; want %+v, %q", f, domain, tt.want, dom)
			}
			// The domain's other mailbox verified: this one decides.
			d := walk(t, to(t, campaign.OrderPrestage, campaign.Prestaging), []step{
				{fact: campaign.MailboxVerified{Mailbox: mbA, Pass: prestage(1)}, phase: campaign.Prestaging, act: none()},
			})
			next, _, err := campaign.Step(d, f, t0.Add(time.Hour))
			if err != nil || next.Phase != tt.phase {
				t.Fatalf("after it: phase %s, err %v; want %s", next.Phase, err, tt.phase)
			}
			if next.Phase == campaign.Failed && (next.Stopped != campaign.Prestaging || next.Reason != "mailbox b@acme.test: "+tt.want.(campaign.MailboxFailed).Reason) {
				t.Errorf("failed: stopped in %s, reason %q; want prestaging and the differences counted", next.Stopped, next.Reason)
			}
			m, _ := campaign.StepMailbox(campaign.Mailbox{Mailbox: mbB, Pass: prestage(1), Phase: campaign.BoxLoaded}, f, t0)
			if want := map[bool]campaign.MailboxPhase{true: campaign.BoxFailed, false: campaign.BoxVerified}[tt.phase == campaign.Failed]; m.Phase != want {
				t.Errorf("mailbox record: phase %s, want %s", m.Phase, want)
			}
		})
	}
}

func TestAMailboxFailedByItsVerificationVerifiesOnceTheDifferencesAreAccepted(t *testing.T) {
	d := to(t, campaign.OrderPrestage, campaign.Verifying)
	failed, _ := fact(t, event.Verified(mbB, event.VerifiedData{Pass: delta(1), Messages: 4, Digest: "a", Differences: 1, Missing: 1}))
	clean, _ := fact(t, event.Verified(mbB, event.VerifiedData{Pass: delta(1), Messages: 4, Digest: "b"}))
	walk(t, d, []step{
		{fact: campaign.MailboxVerified{Mailbox: mbA, Pass: delta(1)}, phase: campaign.Verifying, act: none()},
		{fact: failed, phase: campaign.Failed, act: none()},
		{fact: campaign.Retry{}, phase: campaign.Verifying, act: verify(campaign.PassDelta, delta(1))},
		{fact: campaign.MailboxVerified{Mailbox: mbA, Pass: delta(1)}, phase: campaign.Verifying, act: none()},
		{fact: clean, phase: campaign.Done, act: none()},
	})
	m, _ := campaign.StepMailbox(campaign.Mailbox{Mailbox: mbB, Pass: delta(1), Phase: campaign.BoxLoaded}, failed, t0)
	if m, ok := campaign.StepMailbox(m, clean, t0); !ok || m.Phase != campaign.BoxVerified || m.Reason != "" {
		t.Errorf("mailbox record after the clean verification: %+v, changed %v; want verified, no reason", m, ok)
	}
}
