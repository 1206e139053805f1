package campaign

import (
	"fmt"
	"time"

	"github.com/mailferry/mailferry/shared/event"
)

// Fact is what moves a domain: an event (FromEvent makes it), an
// operator's command or the clock.
type Fact interface {
	// Name names the fact in errors and logs.
	Name() string
}

// Start admits a queued domain to its cutover (the orchestrator, within
// cutover.domains_in_flight).
type Start struct{}

// Provisioned is domain.provisioned: every mailbox exists at the target.
type Provisioned struct{}

// ProvisionFailed is a provisioning that needs a person: the target
// refused to create some of the domain's mailboxes.
type ProvisionFailed struct{ Reason string }

// MailboxQueued is mailbox.queued: a pass over the mailbox was queued.
type MailboxQueued struct{ Mailbox, Pass string }

// MailboxLoaded is mailbox.loaded: the loader finished Pass.
type MailboxLoaded struct {
	Mailbox, Pass string
	Counts        Counts
}

// MailboxVerified is mailbox.verified: the target holds the mailbox as
// of Pass.
type MailboxVerified struct{ Mailbox, Pass string }

// MailboxFailed is a mailbox's pass failed for good: a mailbox.failed
// not retried, or a verification that found differences. At is when (the
// event's time; zero: now). WaitingForUser says the source has no
// password for the mailbox until its user signs in (event.FailedData's):
// the mailbox waits, its domain goes on without it.
type MailboxFailed struct {
	Mailbox, Pass, Reason string
	At                    time.Time
	WaitingForUser        bool
}

// Switched is dns.switched.
type Switched struct {
	At              time.Time
	Serial          uint32
	OldTTL          uint32
	OldTTLExpiresAt time.Time
}

// SwitchSkipped is dns.skipped: dnsctl did not switch the domain, for
// Code. At is when (the event's time; zero: now).
type SwitchSkipped struct {
	Code, Reason string
	At           time.Time
}

// SwitchFailed is dns.failed. At is when (the event's time; zero: now).
type SwitchFailed struct {
	Phase, Reason string
	At            time.Time
}

// Pause is the operator's `cutover pause`.
type Pause struct{ Reason string }

// Resume is the operator's `cutover resume`.
type Resume struct{}

// Retry is the operator's retry of a failed domain.
type Retry struct{}

// Abort is the operator's `cutover abort`: the domain fails where it is.
type Abort struct{ Reason string }

// Recorded notes what was done after a domain ended: a TTL restored
// (TTL), a report written (Report, in ReportPhase). Zero fields change
// nothing.
type Recorded struct {
	TTL         uint32
	Report      string
	ReportPhase Phase
}

// Close is the operator's `cutover close`: the domain's old mailboxes are
// closed. Only a done domain can be closed.
type Close struct{}

// Tick is the clock: draining ends at its first tick at or after
// DrainUntil.
type Tick struct{}

// Name names Start.
func (Start) Name() string { return "start" }

// Name names Provisioned.
func (Provisioned) Name() string { return event.DomainProvisioned }

// Name names ProvisionFailed.
func (ProvisionFailed) Name() string { return "provision_failed" }

// Name names MailboxQueued.
func (MailboxQueued) Name() string { return event.MailboxQueued }

// Name names MailboxLoaded.
func (MailboxLoaded) Name() string { return event.MailboxLoaded }

// Name names MailboxVerified.
func (MailboxVerified) Name() string { return event.MailboxVerified }

// Name names MailboxFailed.
func (MailboxFailed) Name() string { return event.MailboxFailed }

// Name names Switched.
func (Switched) Name() string { return event.DNSSwitched }

// Name names SwitchSkipped.
func (SwitchSkipped) Name() string { return event.DNSSkipped }

// Name names SwitchFailed.
func (SwitchFailed) Name() string { return event.DNSFailed }

// Name names Pause.
func (Pause) Name() string { return "pause" }

// Name names Resume.
func (Resume) Name() string { return "resume" }

// Name names Retry.
func (Retry) Name() string { return "retry" }

// Name names Abort.
func (Abort) Name() string { return "abort" }

// Name names Recorded.
func (Recorded) Name() string { return "recorded" }

// Name names Close.
func (Close) Name() string { return "close" }

// Name names Tick.
func (Tick) Name() string { return "tick" }

// FromEvent is the fact an event states and the domain it is about (a
// mailbox's as ds says); nil for an event that moves no campaign (a
// retried failure, a renamed folder, a password change...).
func FromEvent(e *event.Event, ds Domains) (Fact, string, error) {
	switch e.Type {
	case event.DomainProvisioned:
		return Provisioned{}, NormalizeDomain(e.Key), nil
	case event.MailboxQueued:
		var d event.QueuedData
		if err := e.DataAs(&d); err != nil {
			return nil, "", err
		}
		return MailboxQueued{Mailbox: e.Key, Pass: d.Pass}, ds.Of(e.Key), nil
	case event.MailboxLoaded:
		var d event.LoadedData
		if err := e.DataAs(&d); err != nil {
			return nil, "", err
		}
		return MailboxLoaded{Mailbox: e.Key, Pass: d.Pass,
			Counts: Counts{Appended: d.Appended, Skipped: d.Skipped, Dead: d.Dead, Bytes: d.Bytes}}, ds.Of(e.Key), nil
	case event.MailboxVerified:
		var d event.VerifiedData
		if err := e.DataAs(&d); err != nil {
			return nil, "", err
		}
		// A verification that found differences fails the mailbox: its
		// domain stops where it is until the differences are repaired or
		// accepted (`verify accept`) and a new verification finds none.
		if !d.OK() {
			return MailboxFailed{Mailbox: e.Key, Pass: d.Pass, At: e.Time,
				Reason: fmt.Sprintf("verification: %d differences (%d missing)", d.Differences, d.Missing)}, ds.Of(e.Key), nil
		}
		return MailboxVerified{Mailbox: e.Key, Pass: d.Pass}, ds.Of(e.Key), nil
	case event.MailboxFailed:
		var d event.FailedData
		if err := e.DataAs(&d); err != nil {
			return nil, "", err
		}
		if d.Retried {
			return nil, "", nil
		}
		return MailboxFailed{Mailbox: e.Key, Pass: d.Pass, Reason: d.Phase + ": " + d.Reason, At: e.Time,
			WaitingForUser: d.WaitingForUser}, ds.Of(e.Key), nil
	case event.DNSSwitched:
		var d event.DNSSwitchedData
		if err := e.DataAs(&d); err != nil {
			return nil, "", err
		}
		at := d.VerifiedAt
		if at.IsZero() {
			at = e.Time
		}
		return Switched{At: at, Serial: d.Serial, OldTTL: d.OldTTL, OldTTLExpiresAt: d.OldTTLExpiresAt}, NormalizeDomain(e.Key), nil
	case event.DNSSkipped:
		var d event.DNSSkippedData
		if err := e.DataAs(&d); err != nil {
			return nil, "", err
		}
		return SwitchSkipped{Code: d.Code, Reason: d.Reason, At: e.Time}, NormalizeDomain(e.Key), nil
	case event.DNSFailed:
		var d event.DNSFailedData
		if err := e.DataAs(&d); err != nil {
			return nil, "", err
		}
		return SwitchFailed{Phase: d.Phase, Reason: d.Reason, At: e.Time}, NormalizeDomain(e.Key), nil
	}
	return nil, "", nil
}

// SkipCodes are dnsctl's dns.skipped codes (services/dnsctl/plan) that
// mean the domain's DNS is not the campaign's to switch: the campaign
// copies it and closes it without a switch. CodeAlreadySwitched counts as
// a switch at the event's time; any other code fails the domain in
// switching for a person to decide.
var SkipCodes = map[string]bool{
	"no_mx":             true, // it receives no mail
	"external":          true, // its mail is hosted elsewhere
	"cname_third_party": true, // a mail host is a CNAME to a third party
	CodeNotConfigured:   true, // the campaign has no dns section
}

// CodeNotConfigured is the skip code of every domain of a campaign whose
// configuration has no dns section: the campaign copies and verifies its
// domains but switches none.
const CodeNotConfigured = "dns_not_configured"

// CodeAlreadySwitched is dnsctl's dns.skipped code for a domain whose MX
// points at the new provider already.
const CodeAlreadySwitched = "already_switched"

// TransitionError is a fact refused because it would move a domain
// along an edge its order does not have.
type TransitionError struct {
	Domain   string
	From, To Phase
	Order    Order
	Fact     string
}

// Error names the domain, both phases and the fact.
func (e *TransitionError) Error() string {
	return fmt.Sprintf("campaign: domain %s (%s): %s cannot go from %s to %s", e.Domain, e.Order, e.Fact, e.From, e.To)
}
