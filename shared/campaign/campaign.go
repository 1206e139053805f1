// Package campaign is the cutover campaign's state: one record per domain
// and one per mailbox in the JetStream key-value bucket mf_campaign, the
// phase machine that moves a domain through its cutover (Step, a pure
// function of the record and a fact), the store that applies facts to the
// records by compare-and-set (Store), and a lease so that of several
// orchestrator instances one acts (Lease).
//
// It is in shared, not in cmd/mailferry, because more than the CLI reads
// and writes it: the orchestrator runs as its own daemon too, and
// `mailferry status` and `cutover status` read the same records.
//
// # Phases
//
// A domain goes through queued, provisioning, prestaging, switching,
// draining, delta, verifying and done, in the order its Order says:
//
//   - OrderPrestage (the default): provision; copy and verify every
//     mailbox (prestaging); ask dnsctl to switch the MX (switching); wait
//     until the old MX TTL has expired plus the delta grace (draining);
//     copy once more (delta); verify (verifying); done.
//   - OrderSwitchFirst: provision; switch (switching); copy (prestaging,
//     which ends when every mailbox is loaded: mail keeps arriving at the
//     source until the old TTL expired, so verifying now proves nothing);
//     draining, delta, verifying and done as above.
//
// A domain whose DNS is skipped (its MX hosted elsewhere: DNS.Skipped,
// known when the campaign is planned or told by dnsctl's dns.skipped with
// a code in SkipCodes) is copied and verified and then done: without a
// switch there is no moment after which the source stops receiving mail,
// so there is nothing to drain and no delta pass to run. In OrderPrestage
// it goes from prestaging (every mailbox verified) to done, or from
// switching to done when dnsctl tells it in answer to the request; in
// OrderSwitchFirst it goes from provisioning (or switching) to
// prestaging, whose pass must then be verified, and on to done. A
// dns.skipped with CodeAlreadySwitched (the MX points at the new
// provider already: switched by hand, or a request repeated after a
// switch) counts as switched at the event's time with no old TTL known:
// draining waits the grace, and the delta pass runs. A dns.skipped with
// another code (a mixed MX, records that could not be read, a server not
// authoritative) fails the domain in switching: a person decides, and
// retry asks again.
//
// Failed and Paused keep the phase they stopped in (Stopped) and the
// reason; Resume returns to it, Retry re-enters it (a copy phase with a
// new pass), counting the attempt. While paused, the facts of work already
// under way (a mailbox loaded, the switch done) still move the phase kept
// in Stopped, so that Resume goes on from where the domain really is; the
// clock and Start do not. While failed, only Retry and Abort count.
//
// A mailbox whose pass failed because the source has no password for it
// until its user signs in on the change page (MailboxFailed with
// WaitingForUser) does not fail its domain: it is recorded in Waiting,
// and the domain goes on with its other mailboxes (a phase that waits for
// every mailbox loaded or verified waits for those not waiting). A domain
// whose mailboxes all wait goes on too: their new mailboxes exist, and
// after the switch new mail reaches them there. Each new pass (the delta
// pass, a retry's) tries them again, so a user who signed in meanwhile
// is copied with the others; a mailbox still waiting when its domain is
// done is copied by the pass its user's sign-in queues, outside the
// campaign.
//
// Every fact is idempotent: applying one the record already reflects
// changes nothing, so replaying the event stream after a crash converges.
// Facts of a pass other than the current one are ignored; a failure (of a
// mailbox, of the switch) dated before the domain entered its phase (by
// more than ClockSkew) belongs to an attempt a Retry ended and is ignored
// too. A fact that would move a domain along an edge its order does not have
// is refused with a *TransitionError naming both phases.
package campaign

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mailferry/mailferry/shared/subject"
)

// Phase is where a domain stands in its cutover.
type Phase string

// Phases of a domain. Failed and Paused keep the phase they stopped in.
const (
	Queued       Phase = "queued"
	Provisioning Phase = "provisioning"
	Prestaging   Phase = "prestaging"
	Switching    Phase = "switching"
	Draining     Phase = "draining"
	Delta        Phase = "delta"
	Verifying    Phase = "verifying"
	Done         Phase = "done"
	Failed       Phase = "failed"
	Paused       Phase = "paused"
)

// Running reports whether p is one of the phases a domain works in:
// neither done, failed nor paused.
func (p Phase) Running() bool {
	switch p {
	case Queued, Provisioning, Prestaging, Switching, Draining, Delta, Verifying:
		return true
	}
	return false
}

// Order is the order a domain's copy and switch come in (cutover.order).
type Order string

// Orders of a cutover.
const (
	// OrderPrestage copies and verifies first, then switches.
	OrderPrestage Order = "prestage"
	// OrderSwitchFirst provisions, switches the MX, then copies.
	OrderSwitchFirst Order = "switch_first"
)

// DefaultDeltaGrace is how long after the old MX TTL expired the delta
// pass waits when the campaign sets no cutover.delta_grace: sending
// servers keep retrying the old MX for a while.
const DefaultDeltaGrace = time.Hour

// PassKind is what a pass is for.
type PassKind string

// Kinds of pass.
const (
	PassPrestage PassKind = "prestage"
	PassDelta    PassKind = "delta"
)

// PassRef is a pass a domain started.
type PassRef struct {
	Kind    PassKind  `json:"kind"`
	ID      string    `json:"id"`
	Started time.Time `json:"started"`
}

// DNS is what the campaign knows of a domain's switch.
type DNS struct {
	// Skipped says the campaign does not switch the domain; SkipCode and
	// SkipReason say why (dnsctl's code, or the plan's).
	Skipped    bool   `json:"skipped,omitempty"`
	SkipCode   string `json:"skip_code,omitempty"`
	SkipReason string `json:"skip_reason,omitempty"`
	// SwitchedAt is when every authoritative server served the new
	// records (zero until then); Serial is the SOA serial they have.
	SwitchedAt time.Time `json:"switched_at,omitzero"`
	Serial     uint32    `json:"serial,omitempty"`
	// OldTTL is the longest TTL of the replaced MX records, in seconds;
	// OldTTLExpiresAt is when no resolver can send mail by them any more.
	OldTTL          uint32    `json:"old_ttl,omitempty"`
	OldTTLExpiresAt time.Time `json:"old_ttl_expires_at,omitzero"`
}

// Switched reports whether the domain's switch is done.
func (d DNS) Switched() bool { return !d.SwitchedAt.IsZero() }

// Status says in a line where the domain's DNS stands, for `cutover
// status`: "switched 2026-12-06T10:00:00Z (serial 7, old TTL 300s)",
// "skipped: <reason> (<code>)" or "not switched".
func (d DNS) Status() string {
	switch {
	case d.Skipped:
		s := "skipped: " + d.SkipReason
		if d.SkipCode != "" {
			s += " (" + d.SkipCode + ")"
		}
		return s
	case d.Switched():
		return fmt.Sprintf("switched %s (serial %d, old TTL %ds)", d.SwitchedAt.UTC().Format(time.RFC3339), d.Serial, d.OldTTL)
	}
	return "not switched"
}

// Domain is one domain's record.
type Domain struct {
	// Domain is the name, lower case, without a final dot.
	Domain string `json:"domain"`
	Order  Order  `json:"order"`
	Phase  Phase  `json:"phase"`
	// Stopped is, for Failed and Paused, the phase the domain stopped in.
	Stopped Phase `json:"stopped,omitempty"`
	// Reason says why the domain failed or was paused.
	Reason string `json:"reason,omitempty"`
	// Entered is when the domain last entered each phase.
	Entered map[Phase]time.Time `json:"entered,omitempty"`
	// Mailboxes are the domain's mailboxes (source addresses), sorted.
	Mailboxes []string `json:"mailboxes"`
	// Provisioned says domain.provisioned was seen.
	Provisioned bool `json:"provisioned,omitempty"`
	// Pass is the pass of the current copy phase; Loaded and Verified
	// are the mailboxes done with it, sorted.
	Pass     string   `json:"pass,omitempty"`
	Loaded   []string `json:"loaded,omitempty"`
	Verified []string `json:"verified,omitempty"`
	// Waiting are the mailboxes the current pass could not copy because
	// the source has no password for them until their user signs in,
	// sorted: the domain goes on without them, its next pass tries them
	// again, and once it is done a pass queued at the sign-in copies
	// them.
	Waiting []string `json:"waiting_for_user,omitempty"`
	// Passes are the passes the domain started, oldest first.
	Passes []PassRef `json:"passes,omitempty"`
	DNS    DNS       `json:"dns"`
	// DeltaGrace is how long draining waits after the old TTL expired
	// (nanoseconds in JSON).
	DeltaGrace time.Duration `json:"delta_grace"`
	// Attempt counts the tries: 1, and one more per Retry.
	Attempt int `json:"attempt"`
	// After is what was done once the domain was done or failed.
	After   After     `json:"after,omitzero"`
	Updated time.Time `json:"updated,omitzero"`
}

// After is what the orchestrator did once a domain was done or failed:
// the TTLs it restored, the report it wrote, the old mailboxes closed.
type After struct {
	// TTLRestored is the TTL the mail records got back (0: not yet).
	TTLRestored uint32 `json:"ttl_restored,omitempty"`
	// Report is the path of the domain's HTML report and ReportPhase the
	// phase it was written in (a report is written again when it changes).
	Report      string `json:"report,omitempty"`
	ReportPhase Phase  `json:"report_phase,omitempty"`
	// ClosedAt is when an operator marked the domain's old mailboxes
	// closed (`cutover close`): nothing is copied from them any more.
	ClosedAt time.Time `json:"closed_at,omitzero"`
}

// DomainOf is the domain of a mailbox address, lower case: what follows
// its last @ (the address itself when it has none).
func DomainOf(mailbox string) string {
	return NormalizeDomain(mailbox[strings.LastIndexByte(mailbox, '@')+1:])
}

// NormalizeDomain is name in lower case without its final dot, as records
// and events name domains.
func NormalizeDomain(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// NewDomain is the record of a domain queued for its cutover with its
// mailboxes, each of the domain as ds says; order "" is OrderPrestage and
// grace 0 DefaultDeltaGrace. skip, when not nil, says from the plan that
// its DNS is not switched.
func NewDomain(name string, mailboxes []string, ds Domains, order Order, grace time.Duration, skip *DNS, now time.Time) (Domain, error) {
	d := Domain{Domain: NormalizeDomain(name), Order: order, Phase: Queued, DeltaGrace: grace, Attempt: 1,
		Entered: map[Phase]time.Time{Queued: now.UTC()}, Updated: now.UTC()}
	if d.Domain == "" {
		return Domain{}, errors.New("campaign: a domain without a name")
	}
	switch order {
	case "":
		d.Order = OrderPrestage
	case OrderPrestage, OrderSwitchFirst:
	default:
		return Domain{}, fmt.Errorf("campaign: domain %s: order %q is neither %s nor %s", d.Domain, order, OrderPrestage, OrderSwitchFirst)
	}
	if grace <= 0 {
		d.DeltaGrace = DefaultDeltaGrace
	}
	for _, m := range mailboxes {
		if ds.Of(m) != d.Domain {
			return Domain{}, fmt.Errorf("campaign: mailbox %s is not of domain %s", m, d.Domain)
		}
		d.Mailboxes = insert(d.Mailboxes, m)
	}
	if len(d.Mailboxes) == 0 {
		return Domain{}, fmt.Errorf("campaign: domain %s has no mailboxes", d.Domain)
	}
	if skip != nil {
		d.DNS = DNS{Skipped: true, SkipCode: skip.SkipCode, SkipReason: skip.SkipReason}
	}
	return d, nil
}

// DrainUntil is when draining ends: the old MX TTL expired plus the
// delta grace (zero before the switch).
func (d *Domain) DrainUntil() time.Time {
	if !d.DNS.Switched() {
		return time.Time{}
	}
	expires := d.DNS.OldTTLExpiresAt
	if expires.IsZero() {
		expires = d.DNS.SwitchedAt.Add(time.Duration(d.DNS.OldTTL) * time.Second)
	}
	return expires.Add(d.DeltaGrace)
}

// PassID is the id of a domain's pass of kind at attempt: the same for
// the same three, so enqueuing it again after a crash is a duplicate the
// jobs stream drops.
func PassID(domain string, kind PassKind, attempt int) string {
	return "cutover-" + subject.Key(NormalizeDomain(domain)) + "-" + string(kind) + "-" + strconv.Itoa(attempt)
}

// clone copies d's slices and map, so a step never writes to its input.
func (d Domain) clone() Domain {
	d.Entered = cloneMap(d.Entered)
	d.Mailboxes = slices.Clone(d.Mailboxes)
	d.Loaded = slices.Clone(d.Loaded)
	d.Verified = slices.Clone(d.Verified)
	d.Waiting = slices.Clone(d.Waiting)
	d.Passes = slices.Clone(d.Passes)
	return d
}

func cloneMap(m map[Phase]time.Time) map[Phase]time.Time {
	c := make(map[Phase]time.Time, len(m)+1)
	for k, v := range m {
		c[k] = v
	}
	return c
}

// insert adds s to the sorted set, if absent.
func insert(set []string, s string) []string {
	i, found := slices.BinarySearch(set, s)
	if found {
		return set
	}
	return slices.Insert(set, i, s)
}

// remove takes s out of the sorted set, if present.
func remove(set []string, s string) []string {
	i, found := slices.BinarySearch(set, s)
	if !found {
		return set
	}
	return slices.Delete(set, i, i+1)
}

// copied are the mailboxes the current pass copies: all but those
// waiting for their user.
func (d *Domain) copied() []string {
	if len(d.Waiting) == 0 {
		return d.Mailboxes
	}
	var out []string
	for _, m := range d.Mailboxes {
		if !contains(d.Waiting, m) {
			out = append(out, m)
		}
	}
	return out
}

func contains(set []string, s string) bool {
	_, found := slices.BinarySearch(set, s)
	return found
}

// MailboxPhase is where a mailbox stands in its domain's campaign.
type MailboxPhase string

// Phases of a mailbox.
const (
	BoxQueued   MailboxPhase = "queued"
	BoxCopying  MailboxPhase = "copying"
	BoxLoaded   MailboxPhase = "loaded"
	BoxVerified MailboxPhase = "verified"
	BoxFailed   MailboxPhase = "failed"
)

// Counts are a mailbox's messages and bytes moved, summed over its passes.
type Counts struct {
	Appended int64 `json:"appended"`
	Skipped  int64 `json:"skipped"`
	Dead     int64 `json:"dead"`
	Bytes    int64 `json:"bytes"`
}

// LeftWaiting reports whether d's current pass left mailbox record m
// waiting for its user (Waiting) and no pass has loaded it since (a pass
// queued at its user's sign-in).
func (d *Domain) LeftWaiting(m Mailbox) bool {
	return contains(d.Waiting, m.Mailbox) && m.Phase != BoxLoaded && m.Phase != BoxVerified
}

// Mailbox is one mailbox's record.
type Mailbox struct {
	Mailbox string       `json:"mailbox"`
	Domain  string       `json:"domain"`
	Phase   MailboxPhase `json:"phase"`
	// Pass is the last pass the mailbox was seen in.
	Pass   string `json:"pass,omitempty"`
	Reason string `json:"reason,omitempty"`
	Counts Counts `json:"counts"`
	// Counted are the passes whose loaded counts are in Counts.
	Counted []string  `json:"counted,omitempty"`
	Updated time.Time `json:"updated,omitzero"`
}
