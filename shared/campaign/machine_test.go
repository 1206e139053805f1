package campaign_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/shared/campaign"
	"github.com/mailferry/mailferry/shared/event"
)

const (
	dom = "acme.test"
	mbA = "a@acme.test"
	mbB = "b@acme.test"
)

var t0 = time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)

func newDomain(t *testing.T, order campaign.Order, skip bool) campaign.Domain {
	t.Helper()
	var s *campaign.DNS
	if skip {
		s = &campaign.DNS{SkipCode: "external", SkipReason: "MX at mx.elsewhere.example."}
	}
	d, err := campaign.NewDomain("ACME.test.", []string{mbB, mbA}, nil, order, 0, s, t0)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func prestage(attempt int) string { return campaign.PassID(dom, campaign.PassPrestage, attempt) }
func delta(attempt int) string    { return campaign.PassID(dom, campaign.PassDelta, attempt) }

// switched is the switch every walk uses: old TTL 300 s, expired at
// t0+1h05m.
var switched = campaign.Switched{At: t0.Add(time.Hour), Serial: 7, OldTTL: 300, OldTTLExpiresAt: t0.Add(time.Hour + 5*time.Minute)}

// drainEnd is switched's old TTL expiry plus the default grace.
var drainEnd = switched.OldTTLExpiresAt.Add(campaign.DefaultDeltaGrace)

// step is one fact of a walk and what it must lead to.
type step struct {
	fact  campaign.Fact
	at    time.Time
	phase campaign.Phase
	act   campaign.Action
}

func none() campaign.Action { return campaign.Action{Kind: campaign.None} }

func enqueue(kind campaign.PassKind, pass string) campaign.Action {
	return campaign.Action{Kind: campaign.EnqueuePass, PassKind: kind, Pass: pass}
}

func verify(kind campaign.PassKind, pass string) campaign.Action {
	return campaign.Action{Kind: campaign.Verify, PassKind: kind, Pass: pass}
}

// walk applies every step to d, checking the phase and the action after
// it, and that the same fact applied once more changes nothing.
func walk(t *testing.T, d campaign.Domain, steps []step) campaign.Domain {
	t.Helper()
	for i, s := range steps {
		at := s.at
		if at.IsZero() {
			at = t0.Add(time.Duration(i) * time.Minute)
		}
		next, act, err := campaign.Step(d, s.fact, at)
		if err != nil {
			t.Fatalf("step %d (%s in %s): %v", i, s.fact.Name(), d.Phase, err)
		}
		if next.Phase != s.phase || act != s.act {
			t.Fatalf("step %d (%s in %s): phase %s, action %+v; want %s, %+v", i, s.fact.Name(), d.Phase, next.Phase, act, s.phase, s.act)
		}
		again, act2, err := campaign.Step(next, s.fact, at.Add(time.Second))
		if err != nil || act2.Kind != campaign.None || !again.Updated.Equal(next.Updated) || again.Phase != next.Phase {
			t.Fatalf("step %d (%s) applied twice: phase %s, action %+v, err %v; want no change", i, s.fact.Name(), again.Phase, act2, err)
		}
		d = next
	}
	return d
}

func TestPrestageOrderCopiesAndVerifiesThenSwitchesDrainsAndCopiesOnceMore(t *testing.T) {
	d := walk(t, newDomain(t, campaign.OrderPrestage, false), []step{
		{fact: campaign.Start{}, phase: campaign.Provisioning, act: campaign.Action{Kind: campaign.ProvisionDomain}},
		{fact: campaign.Provisioned{}, phase: campaign.Prestaging, act: enqueue(campaign.PassPrestage, prestage(1))},
		{fact: campaign.MailboxQueued{Mailbox: mbA, Pass: prestage(1)}, phase: campaign.Prestaging, act: none()},
		{fact: campaign.MailboxLoaded{Mailbox: mbA, Pass: prestage(1)}, phase: campaign.Prestaging, act: none()},
		{fact: campaign.MailboxLoaded{Mailbox: mbB, Pass: prestage(1)}, phase: campaign.Prestaging, act: verify(campaign.PassPrestage, prestage(1))},
		{fact: campaign.MailboxVerified{Mailbox: mbA, Pass: prestage(1)}, phase: campaign.Prestaging, act: none()},
		{fact: campaign.MailboxVerified{Mailbox: mbB, Pass: prestage(1)}, phase: campaign.Switching, act: campaign.Action{Kind: campaign.RequestSwitch}},
		{fact: switched, phase: campaign.Draining, act: campaign.Action{Kind: campaign.Wait, Until: drainEnd}},
		{fact: campaign.Tick{}, at: drainEnd, phase: campaign.Delta, act: enqueue(campaign.PassDelta, delta(1))},
		{fact: campaign.MailboxLoaded{Mailbox: mbB, Pass: delta(1)}, phase: campaign.Delta, act: none()},
		{fact: campaign.MailboxLoaded{Mailbox: mbA, Pass: delta(1)}, phase: campaign.Verifying, act: verify(campaign.PassDelta, delta(1))},
		{fact: campaign.MailboxVerified{Mailbox: mbA, Pass: delta(1)}, phase: campaign.Verifying, act: none()},
		{fact: campaign.MailboxVerified{Mailbox: mbB, Pass: delta(1)}, phase: campaign.Done, act: none()},
	})
	if d.DNS.Serial != 7 || d.DNS.OldTTL != 300 || !d.DNS.SwitchedAt.Equal(switched.At) {
		t.Errorf("dns = %+v, want the switch's serial, old TTL and time", d.DNS)
	}
	if len(d.Passes) != 2 || d.Passes[0].ID != prestage(1) || d.Passes[1].ID != delta(1) {
		t.Errorf("passes = %+v, want the prestage then the delta pass", d.Passes)
	}
	for _, p := range []campaign.Phase{campaign.Queued, campaign.Provisioning, campaign.Prestaging, campaign.Switching, campaign.Draining, campaign.Delta, campaign.Verifying, campaign.Done} {
		if d.Entered[p].IsZero() {
			t.Errorf("no time for entering %s", p)
		}
	}
}

func TestSwitchFirstOrderSwitchesThenCopies(t *testing.T) {
	walk(t, newDomain(t, campaign.OrderSwitchFirst, false), []step{
		{fact: campaign.Start{}, phase: campaign.Provisioning, act: campaign.Action{Kind: campaign.ProvisionDomain}},
		{fact: campaign.Provisioned{}, phase: campaign.Switching, act: campaign.Action{Kind: campaign.RequestSwitch}},
		{fact: switched, phase: campaign.Prestaging, act: enqueue(campaign.PassPrestage, prestage(1))},
		{fact: campaign.MailboxLoaded{Mailbox: mbA, Pass: prestage(1)}, phase: campaign.Prestaging, act: none()},
		{fact: campaign.MailboxLoaded{Mailbox: mbB, Pass: prestage(1)}, phase: campaign.Draining, act: campaign.Action{Kind: campaign.Wait, Until: drainEnd}},
		{fact: campaign.Tick{}, at: drainEnd.Add(time.Minute), phase: campaign.Delta, act: enqueue(campaign.PassDelta, delta(1))},
		{fact: campaign.MailboxVerified{Mailbox: mbA, Pass: delta(1)}, phase: campaign.Delta, act: none()},
		{fact: campaign.MailboxLoaded{Mailbox: mbB, Pass: delta(1)}, phase: campaign.Verifying, act: verify(campaign.PassDelta, delta(1))},
		{fact: campaign.MailboxVerified{Mailbox: mbB, Pass: delta(1)}, phase: campaign.Done, act: none()},
	})
}

func TestADomainWithDNSSkippedIsCopiedVerifiedAndDoneWithoutSwitchOrDrain(t *testing.T) {
	copyAndVerify := func(to campaign.Phase, act campaign.Action) []step {
		return []step{
			{fact: campaign.MailboxLoaded{Mailbox: mbA, Pass: prestage(1)}, phase: campaign.Prestaging, act: none()},
			{fact: campaign.MailboxLoaded{Mailbox: mbB, Pass: prestage(1)}, phase: campaign.Prestaging, act: verify(campaign.PassPrestage, prestage(1))},
			{fact: campaign.MailboxVerified{Mailbox: mbA, Pass: prestage(1)}, phase: campaign.Prestaging, act: none()},
			{fact: campaign.MailboxVerified{Mailbox: mbB, Pass: prestage(1)}, phase: to, act: act},
		}
	}
	skipped := campaign.SwitchSkipped{Code: "external", Reason: "MX at mx.elsewhere.example."}
	cases := []struct {
		name  string
		order campaign.Order
		plan  bool // the plan knew it
		steps []step
	}{
		{"prestage, known from the plan", campaign.OrderPrestage, true, append([]step{
			{fact: campaign.Start{}, phase: campaign.Provisioning, act: campaign.Action{Kind: campaign.ProvisionDomain}},
			{fact: campaign.Provisioned{}, phase: campaign.Prestaging, act: enqueue(campaign.PassPrestage, prestage(1))},
		}, copyAndVerify(campaign.Done, none())...)},
		{"prestage, told by dnsctl", campaign.OrderPrestage, false, append(append([]step{
			{fact: campaign.Start{}, phase: campaign.Provisioning, act: campaign.Action{Kind: campaign.ProvisionDomain}},
			{fact: campaign.Provisioned{}, phase: campaign.Prestaging, act: enqueue(campaign.PassPrestage, prestage(1))},
		}, copyAndVerify(campaign.Switching, campaign.Action{Kind: campaign.RequestSwitch})...),
			step{fact: skipped, phase: campaign.Done, act: none()})},
		{"switch first, known from the plan", campaign.OrderSwitchFirst, true, append([]step{
			{fact: campaign.Start{}, phase: campaign.Provisioning, act: campaign.Action{Kind: campaign.ProvisionDomain}},
			{fact: campaign.Provisioned{}, phase: campaign.Prestaging, act: enqueue(campaign.PassPrestage, prestage(1))},
		}, copyAndVerify(campaign.Done, none())...)},
		{"switch first, told by dnsctl", campaign.OrderSwitchFirst, false, append([]step{
			{fact: campaign.Start{}, phase: campaign.Provisioning, act: campaign.Action{Kind: campaign.ProvisionDomain}},
			{fact: campaign.Provisioned{}, phase: campaign.Switching, act: campaign.Action{Kind: campaign.RequestSwitch}},
			{fact: skipped, phase: campaign.Prestaging, act: enqueue(campaign.PassPrestage, prestage(1))},
		}, copyAndVerify(campaign.Done, none())...)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := walk(t, newDomain(t, c.order, c.plan), c.steps)
			if !d.DNS.Skipped || d.DNS.SkipCode != "external" || d.DNS.SkipReason == "" {
				t.Errorf("dns = %+v, want skipped with its code and reason", d.DNS)
			}
			for _, p := range []campaign.Phase{campaign.Draining, campaign.Delta, campaign.Verifying} {
				if !d.Entered[p].IsZero() {
					t.Errorf("entered %s", p)
				}
			}
			if len(d.Passes) != 1 {
				t.Errorf("passes %+v, want the prestage pass only", d.Passes)
			}
		})
	}
}

func TestASkipThatNeedsAPersonFailsTheDomainInSwitching(t *testing.T) {
	d := walk(t, newDomain(t, campaign.OrderSwitchFirst, false), []step{
		{fact: campaign.Start{}, phase: campaign.Provisioning, act: campaign.Action{Kind: campaign.ProvisionDomain}},
		{fact: campaign.Provisioned{}, phase: campaign.Switching, act: campaign.Action{Kind: campaign.RequestSwitch}},
		{fact: campaign.SwitchSkipped{Code: "mixed", Reason: "legacy and other MX together"}, phase: campaign.Failed, act: none()},
		{fact: campaign.Retry{}, phase: campaign.Switching, act: campaign.Action{Kind: campaign.RequestSwitch}},
	})
	if d.DNS.Skipped || d.Attempt != 2 {
		t.Errorf("dns %+v attempt %d, want not skipped, attempt 2", d.DNS, d.Attempt)
	}
}

// to drives a fresh domain of order to phase p by the facts of a walk.
func to(t *testing.T, order campaign.Order, p campaign.Phase) campaign.Domain {
	t.Helper()
	facts := map[campaign.Order][]campaign.Fact{
		campaign.OrderPrestage: {campaign.Start{}, campaign.Provisioned{},
			campaign.MailboxVerified{Mailbox: mbA, Pass: prestage(1)}, campaign.MailboxVerified{Mailbox: mbB, Pass: prestage(1)},
			switched, campaign.Tick{},
			campaign.MailboxLoaded{Mailbox: mbA, Pass: delta(1)}, campaign.MailboxLoaded{Mailbox: mbB, Pass: delta(1)},
			campaign.MailboxVerified{Mailbox: mbA, Pass: delta(1)}, campaign.MailboxVerified{Mailbox: mbB, Pass: delta(1)}},
		campaign.OrderSwitchFirst: {campaign.Start{}, campaign.Provisioned{}, switched,
			campaign.MailboxLoaded{Mailbox: mbA, Pass: prestage(1)}, campaign.MailboxLoaded{Mailbox: mbB, Pass: prestage(1)},
			campaign.Tick{},
			campaign.MailboxLoaded{Mailbox: mbA, Pass: delta(1)}, campaign.MailboxLoaded{Mailbox: mbB, Pass: delta(1)},
			campaign.MailboxVerified{Mailbox: mbA, Pass: delta(1)}, campaign.MailboxVerified{Mailbox: mbB, Pass: delta(1)}},
	}[order]
	d := newDomain(t, order, false)
	for _, f := range facts {
		if d.Phase == p {
			return d
		}
		at := t0.Add(time.Minute)
		if _, ok := f.(campaign.Tick); ok {
			at = drainEnd
		}
		next, _, err := campaign.Step(d, f, at)
		if err != nil {
			t.Fatalf("to %s: %s in %s: %v", p, f.Name(), d.Phase, err)
		}
		d = next
	}
	if d.Phase != p {
		t.Fatalf("to %s: ended in %s", p, d.Phase)
	}
	return d
}

var running = []campaign.Phase{campaign.Queued, campaign.Provisioning, campaign.Prestaging, campaign.Switching, campaign.Draining, campaign.Delta, campaign.Verifying}

func TestPauseKeepsThePhaseAndResumeReturnsThereWithItsAction(t *testing.T) {
	for _, order := range []campaign.Order{campaign.OrderPrestage, campaign.OrderSwitchFirst} {
		for _, p := range running {
			t.Run(string(order)+"/"+string(p), func(t *testing.T) {
				d := to(t, order, p)
				want := campaign.Next(d)
				paused, act, err := campaign.Step(d, campaign.Pause{Reason: "customer asked"}, t0.Add(2*time.Hour))
				if err != nil || paused.Phase != campaign.Paused || paused.Stopped != p || paused.Reason != "customer asked" || act.Kind != campaign.None {
					t.Fatalf("pause: %s stopped %s (%q), action %+v, err %v", paused.Phase, paused.Stopped, paused.Reason, act, err)
				}
				if campaign.Next(paused).Kind != campaign.None {
					t.Errorf("a paused domain calls for %+v", campaign.Next(paused))
				}
				for _, f := range []campaign.Fact{campaign.Pause{Reason: "again"}, campaign.Start{}, campaign.Tick{}} {
					if again, _, err := campaign.Step(paused, f, drainEnd.Add(time.Hour)); err != nil || again.Stopped != p || again.Reason != "customer asked" || !again.Updated.Equal(paused.Updated) {
						t.Errorf("%s while paused changed it: stopped %s, err %v", f.Name(), again.Stopped, err)
					}
				}
				resumed, act, err := campaign.Step(paused, campaign.Resume{}, t0.Add(3*time.Hour))
				if err != nil || resumed.Phase != p || resumed.Stopped != "" || resumed.Reason != "" || act != want {
					t.Fatalf("resume: %s, action %+v, err %v; want %s, %+v", resumed.Phase, act, err, p, want)
				}
				again, act, err := campaign.Step(resumed, campaign.Resume{}, t0.Add(4*time.Hour))
				if err != nil || again.Phase != p || act.Kind != campaign.None {
					t.Errorf("second resume: %s, %+v, %v; want no change", again.Phase, act, err)
				}
			})
		}
	}
}

func TestWorkUnderWayWhilePausedMovesTheKeptPhase(t *testing.T) {
	d := to(t, campaign.OrderPrestage, campaign.Prestaging)
	d, _, _ = campaign.Step(d, campaign.Pause{Reason: "hold"}, t0)
	for _, f := range []campaign.Fact{
		campaign.MailboxVerified{Mailbox: mbA, Pass: prestage(1)},
		campaign.MailboxVerified{Mailbox: mbB, Pass: prestage(1)},
	} {
		next, act, err := campaign.Step(d, f, t0)
		if err != nil || act.Kind != campaign.None {
			t.Fatalf("%s while paused: %+v, %v", f.Name(), act, err)
		}
		d = next
	}
	if d.Phase != campaign.Paused || d.Stopped != campaign.Switching {
		t.Fatalf("after the copy finished while paused: %s, stopped %s; want paused in switching", d.Phase, d.Stopped)
	}
	d, act, err := campaign.Step(d, campaign.Resume{}, t0)
	if err != nil || d.Phase != campaign.Switching || act.Kind != campaign.RequestSwitch {
		t.Fatalf("resume: %s, %+v, %v; want switching and the switch requested", d.Phase, act, err)
	}

	d = to(t, campaign.OrderPrestage, campaign.Delta)
	d, _, _ = campaign.Step(d, campaign.Pause{}, t0)
	d, _, err = campaign.Step(d, campaign.MailboxFailed{Mailbox: mbA, Pass: delta(1), Reason: "loading: quota"}, t0)
	if err != nil || d.Phase != campaign.Failed || d.Stopped != campaign.Delta || !strings.Contains(d.Reason, "quota") {
		t.Fatalf("failure while paused: %s stopped %s (%q), %v; want failed in delta", d.Phase, d.Stopped, d.Reason, err)
	}
}

func TestFailedKeepsPhaseAndReasonAndRetryReentersIt(t *testing.T) {
	t.Run("a mailbox fails the prestage pass", func(t *testing.T) {
		d := to(t, campaign.OrderPrestage, campaign.Prestaging)
		d = walk(t, d, []step{
			{fact: campaign.MailboxLoaded{Mailbox: mbA, Pass: prestage(1)}, phase: campaign.Prestaging, act: none()},
			{fact: campaign.MailboxFailed{Mailbox: mbB, Pass: prestage(1), Reason: "extracting: login refused"}, phase: campaign.Failed, act: none()},
			{fact: campaign.MailboxLoaded{Mailbox: mbB, Pass: prestage(1)}, phase: campaign.Failed, act: none()},
			{fact: campaign.Resume{}, phase: campaign.Failed, act: none()},
		})
		if d.Stopped != campaign.Prestaging || d.Reason != "mailbox b@acme.test: extracting: login refused" {
			t.Fatalf("failed: stopped %s, reason %q", d.Stopped, d.Reason)
		}
		d = walk(t, d, []step{
			{fact: campaign.Retry{}, phase: campaign.Prestaging, act: enqueue(campaign.PassPrestage, prestage(2))},
			{fact: campaign.MailboxVerified{Mailbox: mbA, Pass: prestage(1)}, phase: campaign.Prestaging, act: none()},
			{fact: campaign.MailboxVerified{Mailbox: mbA, Pass: prestage(2)}, phase: campaign.Prestaging, act: none()},
			{fact: campaign.MailboxVerified{Mailbox: mbB, Pass: prestage(2)}, phase: campaign.Switching, act: campaign.Action{Kind: campaign.RequestSwitch}},
		})
		if d.Attempt != 2 || len(d.Passes) != 2 || d.Reason != "" {
			t.Errorf("attempt %d, passes %+v, reason %q; want 2, both passes, none", d.Attempt, d.Passes, d.Reason)
		}
	})
	t.Run("the switch fails", func(t *testing.T) {
		d := to(t, campaign.OrderPrestage, campaign.Switching)
		walk(t, d, []step{
			{fact: campaign.SwitchFailed{Phase: "verify", Reason: "secondary serves serial 6"}, phase: campaign.Failed, act: none()},
			{fact: campaign.Retry{}, phase: campaign.Switching, act: campaign.Action{Kind: campaign.RequestSwitch}},
			{fact: switched, phase: campaign.Draining, act: campaign.Action{Kind: campaign.Wait, Until: drainEnd}},
		})
	})
	t.Run("aborted while draining", func(t *testing.T) {
		d := to(t, campaign.OrderSwitchFirst, campaign.Draining)
		d = walk(t, d, []step{
			{fact: campaign.Abort{Reason: "operator"}, phase: campaign.Failed, act: none()},
		})
		if d.Stopped != campaign.Draining || d.Reason != "aborted: operator" {
			t.Fatalf("aborted: stopped %s, reason %q", d.Stopped, d.Reason)
		}
		walk(t, d, []step{{fact: campaign.Retry{}, phase: campaign.Draining, act: campaign.Action{Kind: campaign.Wait, Until: drainEnd}}})
	})
	t.Run("verification fails", func(t *testing.T) {
		d := to(t, campaign.OrderPrestage, campaign.Verifying)
		walk(t, d, []step{
			{fact: campaign.MailboxVerified{Mailbox: mbA, Pass: delta(1)}, phase: campaign.Verifying, act: none()},
			{fact: campaign.MailboxFailed{Mailbox: mbB, Pass: delta(1), Reason: "verify: 2 missing"}, phase: campaign.Failed, act: none()},
			{fact: campaign.Retry{}, phase: campaign.Verifying, act: verify(campaign.PassDelta, delta(1))},
			{fact: campaign.MailboxVerified{Mailbox: mbA, Pass: delta(1)}, phase: campaign.Verifying, act: none()},
			{fact: campaign.MailboxVerified{Mailbox: mbB, Pass: delta(1)}, phase: campaign.Done, act: none()},
		})
	})
}

func TestDrainingWaitsExactlyUntilTheOldTTLExpiredPlusTheGrace(t *testing.T) {
	cases := []struct {
		name  string
		grace time.Duration
		sw    campaign.Switched
		until time.Time
	}{
		{"expiry from dnsctl, default grace", 0, switched, drainEnd},
		{"expiry from dnsctl, 10m grace", 10 * time.Minute, switched, switched.OldTTLExpiresAt.Add(10 * time.Minute)},
		{"expiry from the TTL", 30 * time.Minute, campaign.Switched{At: t0, OldTTL: 3600}, t0.Add(90 * time.Minute)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := campaign.NewDomain(dom, []string{mbA}, nil, campaign.OrderPrestage, c.grace, nil, t0)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range []campaign.Fact{campaign.Start{}, campaign.Provisioned{}, campaign.MailboxVerified{Mailbox: mbA, Pass: prestage(1)}} {
				d, _, _ = campaign.Step(d, f, t0)
			}
			d, act, err := campaign.Step(d, c.sw, t0)
			if err != nil || d.Phase != campaign.Draining || act.Kind != campaign.Wait || !act.Until.Equal(c.until) {
				t.Fatalf("switched: %s, %+v, %v; want draining until %s", d.Phase, act, err, c.until)
			}
			early, act, _ := campaign.Step(d, campaign.Tick{}, c.until.Add(-time.Nanosecond))
			if early.Phase != campaign.Draining || act.Kind != campaign.None {
				t.Errorf("a nanosecond early: %s, %+v", early.Phase, act)
			}
			onTime, act, _ := campaign.Step(d, campaign.Tick{}, c.until)
			if onTime.Phase != campaign.Delta || act.Kind != campaign.EnqueuePass {
				t.Errorf("on time: %s, %+v; want delta", onTime.Phase, act)
			}
		})
	}
}

func TestIllegalTransitionsAreRefusedNamingBothPhases(t *testing.T) {
	cases := []struct {
		order    campaign.Order
		in       campaign.Phase
		fact     campaign.Fact
		from, to campaign.Phase
	}{
		{campaign.OrderPrestage, campaign.Queued, switched, campaign.Queued, campaign.Draining},
		{campaign.OrderPrestage, campaign.Provisioning, switched, campaign.Provisioning, campaign.Draining},
		{campaign.OrderPrestage, campaign.Prestaging, switched, campaign.Prestaging, campaign.Draining},
		{campaign.OrderSwitchFirst, campaign.Queued, switched, campaign.Queued, campaign.Prestaging},
		{campaign.OrderPrestage, campaign.Done, campaign.Pause{}, campaign.Done, campaign.Paused},
		{campaign.OrderPrestage, campaign.Done, campaign.Abort{}, campaign.Done, campaign.Failed},
	}
	for _, c := range cases {
		t.Run(string(c.order)+"/"+string(c.in)+"/"+c.fact.Name(), func(t *testing.T) {
			d := to(t, c.order, c.in)
			next, act, err := campaign.Step(d, c.fact, t0)
			var te *campaign.TransitionError
			if !errors.As(err, &te) || te.From != c.from || te.To != c.to {
				t.Fatalf("err = %v, want a transition error from %s to %s", err, c.from, c.to)
			}
			if !strings.Contains(err.Error(), "from "+string(c.from)+" to "+string(c.to)) {
				t.Errorf("message %q does not name both phases", err)
			}
			if next.Phase != d.Phase || !next.Updated.Equal(d.Updated) || act.Kind != campaign.None {
				t.Errorf("refused fact changed the record: %s, %+v", next.Phase, act)
			}
		})
	}
}

func TestLegalHasEveryEdgeOfEachOrderAndNoShortcut(t *testing.T) {
	seq := map[campaign.Order][]campaign.Phase{
		campaign.OrderPrestage:    {campaign.Queued, campaign.Provisioning, campaign.Prestaging, campaign.Switching, campaign.Draining, campaign.Delta, campaign.Verifying, campaign.Done},
		campaign.OrderSwitchFirst: {campaign.Queued, campaign.Provisioning, campaign.Switching, campaign.Prestaging, campaign.Draining, campaign.Delta, campaign.Verifying, campaign.Done},
	}
	skip := map[campaign.Order][][2]campaign.Phase{
		campaign.OrderPrestage:    {{campaign.Prestaging, campaign.Done}, {campaign.Switching, campaign.Done}},
		campaign.OrderSwitchFirst: {{campaign.Provisioning, campaign.Prestaging}, {campaign.Prestaging, campaign.Done}},
	}
	all := append(append([]campaign.Phase{}, seq[campaign.OrderPrestage]...), campaign.Failed, campaign.Paused)
	for order, phases := range seq {
		want := map[[2]campaign.Phase]bool{}
		for i := 0; i+1 < len(phases); i++ {
			want[[2]campaign.Phase{phases[i], phases[i+1]}] = true
		}
		for _, e := range skip[order] {
			want[e] = true
		}
		for _, from := range all {
			for _, to := range all {
				w := want[[2]campaign.Phase{from, to}] ||
					from.Running() && (to == campaign.Failed || to == campaign.Paused) ||
					from == campaign.Paused && (to.Running() || to == campaign.Failed) ||
					from == campaign.Failed && to.Running()
				if got := campaign.Legal(order, from, to); got != w {
					t.Errorf("%s: Legal(%s → %s) = %v, want %v", order, from, to, got, w)
				}
			}
		}
	}
}

func TestFactsOfOtherPassesOrMailboxesChangeNothing(t *testing.T) {
	d := to(t, campaign.OrderPrestage, campaign.Delta)
	for _, f := range []campaign.Fact{
		campaign.MailboxLoaded{Mailbox: mbA, Pass: prestage(1)},
		campaign.MailboxVerified{Mailbox: mbA, Pass: "some-migrate-pass"},
		campaign.MailboxLoaded{Mailbox: "c@acme.test", Pass: delta(1)},
		campaign.MailboxFailed{Mailbox: mbA, Pass: prestage(1), Reason: "old"},
		campaign.Provisioned{},
		switched,
		campaign.SwitchFailed{Phase: "apply", Reason: "late"},
		campaign.Start{},
		campaign.Tick{},
		campaign.Retry{},
	} {
		next, act, err := campaign.Step(d, f, drainEnd.Add(time.Hour))
		if err != nil || act.Kind != campaign.None || !next.Updated.Equal(d.Updated) || next.Phase != d.Phase || len(next.Loaded) != 0 {
			t.Errorf("%s %+v changed the record: %s, %+v, %v", f.Name(), f, next.Phase, act, err)
		}
	}
}

func TestProvisionedBeforeStartGoesStraightOnAtStart(t *testing.T) {
	d := newDomain(t, campaign.OrderPrestage, false)
	d = walk(t, d, []step{
		{fact: campaign.Provisioned{}, phase: campaign.Queued, act: none()},
		{fact: campaign.Start{}, phase: campaign.Prestaging, act: enqueue(campaign.PassPrestage, prestage(1))},
	})
	if d.Entered[campaign.Provisioning].IsZero() {
		t.Error("provisioning was skipped, not passed through")
	}
}

func TestNewDomainNormalisesAndRefusesWhatCannotBeACampaign(t *testing.T) {
	d := newDomain(t, "", false)
	if d.Domain != dom || d.Order != campaign.OrderPrestage || d.DeltaGrace != time.Hour || d.Attempt != 1 || d.Phase != campaign.Queued ||
		len(d.Mailboxes) != 2 || d.Mailboxes[0] != mbA {
		t.Errorf("new domain = %+v", d)
	}
	for name, err := range map[string]error{
		"no mailboxes":    errOf(campaign.NewDomain(dom, nil, nil, "", 0, nil, t0)),
		"foreign mailbox": errOf(campaign.NewDomain(dom, []string{"x@other.test"}, nil, "", 0, nil, t0)),
		"unknown order":   errOf(campaign.NewDomain(dom, []string{mbA}, nil, "later", 0, nil, t0)),
		"no name":         errOf(campaign.NewDomain(".", []string{mbA}, nil, "", 0, nil, t0)),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func errOf(_ campaign.Domain, err error) error { return err }

func TestFromEventReadsTheFactsOfTheLifecycleEvents(t *testing.T) {
	expires := t0.Add(5 * time.Minute)
	cases := []struct {
		out    event.Outgoing
		fact   campaign.Fact
		domain string
	}{
		{event.ProvisionedDomain(event.DomainProvisionedData{Domain: "acme.test", Mailboxes: 2}), campaign.Provisioned{}, dom},
		{event.Queued(mbA, "p1"), campaign.MailboxQueued{Mailbox: mbA, Pass: "p1"}, dom},
		{event.Loaded(mbA, event.LoadedData{Pass: "p1", Appended: 3, Skipped: 1, Dead: 1, Bytes: 900}),
			campaign.MailboxLoaded{Mailbox: mbA, Pass: "p1", Counts: campaign.Counts{Appended: 3, Skipped: 1, Dead: 1, Bytes: 900}}, dom},
		{event.Verified(mbA, event.VerifiedData{Pass: "p1", Messages: 4}), campaign.MailboxVerified{Mailbox: mbA, Pass: "p1"}, dom},
		{event.Failed(mbA, 1, event.FailedData{Pass: "p1", Phase: "loading", Reason: "over quota"}),
			campaign.MailboxFailed{Mailbox: mbA, Pass: "p1", Reason: "loading: over quota", At: t0}, dom},
		{event.Failed(mbA, 1, event.FailedData{Pass: "p1", Phase: "loading", Reason: "timeout", Retried: true}), nil, ""},
		{event.Failed(mbA, 1, event.FailedData{Pass: "p1", Phase: "extracting", Reason: "no source password", WaitingForUser: true}),
			campaign.MailboxFailed{Mailbox: mbA, Pass: "p1", Reason: "extracting: no source password", At: t0, WaitingForUser: true}, dom},
		{event.Switched("ACME.test.", event.DNSSwitchedData{Serial: 9, OldTTL: 300, OldTTLExpiresAt: expires, VerifiedAt: t0}),
			campaign.Switched{At: t0, Serial: 9, OldTTL: 300, OldTTLExpiresAt: expires}, dom},
		{event.SwitchSkipped("acme.test.", 3, event.DNSSkippedData{Code: "external", Reason: "elsewhere"}), campaign.SwitchSkipped{Code: "external", Reason: "elsewhere", At: t0}, dom},
		{event.SwitchFailed("acme.test", t0, event.DNSFailedData{Phase: "apply", Reason: "REFUSED"}), campaign.SwitchFailed{Phase: "apply", Reason: "REFUSED", At: t0}, dom},
		{event.Renamed(mbA, event.RenamedData{Source: "Gesendet", Target: "Sent"}), nil, ""},
	}
	for _, c := range cases {
		t.Run(c.out.ID, func(t *testing.T) {
			e, err := c.out.Envelope("test", t0)
			if err != nil {
				t.Fatal(err)
			}
			f, domain, err := campaign.FromEvent(e, nil)
			if err != nil || f != c.fact || domain != c.domain {
				t.Errorf("= %+v, %q, %v; want %+v, %q", f, domain, err, c.fact, c.domain)
			}
		})
	}
}

func TestDNSStatusSaysSwitchedSkippedOrNot(t *testing.T) {
	cases := []struct {
		dns  campaign.DNS
		want string
	}{
		{campaign.DNS{}, "not switched"},
		{campaign.DNS{SwitchedAt: t0, Serial: 7, OldTTL: 300}, "switched 2026-12-06T10:00:00Z (serial 7, old TTL 300s)"},
		{campaign.DNS{Skipped: true, SkipCode: "external", SkipReason: "MX at mx.elsewhere.example."}, "skipped: MX at mx.elsewhere.example. (external)"},
	}
	for _, c := range cases {
		if got := c.dns.Status(); got != c.want {
			t.Errorf("Status() = %q, want %q", got, c.want)
		}
	}
}

func TestAbortWhilePausedFailsInTheKeptPhaseAndAFailedDomainCannotBePaused(t *testing.T) {
	d := to(t, campaign.OrderPrestage, campaign.Switching)
	d = walk(t, d, []step{
		{fact: campaign.Pause{Reason: "hold"}, phase: campaign.Paused, act: none()},
		{fact: campaign.Abort{}, phase: campaign.Failed, act: none()},
	})
	if d.Stopped != campaign.Switching || d.Reason != "aborted" {
		t.Errorf("stopped %s (%q), want switching, aborted", d.Stopped, d.Reason)
	}
	var te *campaign.TransitionError
	if _, _, err := campaign.Step(d, campaign.Pause{}, t0); !errors.As(err, &te) || te.From != campaign.Failed || te.To != campaign.Paused {
		t.Errorf("pause of a failed domain: %v, want refused from failed to paused", err)
	}
	walk(t, d, []step{{fact: campaign.Retry{}, phase: campaign.Switching, act: campaign.Action{Kind: campaign.RequestSwitch}}})
}

func TestStepMailboxSumsEachPassOnceAndFollowsItsLastPass(t *testing.T) {
	loaded := func(pass string, n int64) campaign.Fact {
		return campaign.MailboxLoaded{Mailbox: mbA, Pass: pass, Counts: campaign.Counts{Appended: n, Bytes: 100 * n, Dead: 1}}
	}
	cases := []struct {
		fact    campaign.Fact
		changed bool
		phase   campaign.MailboxPhase
		pass    string
		counts  campaign.Counts
	}{
		{campaign.MailboxQueued{Mailbox: mbA, Pass: "p1"}, true, campaign.BoxCopying, "p1", campaign.Counts{}},
		{campaign.MailboxQueued{Mailbox: mbA, Pass: "p1"}, false, campaign.BoxCopying, "p1", campaign.Counts{}},
		{loaded("p1", 5), true, campaign.BoxLoaded, "p1", campaign.Counts{Appended: 5, Bytes: 500, Dead: 1}},
		{loaded("p1", 5), false, campaign.BoxLoaded, "p1", campaign.Counts{Appended: 5, Bytes: 500, Dead: 1}},
		{campaign.MailboxVerified{Mailbox: mbA, Pass: "p1"}, true, campaign.BoxVerified, "p1", campaign.Counts{Appended: 5, Bytes: 500, Dead: 1}},
		{campaign.MailboxVerified{Mailbox: mbA, Pass: "p1"}, false, campaign.BoxVerified, "p1", campaign.Counts{Appended: 5, Bytes: 500, Dead: 1}},
		{campaign.MailboxQueued{Mailbox: mbA, Pass: "p2"}, true, campaign.BoxCopying, "p2", campaign.Counts{Appended: 5, Bytes: 500, Dead: 1}},
		// A replayed event of the earlier pass counts nothing again.
		{loaded("p1", 5), false, campaign.BoxCopying, "p2", campaign.Counts{Appended: 5, Bytes: 500, Dead: 1}},
		{loaded("p2", 2), true, campaign.BoxLoaded, "p2", campaign.Counts{Appended: 7, Bytes: 700, Dead: 2}},
		{campaign.MailboxFailed{Mailbox: mbA, Pass: "p2", Reason: "verify: 1 missing"}, true, campaign.BoxFailed, "p2", campaign.Counts{Appended: 7, Bytes: 700, Dead: 2}},
		{campaign.MailboxFailed{Mailbox: mbA, Pass: "p2", Reason: "verify: 1 missing"}, false, campaign.BoxFailed, "p2", campaign.Counts{Appended: 7, Bytes: 700, Dead: 2}},
		{campaign.Tick{}, false, campaign.BoxFailed, "p2", campaign.Counts{Appended: 7, Bytes: 700, Dead: 2}},
	}
	m := campaign.Mailbox{Mailbox: mbA, Domain: dom, Phase: campaign.BoxQueued}
	for i, c := range cases {
		next, changed := campaign.StepMailbox(m, c.fact, t0)
		if changed != c.changed || next.Phase != c.phase || next.Pass != c.pass || next.Counts != c.counts {
			t.Fatalf("step %d (%s %+v): changed %v, %s in %s, %+v; want %v, %s in %s, %+v",
				i, c.fact.Name(), c.fact, changed, next.Phase, next.Pass, next.Counts, c.changed, c.phase, c.pass, c.counts)
		}
		m = next
	}
}

func TestAFailureReplayedAfterItsRetryDoesNotFailTheDomainAgain(t *testing.T) {
	cases := []struct {
		name  string
		in    campaign.Phase
		fail  func(at time.Time) campaign.Fact
		after campaign.Action
	}{
		{"verification", campaign.Verifying, func(at time.Time) campaign.Fact {
			return campaign.MailboxFailed{Mailbox: mbB, Pass: delta(1), Reason: "verify: 2 missing", At: at}
		}, verify(campaign.PassDelta, delta(1))},
		{"switch", campaign.Switching, func(at time.Time) campaign.Fact {
			return campaign.SwitchFailed{Phase: "verify", Reason: "secondary behind", At: at}
		}, campaign.Action{Kind: campaign.RequestSwitch}},
		{"skip a person decides", campaign.Switching, func(at time.Time) campaign.Fact {
			return campaign.SwitchSkipped{Code: "mixed", Reason: "legacy and other MX", At: at}
		}, campaign.Action{Kind: campaign.RequestSwitch}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := to(t, campaign.OrderPrestage, c.in)
			failedAt := d.Entered[c.in].Add(time.Minute)
			d = walk(t, d, []step{
				{fact: c.fail(failedAt), at: failedAt.Add(time.Second), phase: campaign.Failed, act: none()},
				{fact: campaign.Retry{}, at: failedAt.Add(time.Hour), phase: c.in, act: c.after},
				// The stream read again from the start after a crash.
				{fact: c.fail(failedAt), at: failedAt.Add(2 * time.Hour), phase: c.in, act: none()},
				// A new failure after the retry still counts, even stamped a
				// little before it by another machine's clock.
				{fact: c.fail(failedAt.Add(time.Hour - campaign.ClockSkew)), at: failedAt.Add(3 * time.Hour), phase: campaign.Failed, act: none()},
			})
			if d.Attempt != 2 {
				t.Errorf("attempt %d, want 2", d.Attempt)
			}
		})
	}
}

func TestAlreadySwitchedCountsAsASwitchWithNoOldTTL(t *testing.T) {
	at := t0.Add(2 * time.Hour)
	already := campaign.SwitchSkipped{Code: campaign.CodeAlreadySwitched, Reason: "MX already points at the new provider", At: at}
	until := at.Add(campaign.DefaultDeltaGrace)
	t.Run("prestage", func(t *testing.T) {
		d := walk(t, to(t, campaign.OrderPrestage, campaign.Switching), []step{
			{fact: already, at: at, phase: campaign.Draining, act: campaign.Action{Kind: campaign.Wait, Until: until}},
			{fact: campaign.Tick{}, at: until, phase: campaign.Delta, act: enqueue(campaign.PassDelta, delta(1))},
		})
		if d.DNS.Skipped || !d.DNS.SwitchedAt.Equal(at) {
			t.Errorf("dns %+v, want switched at the event's time, not skipped", d.DNS)
		}
	})
	t.Run("switch first", func(t *testing.T) {
		walk(t, to(t, campaign.OrderSwitchFirst, campaign.Switching), []step{
			{fact: already, at: at, phase: campaign.Prestaging, act: enqueue(campaign.PassPrestage, prestage(1))},
		})
	})
	t.Run("after the switch event", func(t *testing.T) {
		d := to(t, campaign.OrderPrestage, campaign.Draining)
		if next, act, err := campaign.Step(d, already, at); err != nil || act.Kind != campaign.None || !next.Updated.Equal(d.Updated) {
			t.Errorf("already_switched after dns.switched changed the record: %+v, %v", act, err)
		}
	})
}

func TestAProvisioningRefusedFailsTheDomainInProvisioningAndRetryProvisionsAgain(t *testing.T) {
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	d, err := campaign.NewDomain("acme.test", []string{"a@acme.test"}, nil, campaign.OrderPrestage, 0, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	d, _, _ = campaign.Step(d, campaign.Start{}, now)
	d, act, err := campaign.Step(d, campaign.ProvisionFailed{Reason: "a@acme.test: quota exceeded"}, now)
	if err != nil || d.Phase != campaign.Failed || d.Stopped != campaign.Provisioning || d.Reason != "provisioning: a@acme.test: quota exceeded" || act.Kind != campaign.None {
		t.Fatalf("after the refusal: %s in %s (%s), %v, %v", d.Phase, d.Stopped, d.Reason, act, err)
	}
	d, act, _ = campaign.Step(d, campaign.Retry{}, now.Add(time.Minute))
	if d.Phase != campaign.Provisioning || act.Kind != campaign.ProvisionDomain || d.Attempt != 2 {
		t.Fatalf("after retry: %s, %v, attempt %d", d.Phase, act, d.Attempt)
	}
	if again, _, _ := campaign.Step(d, campaign.Provisioned{}, now.Add(2*time.Minute)); again.Phase != campaign.Prestaging {
		t.Errorf("provisioned after retry: %s, want prestaging", again.Phase)
	}
	// Once provisioned, a late refusal of an earlier run changes nothing.
	p, _, _ := campaign.Step(d, campaign.Provisioned{}, now.Add(2*time.Minute))
	if got, _, _ := campaign.Step(p, campaign.ProvisionFailed{Reason: "late"}, now.Add(3*time.Minute)); got.Phase != campaign.Prestaging {
		t.Errorf("late refusal moved a provisioned domain to %s", got.Phase)
	}
}

// waits is mailbox mb's pass failing because its user has not signed in
// yet (the source has no password for it).
func waits(mb, pass string) campaign.MailboxFailed {
	return campaign.MailboxFailed{Mailbox: mb, Pass: pass, Reason: "extracting: no source password: waiting for its user to sign in on the change page", WaitingForUser: true}
}

func TestAMailboxWaitingForItsUserDoesNotStopItsDomain(t *testing.T) {
	requestSwitch := campaign.Action{Kind: campaign.RequestSwitch}
	drain := campaign.Action{Kind: campaign.Wait, Until: drainEnd}
	cases := []struct {
		name  string
		order campaign.Order
		in    campaign.Phase
		skip  bool // the plan skips its DNS
		steps []step
		// waiting is the domain's Waiting at the end.
		waiting []string
	}{
		{"prestage: it waits first, the other verifies", campaign.OrderPrestage, campaign.Prestaging, false, []step{
			{fact: waits(mbB, prestage(1)), phase: campaign.Prestaging, act: none()},
			{fact: campaign.MailboxLoaded{Mailbox: mbA, Pass: prestage(1)}, phase: campaign.Prestaging, act: verify(campaign.PassPrestage, prestage(1))},
			{fact: campaign.MailboxVerified{Mailbox: mbA, Pass: prestage(1)}, phase: campaign.Switching, act: requestSwitch},
		}, []string{mbB}},
		{"prestage: it waits last, the other loaded", campaign.OrderPrestage, campaign.Prestaging, false, []step{
			{fact: campaign.MailboxLoaded{Mailbox: mbA, Pass: prestage(1)}, phase: campaign.Prestaging, act: none()},
			{fact: waits(mbB, prestage(1)), phase: campaign.Prestaging, act: verify(campaign.PassPrestage, prestage(1))},
			{fact: campaign.MailboxVerified{Mailbox: mbA, Pass: prestage(1)}, phase: campaign.Switching, act: requestSwitch},
		}, []string{mbB}},
		{"prestage: it waits last, the other verified", campaign.OrderPrestage, campaign.Prestaging, false, []step{
			{fact: campaign.MailboxVerified{Mailbox: mbA, Pass: prestage(1)}, phase: campaign.Prestaging, act: none()},
			{fact: waits(mbB, prestage(1)), phase: campaign.Switching, act: requestSwitch},
		}, []string{mbB}},
		{"prestage, DNS skipped: it waits last", campaign.OrderPrestage, campaign.Prestaging, true, []step{
			{fact: campaign.MailboxVerified{Mailbox: mbA, Pass: prestage(1)}, phase: campaign.Prestaging, act: none()},
			{fact: waits(mbB, prestage(1)), phase: campaign.Done, act: none()},
		}, []string{mbB}},
		{"prestage: every mailbox waits", campaign.OrderPrestage, campaign.Prestaging, false, []step{
			{fact: waits(mbA, prestage(1)), phase: campaign.Prestaging, act: none()},
			{fact: waits(mbB, prestage(1)), phase: campaign.Switching, act: requestSwitch},
		}, []string{mbA, mbB}},
		{"switch first: it waits last", campaign.OrderSwitchFirst, campaign.Prestaging, false, []step{
			{fact: campaign.MailboxLoaded{Mailbox: mbA, Pass: prestage(1)}, phase: campaign.Prestaging, act: none()},
			{fact: waits(mbB, prestage(1)), phase: campaign.Draining, act: drain},
		}, []string{mbB}},
		{"delta: it waits last, the other loaded", campaign.OrderPrestage, campaign.Delta, false, []step{
			{fact: campaign.MailboxLoaded{Mailbox: mbA, Pass: delta(1)}, phase: campaign.Delta, act: none()},
			{fact: waits(mbB, delta(1)), phase: campaign.Verifying, act: verify(campaign.PassDelta, delta(1))},
			{fact: campaign.MailboxVerified{Mailbox: mbA, Pass: delta(1)}, phase: campaign.Done, act: none()},
		}, []string{mbB}},
		{"delta: it waits first", campaign.OrderSwitchFirst, campaign.Delta, false, []step{
			{fact: waits(mbB, delta(1)), phase: campaign.Delta, act: none()},
			{fact: campaign.MailboxLoaded{Mailbox: mbA, Pass: delta(1)}, phase: campaign.Verifying, act: verify(campaign.PassDelta, delta(1))},
			{fact: campaign.MailboxVerified{Mailbox: mbA, Pass: delta(1)}, phase: campaign.Done, act: none()},
		}, []string{mbB}},
		{"delta: it waits last, the other verified", campaign.OrderPrestage, campaign.Delta, false, []step{
			{fact: campaign.MailboxVerified{Mailbox: mbA, Pass: delta(1)}, phase: campaign.Delta, act: none()},
			{fact: waits(mbB, delta(1)), phase: campaign.Done, act: none()},
		}, []string{mbB}},
		{"delta: every mailbox waits", campaign.OrderPrestage, campaign.Delta, false, []step{
			{fact: waits(mbB, delta(1)), phase: campaign.Delta, act: none()},
			{fact: waits(mbA, delta(1)), phase: campaign.Done, act: none()},
		}, []string{mbA, mbB}},
		{"its pass loaded it after all", campaign.OrderPrestage, campaign.Prestaging, false, []step{
			{fact: waits(mbB, prestage(1)), phase: campaign.Prestaging, act: none()},
			{fact: campaign.MailboxLoaded{Mailbox: mbA, Pass: prestage(1)}, phase: campaign.Prestaging, act: verify(campaign.PassPrestage, prestage(1))},
			{fact: campaign.MailboxLoaded{Mailbox: mbB, Pass: prestage(1)}, phase: campaign.Prestaging, act: verify(campaign.PassPrestage, prestage(1))},
			{fact: campaign.MailboxVerified{Mailbox: mbA, Pass: prestage(1)}, phase: campaign.Prestaging, act: none()},
			{fact: campaign.MailboxVerified{Mailbox: mbB, Pass: prestage(1)}, phase: campaign.Switching, act: requestSwitch},
		}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := to(t, c.order, c.in)
			if c.skip {
				d = newDomain(t, c.order, true)
				d = walk(t, d, []step{
					{fact: campaign.Start{}, phase: campaign.Provisioning, act: campaign.Action{Kind: campaign.ProvisionDomain}},
					{fact: campaign.Provisioned{}, phase: campaign.Prestaging, act: enqueue(campaign.PassPrestage, prestage(1))},
				})
			}
			d = walk(t, d, c.steps)
			if !slices.Equal(d.Waiting, c.waiting) || d.Reason != "" {
				t.Errorf("waiting %q, reason %q; want %q, none", d.Waiting, d.Reason, c.waiting)
			}
		})
	}
}

func TestEachNewPassOfADomainTriesItsWaitingMailboxesAgain(t *testing.T) {
	d := walk(t, to(t, campaign.OrderPrestage, campaign.Prestaging), []step{
		{fact: waits(mbB, prestage(1)), phase: campaign.Prestaging, act: none()},
		{fact: campaign.MailboxVerified{Mailbox: mbA, Pass: prestage(1)}, phase: campaign.Switching, act: campaign.Action{Kind: campaign.RequestSwitch}},
		{fact: switched, phase: campaign.Draining, act: campaign.Action{Kind: campaign.Wait, Until: drainEnd}},
		{fact: campaign.Tick{}, at: drainEnd, phase: campaign.Delta, act: enqueue(campaign.PassDelta, delta(1))},
	})
	if len(d.Waiting) != 0 || campaign.Next(d) != enqueue(campaign.PassDelta, delta(1)) {
		t.Fatalf("delta pass: waiting %q, next %+v; want none waiting, the pass over both", d.Waiting, campaign.Next(d))
	}
	// b's user signed in meanwhile: the delta pass copies it like a.
	done := walk(t, d, []step{
		{fact: campaign.MailboxLoaded{Mailbox: mbB, Pass: delta(1)}, phase: campaign.Delta, act: none()},
		{fact: campaign.MailboxLoaded{Mailbox: mbA, Pass: delta(1)}, phase: campaign.Verifying, act: verify(campaign.PassDelta, delta(1))},
		{fact: campaign.MailboxVerified{Mailbox: mbA, Pass: delta(1)}, phase: campaign.Verifying, act: none()},
		{fact: campaign.MailboxVerified{Mailbox: mbB, Pass: delta(1)}, phase: campaign.Done, act: none()},
	})
	if len(done.Waiting) != 0 {
		t.Errorf("done: waiting %q, want none", done.Waiting)
	}
	// Still not signed in: it waits again.
	done = walk(t, d, []step{
		{fact: waits(mbB, delta(1)), phase: campaign.Delta, act: none()},
		{fact: campaign.MailboxLoaded{Mailbox: mbA, Pass: delta(1)}, phase: campaign.Verifying, act: verify(campaign.PassDelta, delta(1))},
		{fact: campaign.MailboxVerified{Mailbox: mbA, Pass: delta(1)}, phase: campaign.Done, act: none()},
	})
	if !slices.Equal(done.Waiting, []string{mbB}) {
		t.Errorf("done: waiting %q, want b", done.Waiting)
	}
	// A retry's new pass tries it again too.
	failed := walk(t, to(t, campaign.OrderPrestage, campaign.Prestaging), []step{
		{fact: waits(mbB, prestage(1)), phase: campaign.Prestaging, act: none()},
		{fact: campaign.MailboxFailed{Mailbox: mbA, Pass: prestage(1), Reason: "loading: over quota"}, phase: campaign.Failed, act: none()},
		{fact: campaign.Retry{}, phase: campaign.Prestaging, act: enqueue(campaign.PassPrestage, prestage(2))},
	})
	if len(failed.Waiting) != 0 {
		t.Errorf("retried: waiting %q, want none", failed.Waiting)
	}
}

func TestAFailureNotWaitingForTheUserStillFailsTheDomain(t *testing.T) {
	d := walk(t, to(t, campaign.OrderPrestage, campaign.Prestaging), []step{
		{fact: waits(mbB, prestage(1)), phase: campaign.Prestaging, act: none()},
		{fact: campaign.MailboxFailed{Mailbox: mbA, Pass: prestage(1), Reason: "extracting: login refused"}, phase: campaign.Failed, act: none()},
		// Once failed, a waiting mailbox changes nothing.
		{fact: waits(mbA, prestage(1)), phase: campaign.Failed, act: none()},
	})
	if d.Stopped != campaign.Prestaging || d.Reason != "mailbox a@acme.test: extracting: login refused" {
		t.Errorf("failed: stopped %s, reason %q", d.Stopped, d.Reason)
	}
}

func TestAWaitingMailboxOfAnotherPassOrAnEarlierAttemptChangesNothing(t *testing.T) {
	cases := []struct {
		name string
		in   campaign.Phase
		fact func(d campaign.Domain) campaign.Fact
	}{
		{"an earlier pass", campaign.Delta, func(campaign.Domain) campaign.Fact { return waits(mbA, prestage(1)) }},
		{"another pass", campaign.Prestaging, func(campaign.Domain) campaign.Fact { return waits(mbA, "signin-7") }},
		{"another domain's mailbox", campaign.Prestaging, func(campaign.Domain) campaign.Fact { return waits("c@other.test", prestage(1)) }},
		{"before the phase was entered", campaign.Delta, func(d campaign.Domain) campaign.Fact {
			f := waits(mbA, delta(1))
			f.At = d.Entered[campaign.Delta].Add(-time.Hour)
			return f
		}},
		{"not a copy phase", campaign.Draining, func(campaign.Domain) campaign.Fact { return waits(mbA, prestage(1)) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := to(t, campaign.OrderPrestage, c.in)
			next, act, err := campaign.Step(d, c.fact(d), drainEnd.Add(time.Hour))
			if err != nil || act.Kind != campaign.None || !next.Updated.Equal(d.Updated) || len(next.Waiting) != 0 {
				t.Errorf("changed the record: %s, waiting %q, %+v, %v", next.Phase, next.Waiting, act, err)
			}
		})
	}
}

func TestAMailboxWaitingWhilePausedMovesTheKeptPhase(t *testing.T) {
	d := walk(t, to(t, campaign.OrderPrestage, campaign.Prestaging), []step{
		{fact: campaign.MailboxVerified{Mailbox: mbA, Pass: prestage(1)}, phase: campaign.Prestaging, act: none()},
		{fact: campaign.Pause{Reason: "hold"}, phase: campaign.Paused, act: none()},
		{fact: waits(mbB, prestage(1)), phase: campaign.Paused, act: none()},
		{fact: campaign.Resume{}, phase: campaign.Switching, act: campaign.Action{Kind: campaign.RequestSwitch}},
	})
	if !slices.Equal(d.Waiting, []string{mbB}) {
		t.Errorf("waiting %q, want b", d.Waiting)
	}
}
