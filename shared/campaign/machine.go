package campaign

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// ActionKind is what the orchestrator does next for a domain.
type ActionKind string

// Kinds of action.
const (
	// None: nothing new to do (wait for the next fact).
	None ActionKind = "none"
	// ProvisionDomain: create the domain's mailboxes at the target.
	ProvisionDomain ActionKind = "provision"
	// EnqueuePass: queue pass Action.Pass (of Action.PassKind) over
	// every mailbox of the domain.
	EnqueuePass ActionKind = "enqueue_pass"
	// RequestSwitch: ask dnsctl to switch the domain's MX.
	RequestSwitch ActionKind = "request_switch"
	// Verify: verify every mailbox of the domain against pass
	// Action.Pass, publishing mailbox.verified (or failing the mailbox).
	Verify ActionKind = "verify"
	// Wait: apply a Tick at Action.Until.
	Wait ActionKind = "wait"
)

// Action is what the orchestrator does next for a domain. Every action
// is safe to take again (after a crash, Next says it once more): the pass
// id is the same, provisioning and the switch are idempotent at their
// services.
type Action struct {
	Kind     ActionKind `json:"kind"`
	PassKind PassKind   `json:"pass_kind,omitempty"`
	Pass     string     `json:"pass,omitempty"`
	Until    time.Time  `json:"until,omitzero"`
}

// ErrNotDone is wrapped by the refusal to close a domain that is not done.
var ErrNotDone = errors.New("only a done domain can be closed")

// edges are, per order, the phases each running phase may move to
// (besides failed and paused); the skipped-DNS edges included.
var edges = map[Order]map[Phase][]Phase{
	OrderPrestage: {
		Queued:       {Provisioning},
		Provisioning: {Prestaging},
		Prestaging:   {Switching, Done},
		Switching:    {Draining, Done},
		Draining:     {Delta},
		Delta:        {Verifying},
		Verifying:    {Done},
	},
	OrderSwitchFirst: {
		Queued:       {Provisioning},
		Provisioning: {Switching, Prestaging},
		Switching:    {Prestaging},
		Prestaging:   {Draining, Done},
		Draining:     {Delta},
		Delta:        {Verifying},
		Verifying:    {Done},
	},
}

// Legal reports whether order lets a domain go from one phase to another:
// along its edges, from a running phase to failed or paused, or from
// failed or paused back to the phase stopped in (which the caller checks).
func Legal(order Order, from, to Phase) bool {
	switch {
	case from.Running() && (to == Failed || to == Paused):
		return true
	case from == Paused && (to.Running() || to == Failed):
		return true
	case from == Failed && to.Running():
		return true
	}
	return slices.Contains(edges[order][from], to)
}

// Step applies fact f to domain d at now: the record it makes and the
// action it calls for. A fact d already reflects returns d unchanged and
// None; a fact that would take an edge d's order does not have returns d,
// None and a *TransitionError. d itself is never modified.
func Step(d Domain, f Fact, now time.Time) (Domain, Action, error) {
	next, act, _, err := step(d, f, now)
	return next, act, err
}

// step is Step, saying whether the record changed.
func step(d Domain, f Fact, now time.Time) (Domain, Action, bool, error) {
	next := d.clone()
	s := stepper{d: &next, now: now.UTC(), fact: f}
	act, changed, err := s.apply()
	if err != nil {
		return d, none, false, err
	}
	if !changed {
		return d, none, false, nil
	}
	next.Updated = now.UTC()
	return next, act, true, nil
}

// Next is the action d's phase calls for, whatever brought it there: what
// an orchestrator takes again for each domain after it (re)starts.
func Next(d Domain) Action {
	switch d.Phase {
	case Provisioning:
		return Action{Kind: ProvisionDomain}
	case Prestaging:
		if allIn(d.copied(), d.Loaded) && needsVerify(d) {
			return Action{Kind: Verify, PassKind: PassPrestage, Pass: d.Pass}
		}
		return Action{Kind: EnqueuePass, PassKind: PassPrestage, Pass: d.Pass}
	case Switching:
		return Action{Kind: RequestSwitch}
	case Draining:
		return Action{Kind: Wait, Until: d.DrainUntil()}
	case Delta:
		return Action{Kind: EnqueuePass, PassKind: PassDelta, Pass: d.Pass}
	case Verifying:
		return Action{Kind: Verify, PassKind: PassDelta, Pass: d.Pass}
	}
	return Action{Kind: None}
}

// needsVerify says whether prestaging ends only when every mailbox is
// verified: in OrderPrestage (verify before the switch), and for a domain
// whose DNS is skipped (no delta and verifying follow).
func needsVerify(d Domain) bool { return d.Order == OrderPrestage || d.DNS.Skipped }

// allIn reports whether every element of want is in the sorted set have.
func allIn(want, have []string) bool {
	for _, w := range want {
		if !contains(have, w) {
			return false
		}
	}
	return true
}

type stepper struct {
	d    *Domain
	now  time.Time
	fact Fact
}

// apply changes s.d by s.fact; changed is false when it stated nothing
// new.
func (s *stepper) apply() (act Action, changed bool, err error) {
	d := s.d
	switch f := s.fact.(type) {
	case Pause:
		switch {
		case d.Phase == Paused:
			return none, false, nil
		case !d.Phase.Running():
			return none, false, s.refuse(d.Phase, Paused)
		}
		d.Stopped, d.Phase, d.Reason = d.Phase, Paused, f.Reason
		d.Entered[Paused] = s.now
		return none, true, nil
	case Resume:
		if d.Phase != Paused {
			return none, false, nil
		}
		d.Phase, d.Stopped, d.Reason = d.Stopped, "", ""
		return Next(*d), true, nil
	case Abort:
		switch d.Phase {
		case Failed:
			return none, false, nil
		case Done:
			return none, false, s.refuse(Done, Failed)
		case Paused:
			d.Phase = Failed
		default:
			d.Stopped, d.Phase = d.Phase, Failed
		}
		d.Reason = "aborted"
		if f.Reason != "" {
			d.Reason += ": " + f.Reason
		}
		d.Entered[Failed] = s.now
		return none, true, nil
	case Recorded:
		return s.recorded(f)
	case Close:
		switch {
		case d.Phase != Done:
			return none, false, fmt.Errorf("campaign: domain %s is %s: %w", d.Domain, d.Phase, ErrNotDone)
		case !d.After.ClosedAt.IsZero():
			return none, false, nil
		}
		d.After.ClosedAt = s.now
		return none, true, nil
	case Retry:
		if d.Phase != Failed {
			return none, false, nil
		}
		d.Attempt++
		d.Phase, d.Reason = d.Stopped, ""
		d.Stopped = ""
		return s.enter(d.Phase, true)
	}
	switch d.Phase {
	case Failed, Done:
		return none, false, nil
	case Paused:
		switch s.fact.(type) {
		case Start, Tick:
			return none, false, nil
		}
		// Work under way goes on: move the phase kept in Stopped, and
		// act on it only at Resume.
		d.Phase = d.Stopped
		_, changed, err := s.running()
		if err != nil || !changed {
			return none, false, err
		}
		// A failure while paused fails the domain in the phase it had
		// reached (s.fail set Stopped); anything else stays paused.
		if d.Phase != Failed {
			d.Stopped, d.Phase = d.Phase, Paused
		}
		return none, true, nil
	}
	return s.running()
}

var none = Action{Kind: None}

// running applies a fact to a domain in a running phase.
func (s *stepper) running() (Action, bool, error) {
	d := s.d
	switch f := s.fact.(type) {
	case Start:
		if d.Phase != Queued {
			return none, false, nil
		}
		act, _, err := s.enter(Provisioning, false)
		if err != nil || !d.Provisioned {
			return act, true, err
		}
		return s.provisioned()
	case Provisioned:
		if d.Provisioned {
			return none, false, nil
		}
		d.Provisioned = true
		if d.Phase != Provisioning {
			return none, true, nil
		}
		return s.provisioned()
	case ProvisionFailed:
		if d.Phase != Provisioning || d.Provisioned {
			return none, false, nil
		}
		return s.fail("provisioning: " + f.Reason)
	case MailboxQueued:
		return none, false, nil
	case MailboxLoaded:
		return s.mailbox(f.Mailbox, f.Pass, false)
	case MailboxVerified:
		return s.mailbox(f.Mailbox, f.Pass, true)
	case MailboxFailed:
		if f.Pass != d.Pass || !contains(d.Mailboxes, f.Mailbox) || !copying(d.Phase) || s.stale(f.At) {
			return none, false, nil
		}
		if f.WaitingForUser {
			return s.waiting(f.Mailbox)
		}
		return s.fail("mailbox " + f.Mailbox + ": " + f.Reason)
	case Switched:
		if d.DNS.Switched() {
			return none, false, nil
		}
		to := Draining
		if d.Order == OrderSwitchFirst {
			to = Prestaging
		}
		if d.Phase != Switching {
			return none, false, s.refuse(d.Phase, to)
		}
		d.DNS.SwitchedAt, d.DNS.Serial, d.DNS.OldTTL, d.DNS.OldTTLExpiresAt = f.At.UTC(), f.Serial, f.OldTTL, f.OldTTLExpiresAt.UTC()
		return s.enter(to, false)
	case SwitchSkipped:
		if d.DNS.Switched() || d.DNS.Skipped {
			return none, false, nil
		}
		if f.Code == CodeAlreadySwitched {
			// The MX points at the new provider already (switched by
			// hand, or a request repeated after a switch whose event
			// this domain has not seen): switched now, with no old TTL
			// known, so draining waits the grace and delta still runs.
			if d.Phase != Switching || s.stale(f.At) {
				return none, false, nil
			}
			at := f.At
			if at.IsZero() {
				at = s.now
			}
			d.DNS.SwitchedAt = at.UTC()
			to := Draining
			if d.Order == OrderSwitchFirst {
				to = Prestaging
			}
			return s.enter(to, false)
		}
		if !SkipCodes[f.Code] {
			if d.Phase != Switching || s.stale(f.At) {
				return none, false, nil
			}
			return s.fail(fmt.Sprintf("dns skipped (%s): %s", f.Code, f.Reason))
		}
		d.DNS.Skipped, d.DNS.SkipCode, d.DNS.SkipReason = true, f.Code, f.Reason
		if d.Phase != Switching {
			return none, true, nil
		}
		if d.Order == OrderSwitchFirst {
			return s.enter(Prestaging, false)
		}
		return s.enter(Done, false)
	case SwitchFailed:
		if d.Phase != Switching || s.stale(f.At) {
			return none, false, nil
		}
		return s.fail("dns " + f.Phase + ": " + f.Reason)
	case Tick:
		if d.Phase != Draining || s.now.Before(d.DrainUntil()) {
			return none, false, nil
		}
		return s.enter(Delta, false)
	}
	return none, false, fmt.Errorf("campaign: domain %s: unknown fact %T", d.Domain, s.fact)
}

// ClockSkew is how much earlier than the domain entered its phase, by
// the orchestrator's clock, a failure stamped by another machine's clock
// may be and still count: a failure that fast (dnsctl refusing a plan at
// once) must not be taken for one of an earlier attempt.
const ClockSkew = 5 * time.Second

// stale reports whether a failure at at happened before the domain
// (last) entered its phase, beyond ClockSkew: it belongs to an earlier
// attempt, which a Retry ended, and is replayed, not new. (A retried
// verification or switch keeps its pass, so the pass cannot tell.)
func (s *stepper) stale(at time.Time) bool {
	return !at.IsZero() && at.Before(s.d.Entered[s.d.Phase].Add(-ClockSkew))
}

// provisioned moves a provisioned domain on from provisioning.
func (s *stepper) provisioned() (Action, bool, error) {
	switch {
	case s.d.Order == OrderPrestage || s.d.DNS.Skipped:
		return s.enter(Prestaging, false)
	default:
		return s.enter(Switching, false)
	}
}

// copying reports whether a pass of the domain runs in p.
func copying(p Phase) bool { return p == Prestaging || p == Delta || p == Verifying }

// mailbox records a mailbox loaded (or verified) in the current pass and
// moves the domain on when every mailbox not waiting for its user is. A
// waiting mailbox loaded after all (a job of the pass queued again after
// its user signed in) waits no more.
func (s *stepper) mailbox(mailbox, pass string, verified bool) (Action, bool, error) {
	d := s.d
	if pass != d.Pass || !contains(d.Mailboxes, mailbox) || !copying(d.Phase) {
		return none, false, nil
	}
	if contains(d.Loaded, mailbox) && (!verified || contains(d.Verified, mailbox)) {
		return none, false, nil
	}
	wasLoaded := allIn(d.copied(), d.Loaded) && !contains(d.Waiting, mailbox)
	d.Waiting = remove(d.Waiting, mailbox)
	d.Loaded = insert(d.Loaded, mailbox)
	if verified {
		d.Verified = insert(d.Verified, mailbox)
	}
	return s.progress(wasLoaded)
}

// waiting records a mailbox of the current pass that waits for its user
// (the source has no password for it until they sign in): the domain goes
// on without it, and moves on when it was the last one outstanding. The
// domain's next pass tries it again.
func (s *stepper) waiting(mailbox string) (Action, bool, error) {
	d := s.d
	if contains(d.Waiting, mailbox) || contains(d.Loaded, mailbox) {
		return none, false, nil
	}
	wasLoaded := allIn(d.copied(), d.Loaded)
	d.Waiting = insert(d.Waiting, mailbox)
	return s.progress(wasLoaded)
}

// progress moves the domain on when every mailbox it copies in the
// current pass (every mailbox not waiting for its user) is loaded, or
// verified where its phase needs that. wasLoaded says they all were
// loaded before the fact. A domain whose mailboxes all wait moves on
// too: their new mailboxes exist, new mail reaches them after the
// switch, and each is copied once its user signs in.
func (s *stepper) progress(wasLoaded bool) (Action, bool, error) {
	d := s.d
	copied := d.copied()
	loaded, done := allIn(copied, d.Loaded), allIn(copied, d.Verified)
	switch d.Phase {
	case Prestaging:
		switch {
		case !needsVerify(*d):
			if loaded {
				return s.enter(Draining, false)
			}
		case done && d.DNS.Skipped:
			return s.enter(Done, false)
		case done:
			return s.enter(Switching, false)
		case loaded && !wasLoaded:
			return Next(*d), true, nil
		}
	case Delta:
		if loaded {
			act, _, err := s.enter(Verifying, false)
			if err != nil || !done {
				return act, true, err
			}
			return s.enter(Done, false)
		}
	case Verifying:
		if done {
			return s.enter(Done, false)
		}
	}
	return none, true, nil
}

// enter moves the domain to phase to (again, with again: a retry) and
// returns the action it calls for; a copy phase starts its pass.
func (s *stepper) enter(to Phase, again bool) (Action, bool, error) {
	d := s.d
	if !again && !Legal(d.Order, d.Phase, to) {
		return none, false, s.refuse(d.Phase, to)
	}
	d.Phase = to
	d.Entered[to] = s.now
	if kind, ok := passKinds[to]; ok {
		d.Pass = PassID(d.Domain, kind, d.Attempt)
		d.Loaded, d.Verified, d.Waiting = nil, nil, nil
		d.Passes = append(d.Passes, PassRef{Kind: kind, ID: d.Pass, Started: s.now})
	}
	if again && to == Verifying {
		// A retried verification checks the delta pass once more.
		d.Verified = nil
	}
	return Next(*d), true, nil
}

// passKinds are the phases that start a pass.
var passKinds = map[Phase]PassKind{Prestaging: PassPrestage, Delta: PassDelta}

// recorded notes what was done after the domain ended.
func (s *stepper) recorded(f Recorded) (Action, bool, error) {
	a := &s.d.After
	before := *a
	if f.TTL != 0 {
		a.TTLRestored = f.TTL
	}
	if f.Report != "" {
		a.Report, a.ReportPhase = f.Report, f.ReportPhase
	}
	return none, *a != before, nil
}

// fail stops the domain in its phase for reason.
func (s *stepper) fail(reason string) (Action, bool, error) {
	d := s.d
	d.Stopped, d.Phase, d.Reason = d.Phase, Failed, reason
	d.Entered[Failed] = s.now
	return none, true, nil
}

func (s *stepper) refuse(from, to Phase) error {
	return &TransitionError{Domain: s.d.Domain, From: from, To: to, Order: s.d.Order, Fact: s.fact.Name()}
}
