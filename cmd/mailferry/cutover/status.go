package cutover

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/shared/campaign"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/sourcecred"
)

// Status is where a campaign stands: `cutover status`.
type Status struct {
	Domains []DomainStatus `json:"domains"`
	// Totals counts the domains per phase.
	Totals map[campaign.Phase]int `json:"totals"`
	// WaitingForUser names the campaign's mailboxes waiting for their
	// user's sign-in (see MarkWaiting).
	WaitingForUser []string `json:"waiting_for_user,omitempty"`
}

// waitingNote follows the names of mailboxes waiting for their user.
const waitingNote = "copied when they sign in"

// DomainStatus is one domain's line.
type DomainStatus struct {
	Domain string         `json:"domain"`
	Phase  campaign.Phase `json:"phase"`
	// Stopped is the phase a failed or paused domain stopped in.
	Stopped campaign.Phase `json:"stopped,omitempty"`
	Reason  string         `json:"reason,omitempty"`
	Order   campaign.Order `json:"order"`
	Attempt int            `json:"attempt"`
	// DNS says where the switch stands (campaign.DNS.Status).
	DNS string `json:"dns"`
	// DeltaAt is, while draining, when the delta pass starts.
	DeltaAt   *time.Time      `json:"delta_at,omitempty"`
	Pass      string          `json:"pass,omitempty"`
	Mailboxes []MailboxStatus `json:"mailboxes"`
	// Report and ReportJSON are the paths of the domain's report.
	Report      string     `json:"report,omitempty"`
	ReportJSON  string     `json:"report_json,omitempty"`
	TTLRestored uint32     `json:"ttl_restored,omitempty"`
	ClosedAt    *time.Time `json:"closed_at,omitempty"`
	// WaitingForUser names the mailboxes the domain's pass went on
	// without because their user has not signed in yet (a done domain's:
	// left for the passes their sign-ins queue); see MarkWaiting.
	WaitingForUser []string  `json:"waiting_for_user,omitempty"`
	Updated        time.Time `json:"updated"`
}

// MailboxStatus is one mailbox's line: its phase in the domain's current
// pass and what was moved, summed over every pass.
type MailboxStatus struct {
	Mailbox  string                `json:"mailbox"`
	Phase    campaign.MailboxPhase `json:"phase"`
	Pass     string                `json:"pass,omitempty"`
	Reason   string                `json:"reason,omitempty"`
	Messages int64                 `json:"messages"`
	Bytes    int64                 `json:"bytes"`
	Dead     int64                 `json:"dead"`
	// Differences is what the last verification found (nil: none ran).
	Differences *int64 `json:"differences,omitempty"`
	// WaitingForUser is set for a mailbox that cannot be read until its
	// user signs in (see MarkWaiting).
	WaitingForUser bool `json:"waiting_for_user,omitempty"`
}

// MarkWaiting marks the campaign's mailboxes waiting for their user: the
// source has no password for them (boxes, the inventory, has no password
// file; per-user source logins) and no user handed one over at sign-in
// yet (shared/sourcecred), and they are not loaded or verified in their
// domain's pass (their credential is deleted once the domain is done);
// of a done domain, those its pass went on without (ReadStatus marked
// them). Without it, ReadStatus's marks are those of the campaign's
// records alone.
func (s *Status) MarkWaiting(ctx context.Context, js jetstream.JetStream, cfg *config.Config, boxes []job.Mailbox) error {
	names, err := sourcecred.Waiting(ctx, js, cfg, boxes)
	if err != nil {
		return err
	}
	waiting := map[string]bool{}
	for _, n := range names {
		waiting[n] = true
	}
	for i := range s.Domains {
		d := &s.Domains[i]
		for j := range d.Mailboxes {
			m := &d.Mailboxes[j]
			m.WaitingForUser = waiting[m.Mailbox] && (d.Phase != campaign.Done || m.WaitingForUser) &&
				m.Phase != campaign.BoxLoaded && m.Phase != campaign.BoxVerified
		}
	}
	s.collectWaiting()
	return nil
}

// collectWaiting lists the mailboxes marked waiting for their user, per
// domain and in all.
func (s *Status) collectWaiting() {
	s.WaitingForUser = nil
	for i := range s.Domains {
		d := &s.Domains[i]
		d.WaitingForUser = nil
		for _, m := range d.Mailboxes {
			if m.WaitingForUser {
				d.WaitingForUser = append(d.WaitingForUser, m.Mailbox)
				s.WaitingForUser = append(s.WaitingForUser, m.Mailbox)
			}
		}
	}
}

// ReadStatus reads the campaign's records: every domain, or those named.
func ReadStatus(ctx context.Context, store *campaign.Store, only []string) (*Status, error) {
	domains, err := store.List(ctx, "")
	if err != nil {
		return nil, err
	}
	st := &Status{Domains: []DomainStatus{}, Totals: map[campaign.Phase]int{}}
	for _, d := range domains {
		if len(only) > 0 && !contains(only, d.Domain) {
			continue
		}
		ds, err := domainStatus(ctx, store, d)
		if err != nil {
			return nil, err
		}
		st.Domains = append(st.Domains, ds)
		st.Totals[d.Phase]++
	}
	st.collectWaiting()
	return st, nil
}

func domainStatus(ctx context.Context, store *campaign.Store, d campaign.Domain) (DomainStatus, error) {
	ds := DomainStatus{Domain: d.Domain, Phase: d.Phase, Stopped: d.Stopped, Reason: d.Reason, Order: d.Order,
		Attempt: d.Attempt, DNS: d.DNS.Status(), Pass: d.Pass, Report: d.After.Report, TTLRestored: d.After.TTLRestored, Updated: d.Updated}
	if d.Phase == campaign.Draining || d.Stopped == campaign.Draining {
		at := d.DrainUntil()
		ds.DeltaAt = &at
	}
	if d.After.Report != "" {
		ds.ReportJSON = strings.TrimSuffix(d.After.Report, ".html") + ".json"
	}
	if !d.After.ClosedAt.IsZero() {
		at := d.After.ClosedAt
		ds.ClosedAt = &at
	}
	boxes, err := store.Mailboxes(ctx, d.Domain)
	if err != nil {
		return DomainStatus{}, err
	}
	for _, m := range boxes {
		ms := MailboxStatus{Mailbox: m.Mailbox, Phase: m.Phase, Pass: m.Pass, Reason: m.Reason,
			Messages: m.Counts.Appended, Bytes: m.Counts.Bytes, Dead: m.Counts.Dead, WaitingForUser: d.LeftWaiting(m)}
		c, ok, err := store.Check(ctx, d.Domain, m.Mailbox)
		if err != nil {
			return DomainStatus{}, err
		}
		if ok {
			n := c.Differences
			ms.Differences = &n
		}
		ds.Mailboxes = append(ds.Mailboxes, ms)
	}
	return ds, nil
}

// WriteText writes the status as a table: a line per domain, indented
// lines for its mailboxes.
func (s *Status) WriteText(w io.Writer) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DOMAIN\tPHASE\tDNS\tMESSAGES\tBYTES\tREPORT")
	for _, d := range s.Domains {
		var msgs, bytes int64
		for _, m := range d.Mailboxes {
			msgs += m.Messages
			bytes += m.Bytes
		}
		phase := string(d.Phase)
		switch {
		case d.Stopped != "":
			phase += " (in " + string(d.Stopped) + "): " + d.Reason
		case d.DeltaAt != nil:
			phase += " until " + d.DeltaAt.UTC().Format(time.RFC3339)
		case d.ClosedAt != nil:
			phase += ", old mailboxes closed"
		}
		if len(d.WaitingForUser) > 0 {
			phase += "; waiting for their user (" + waitingNote + "): " + strings.Join(d.WaitingForUser, ", ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", d.Domain, phase, d.DNS, msgs, bytes, d.Report)
		for _, m := range d.Mailboxes {
			phase := string(m.Phase)
			if m.Reason != "" {
				phase += ": " + m.Reason
			}
			if m.Differences != nil && *m.Differences > 0 {
				phase += fmt.Sprintf(" (%d differences)", *m.Differences)
			}
			if m.Dead > 0 {
				phase += fmt.Sprintf(" (%d dead letters)", m.Dead)
			}
			if m.WaitingForUser {
				phase += " (waiting for its user's sign-in)"
			}
			fmt.Fprintf(tw, "  %s\t%s\t\t%d\t%d\t\n", m.Mailbox, phase, m.Messages, m.Bytes)
		}
	}
	tw.Flush()
	var parts []string
	for _, p := range []campaign.Phase{campaign.Queued, campaign.Provisioning, campaign.Prestaging, campaign.Switching,
		campaign.Draining, campaign.Delta, campaign.Verifying, campaign.Done, campaign.Paused, campaign.Failed} {
		if n := s.Totals[p]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, p))
		}
	}
	fmt.Fprintf(w, "%d domains: %s\n", len(s.Domains), strings.Join(parts, ", "))
	if len(s.WaitingForUser) > 0 {
		fmt.Fprintf(w, "waiting for their user: %d (%s): %s\n", len(s.WaitingForUser), strings.Join(s.WaitingForUser, ", "), waitingNote)
	}
}

func contains(set []string, s string) bool {
	for _, x := range set {
		if campaign.NormalizeDomain(x) == s {
			return true
		}
	}
	return false
}
