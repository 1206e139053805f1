// Package report makes a domain's cutover report: what happened to the
// domain and each of its mailboxes, for the customer (<domain>.html) and
// for machines (<domain>.json, the same data).
//
// Gather reads it all from JetStream: the campaign's records (phase,
// times, DNS, counts per mailbox summed over passes, the last
// verification of each mailbox), the folder.renamed events of the
// domain's mailboxes, their dead letters, and from the auth service's
// accounts who has not set the new password yet. A stream or bucket that
// does not exist yet does not stop the report: what it would have told is
// listed in Report.Unknown. Write writes both files atomically.
package report

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/cmd/mailferry/verify"
	"github.com/mailferry/mailferry/services/auth/account"
	"github.com/mailferry/mailferry/services/auth/authconfig"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/campaign"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/subject"
)

// Report is one domain's cutover report.
type Report struct {
	Domain string `json:"domain"`
	// Generated is when the report was gathered.
	Generated time.Time `json:"generated"`
	// Phase is the domain's phase; for failed and paused, Stopped is the
	// phase it stopped in and Reason says why.
	Phase   campaign.Phase `json:"phase"`
	Stopped campaign.Phase `json:"stopped,omitempty"`
	Reason  string         `json:"reason,omitempty"`
	// Started is when the cutover's work began (the domain entered its
	// first phase after queued); Ended when it entered done or failed.
	Started *time.Time `json:"started,omitempty"`
	Ended   *time.Time `json:"ended,omitempty"`
	// Timeline is when the domain last entered each phase, oldest first.
	Timeline []Step `json:"timeline"`
	// DNS is campaign.DNS.Status(); Switched and Skipped repeat its facts.
	DNS        string     `json:"dns"`
	DNSSkipped bool       `json:"dns_skipped,omitempty"`
	SwitchedAt *time.Time `json:"dns_switched_at,omitempty"`
	// Totals are the mailboxes' counts summed.
	Totals    Totals    `json:"totals"`
	Mailboxes []Mailbox `json:"mailboxes"`
	// WaitingForUser names the mailboxes the domain's cutover went on
	// without because their user has not signed in on the change page
	// yet (the old server has no password for them): each is copied by
	// the pass its user's sign-in queues, outside the campaign.
	WaitingForUser []string `json:"waiting_for_user,omitempty"`
	// Renamed are the folders that got another name at the new provider.
	Renamed []Rename `json:"renamed"`
	// Differences are those the last verification of each mailbox found,
	// accepted ones included (Difference.Accepted).
	Differences []Difference `json:"differences"`
	// DeadLetters are the messages the new provider refused for good.
	DeadLetters []DeadLetter `json:"dead_letters"`
	Passwords   Passwords    `json:"passwords"`
	// Unknown says what the report could not find out, and why.
	Unknown []string `json:"unknown,omitempty"`
}

// Step is a phase and when the domain last entered it.
type Step struct {
	Phase   campaign.Phase `json:"phase"`
	Entered time.Time      `json:"entered"`
}

// Totals are counts over the domain's mailboxes.
type Totals struct {
	Mailboxes int   `json:"mailboxes"`
	Messages  int64 `json:"messages"`
	Bytes     int64 `json:"bytes"`
	Dead      int64 `json:"dead"`
	// Differences counts those not accepted, Accepted the others.
	Differences int `json:"differences"`
	Accepted    int `json:"accepted"`
}

// Mailbox is one mailbox: its phase, what was moved (summed over the
// passes) and its last verification.
type Mailbox struct {
	Mailbox string                `json:"mailbox"`
	Phase   campaign.MailboxPhase `json:"phase"`
	Reason  string                `json:"reason,omitempty"`
	// WaitingForUser says the mailbox waits for its user's sign-in (see
	// Report.WaitingForUser).
	WaitingForUser bool `json:"waiting_for_user,omitempty"`
	// Messages were copied (appended at the target); Skipped were there
	// already; Dead were refused; Bytes is the size of those copied.
	Messages int64 `json:"messages"`
	Skipped  int64 `json:"skipped"`
	Dead     int64 `json:"dead"`
	Bytes    int64 `json:"bytes"`
	// Verification is the last verification, nil when there was none.
	Verification *Verification `json:"verification,omitempty"`
}

// Verification is a mailbox's last verification.
type Verification struct {
	At time.Time `json:"at"`
	OK bool      `json:"ok"`
	// Messages and Bytes are what the source holds, as verified.
	Messages    int   `json:"messages"`
	Bytes       int64 `json:"bytes"`
	Differences int   `json:"differences"`
	// NewAtTarget counts mail that reached the new provider by itself
	// after the switch: expected, not a difference.
	NewAtTarget int `json:"new_at_target,omitempty"`
	// DeletedAtSource counts messages deleted at the old server after
	// they were copied (kept at the new one); Resynced the messages whose
	// flags (read, flagged...) were brought up to date at the new one.
	DeletedAtSource int `json:"deleted_at_source,omitempty"`
	Resynced        int `json:"resynced,omitempty"`
	// Error says why the verification could not finish.
	Error string `json:"error,omitempty"`
	Note  string `json:"note,omitempty"`
}

// Rename is a folder that got another name at the new provider.
type Rename struct {
	Mailbox string `json:"mailbox"`
	From    string `json:"from"`
	To      string `json:"to"`
	Reason  string `json:"reason"`
}

// Difference is one message the last verification found different,
// named as a person looks for it.
type Difference struct {
	Mailbox   string `json:"mailbox"`
	Kind      string `json:"kind"`
	Folder    string `json:"folder"`
	UID       uint32 `json:"uid"`
	Size      int64  `json:"size"`
	Date      string `json:"date"`
	From      string `json:"from"`
	Subject   string `json:"subject"`
	MessageID string `json:"message_id"`
	// Want and Got say, for flags and date, what differs.
	Want string `json:"want,omitempty"`
	Got  string `json:"got,omitempty"`
	// Accepted says the difference is known and explained (`verify
	// accept`), AcceptedReason how.
	Accepted       bool   `json:"accepted"`
	AcceptedReason string `json:"accepted_reason,omitempty"`
}

// DeadLetter is a message the new provider refused for good.
type DeadLetter struct {
	Mailbox string `json:"mailbox"`
	Folder  string `json:"folder"`
	UID     uint32 `json:"uid"`
	Size    int64  `json:"size"`
	// Date, From and Subject are read from the message's record in the
	// mail stream; empty when it has passed the stream's retention.
	Date    string `json:"date"`
	From    string `json:"from"`
	Subject string `json:"subject"`
	// Reason is the server's explanation; Response its whole answer.
	Reason   string    `json:"reason"`
	Response string    `json:"response"`
	Time     time.Time `json:"time"`
}

// Passwords says who still has to set the password the new provider
// needs.
type Passwords struct {
	// Managed is false when the migration does not handle passwords (no
	// auth section); Known false when the accounts could not be read.
	Managed bool `json:"managed"`
	Known   bool `json:"known"`
	// Accounts counts the domain's accounts, Set those that set their
	// password; Pending are the others' addresses.
	Accounts int      `json:"accounts"`
	Set      int      `json:"set"`
	Pending  []string `json:"pending"`
	Note     string   `json:"note,omitempty"`
}

// Gather reads domain's report from the campaign store, the events and
// dead-letter streams and the accounts bucket of b. Only the campaign's
// domain record is required; a stream or bucket that does not exist is
// noted in Report.Unknown.
func Gather(ctx context.Context, cfg *config.Config, b *broker.Broker, store *campaign.Store, domain string) (*Report, error) {
	d, ok, err := store.Get(ctx, domain)
	if err != nil {
		return nil, fmt.Errorf("report on %s: %w", domain, err)
	}
	if !ok {
		return nil, fmt.Errorf("report on %s: %w", domain, campaign.ErrNoDomain)
	}
	r := &Report{Domain: d.Domain, Generated: time.Now().UTC(), Phase: d.Phase, Stopped: d.Stopped, Reason: clean(d.Reason),
		DNS: d.DNS.Status(), DNSSkipped: d.DNS.Skipped,
		Mailboxes: []Mailbox{}, Renamed: []Rename{}, Differences: []Difference{}, DeadLetters: []DeadLetter{}}
	r.timeline(d)
	if d.DNS.Switched() {
		t := d.DNS.SwitchedAt.UTC()
		r.SwitchedAt = &t
	}
	boxes, err := store.Mailboxes(ctx, d.Domain)
	if err != nil {
		return nil, fmt.Errorf("report on %s: %w", d.Domain, err)
	}
	if err := r.mailboxes(ctx, store, d, boxes); err != nil {
		return nil, fmt.Errorf("report on %s: %w", d.Domain, err)
	}
	names := make([]string, len(r.Mailboxes))
	for i, m := range r.Mailboxes {
		names[i] = m.Mailbox
	}
	if err := r.renamed(ctx, b.JS, names); err != nil {
		return nil, fmt.Errorf("report on %s: %w", d.Domain, err)
	}
	if err := r.dead(ctx, b.JS, names); err != nil {
		return nil, fmt.Errorf("report on %s: %w", d.Domain, err)
	}
	if err := r.passwords(ctx, cfg, b.JS); err != nil {
		return nil, fmt.Errorf("report on %s: %w", d.Domain, err)
	}
	return r, nil
}

// timeline fills Started, Ended and Timeline from when d entered its
// phases.
func (r *Report) timeline(d campaign.Domain) {
	for p, t := range d.Entered {
		r.Timeline = append(r.Timeline, Step{Phase: p, Entered: t.UTC()})
	}
	slices.SortFunc(r.Timeline, func(a, b Step) int {
		if c := a.Entered.Compare(b.Entered); c != 0 {
			return c
		}
		return strings.Compare(string(a.Phase), string(b.Phase))
	})
	if r.Timeline == nil {
		r.Timeline = []Step{}
	}
	for _, s := range r.Timeline {
		if s.Phase != campaign.Queued {
			t := s.Entered
			r.Started = &t
			break
		}
	}
	if d.Phase == campaign.Done || d.Phase == campaign.Failed {
		if t, ok := d.Entered[d.Phase]; ok {
			t = t.UTC()
			r.Ended = &t
		}
	}
}

// mailboxes fills Mailboxes, their verifications and Differences: the
// campaign's mailbox records, and for a mailbox of the domain that has
// none yet, a queued one.
func (r *Report) mailboxes(ctx context.Context, store *campaign.Store, d campaign.Domain, boxes []campaign.Mailbox) error {
	byName := map[string]campaign.Mailbox{}
	for _, m := range boxes {
		byName[m.Mailbox] = m
	}
	names := slices.Clone(d.Mailboxes)
	for _, m := range boxes {
		if !slices.Contains(names, m.Mailbox) {
			names = append(names, m.Mailbox)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		m, ok := byName[name]
		if !ok {
			m = campaign.Mailbox{Mailbox: name, Phase: campaign.BoxQueued}
		}
		mb := Mailbox{Mailbox: clean(name), Phase: m.Phase, Reason: clean(m.Reason), WaitingForUser: d.LeftWaiting(m),
			Messages: m.Counts.Appended, Skipped: m.Counts.Skipped, Dead: m.Counts.Dead, Bytes: m.Counts.Bytes}
		if mb.WaitingForUser {
			r.WaitingForUser = append(r.WaitingForUser, mb.Mailbox)
		}
		c, ok, err := store.Check(ctx, d.Domain, name)
		if err != nil {
			return err
		}
		if ok {
			v, diffs, err := verification(c)
			if err != nil {
				return err
			}
			mb.Verification = v
			r.Differences = append(r.Differences, diffs...)
			for _, d := range diffs {
				if d.Accepted {
					r.Totals.Accepted++
				} else {
					r.Totals.Differences++
				}
			}
		}
		r.Mailboxes = append(r.Mailboxes, mb)
		r.Totals.Mailboxes++
		r.Totals.Messages += mb.Messages
		r.Totals.Bytes += mb.Bytes
		r.Totals.Dead += mb.Dead
	}
	return nil
}

// verification decodes a mailbox's last check: the verifier's report of
// the mailbox (verify.MailboxReport) and each difference it found.
func verification(c campaign.Check) (*Verification, []Difference, error) {
	var mr verify.MailboxReport
	if len(c.Report) > 0 {
		if err := json.Unmarshal(c.Report, &mr); err != nil {
			return nil, nil, fmt.Errorf("decode the verification of %s: %w", c.Mailbox, err)
		}
	}
	v := &Verification{At: c.At.UTC(), OK: c.OK, Messages: mr.Messages, Bytes: mr.Bytes, NewAtTarget: mr.NewAtTarget,
		DeletedAtSource: mr.DeletedAtSource, Resynced: mr.Resynced,
		Error: clean(mr.Error), Note: clean(mr.Note)}
	diffs := []Difference{}
	for _, f := range mr.Folders {
		for _, d := range f.Differences {
			diffs = append(diffs, difference(c.Mailbox, f.Target, d, false, ""))
		}
		for _, a := range f.Accepted {
			diffs = append(diffs, difference(c.Mailbox, f.Target, a.Diff, true, a.Reason))
		}
	}
	v.Differences = len(diffs)
	return v, diffs, nil
}

// difference is d of a mailbox's check as the report shows it; accepted
// ones (`verify accept`: known and explained) carry the reason.
func difference(mailbox, target string, d verify.Diff, accepted bool, reason string) Difference {
	folder := d.Folder
	if folder == "" {
		folder = target
	}
	return Difference{Mailbox: clean(mailbox), Kind: d.Kind, Folder: clean(folder), UID: d.UID, Size: d.Size,
		Date: clean(d.Date), From: clean(d.From), Subject: clean(d.Subject), MessageID: clean(d.MessageID),
		Want: clean(d.Want), Got: clean(d.Got), Accepted: accepted, AcceptedReason: clean(reason)}
}

// renamed fills Renamed from the folder.renamed events of the mailboxes:
// for each mailbox and source folder the latest.
func (r *Report) renamed(ctx context.Context, js jetstream.JetStream, mailboxes []string) error {
	want := make(map[string]string, len(mailboxes))
	for _, m := range mailboxes {
		want[subject.Event(event.FolderRenamed, m)] = m
	}
	msgs, found, err := readSubjects(ctx, js, broker.StreamEvents, subject.EventPrefix+"."+event.FolderRenamed+".>", want)
	if err != nil {
		return fmt.Errorf("read renamed folders: %w", err)
	}
	if !found {
		r.Unknown = append(r.Unknown, "renamed folders: the events stream "+broker.StreamEvents+" does not exist yet")
		return nil
	}
	type key struct{ mailbox, source string }
	at := map[key]int{}
	for _, m := range msgs {
		e, err := event.Decode(m.data)
		if errors.Is(err, event.ErrUnknownVersion) {
			r.Unknown = append(r.Unknown, "renamed folders: an event of another version (upgrade mailferry)")
			continue
		}
		if err != nil {
			return err
		}
		var d event.RenamedData
		if err := e.DataAs(&d); err != nil {
			return err
		}
		rn := Rename{Mailbox: clean(want[m.subject]), From: clean(d.Source), To: clean(d.Target), Reason: clean(d.Reason)}
		k := key{rn.Mailbox, rn.From}
		if i, ok := at[k]; ok {
			r.Renamed[i] = rn
			continue
		}
		at[k] = len(r.Renamed)
		r.Renamed = append(r.Renamed, rn)
	}
	slices.SortStableFunc(r.Renamed, func(a, b Rename) int {
		if c := strings.Compare(a.Mailbox, b.Mailbox); c != 0 {
			return c
		}
		return strings.Compare(a.From, b.From)
	})
	return nil
}

// passwords fills Passwords from the auth service's accounts of the
// domain.
func (r *Report) passwords(ctx context.Context, cfg *config.Config, js jetstream.JetStream) error {
	r.Passwords = Passwords{Pending: []string{}}
	a, err := authconfig.Load(cfg)
	if err != nil {
		return err
	}
	if !a.Configured() {
		r.Passwords.Note = "passwords: not managed by this migration"
		return nil
	}
	r.Passwords.Managed = true
	st, err := account.Bind(ctx, js, a.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		r.Passwords.Note = "the accounts bucket " + a.Bucket + " does not exist yet: the auth service creates it"
		r.Unknown = append(r.Unknown, "passwords: "+r.Passwords.Note)
		return nil
	}
	if err != nil {
		return err
	}
	all, err := st.List(ctx)
	if err != nil {
		return err
	}
	r.Passwords.Known = true
	for _, acc := range all {
		if campaign.NormalizeDomain(acc.Domain) != r.Domain {
			continue
		}
		r.Passwords.Accounts++
		if acc.PasswordUpdateRequired() {
			r.Passwords.Pending = append(r.Passwords.Pending, clean(acc.Email))
		} else {
			r.Passwords.Set++
		}
	}
	return nil
}

// clean makes s valid UTF-8, so that the JSON and the HTML say the same.
func clean(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }
