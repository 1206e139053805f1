// Package status tells where every mailbox of a migration stands, from what
// the services left in JetStream, so it works while they run in other
// processes or on other machines.
//
// Where a mailbox stands is folded across its passes by
// lifecycle.Stand: the first copy, later passes, the delta pass after the
// domain's switch, replays and retries of dead letters. A mailbox that was
// loaded and verified stays done while a later pass runs ("done (delta
// pass loading 3/5)"); one whose latest verification found differences
// is failed ("failed: verification: 2 differences").
//
// The numbers are the mailbox's, not the last pass's, and come from
// durable facts, each read with one request per refresh however many
// mailboxes there are, never by scanning a stream:
//
//   - loaded (appended or found present) and loaded bytes: the running
//     totals the loader keeps for this in its ledger (bucket mf_ledger),
//     in the entry of each source folder it updates by compare-and-set
//     with the watermark (FolderState.Loaded, LoadedBytes), so a message
//     counts once whatever was replayed, retried or restarted. One watch
//     over the mailboxes' folder entries (per mailbox for a few, every
//     folder entry for many) reads them; a folder under several
//     UIDVALIDITYs counts by its newest one, and an entry written before
//     the totals existed by its appended and present messages.
//   - dead-lettered: the messages of the mailbox in MF_DEAD (one stream
//     info with per-subject counts), which a successful retry removes;
//   - total and extracted: the latest mailbox.extracted event (per-subject
//     last message), whose folders' Total counts what the source held,
//     checkpointed messages included, all of which that pass or an
//     earlier one extracted; while a newer pass extracts, its progress
//     sample adds what it has extracted so far. The extractor keeps no
//     running total of bytes, so extracted bytes are those of the latest
//     extraction pass (with the running one's).
//
// Rate, ETA, what a service waits for and the pass's own counts come from
// the progress samples of the newest pass (bucket mf_progress). The phase
// of each domain in the cutover campaign comes from its record in
// mf_campaign, the one `cutover status` reads.
package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/services/loader"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/campaign"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/lifecycle"
	"github.com/mailferry/mailferry/shared/sourcecred"
	"github.com/mailferry/mailferry/shared/subject"
)

// Phases of a mailbox.
const (
	PhaseUnknown    = "not queued"
	PhaseQueued     = "queued"
	PhaseExtracting = "extracting"
	PhaseLoading    = "loading"
	PhaseVerifying  = "verifying"
	PhaseDone       = "done"
	PhaseFailed     = "failed"
)

// Mailbox is one mailbox's state across its passes. The counts are the
// mailbox's (see the package comment); PassProgress has the newest
// pass's.
type Mailbox struct {
	Mailbox string `json:"mailbox"`
	// Phase is one of the phases above; Detail qualifies it: the pass
	// running while the mailbox is done ("delta pass loading 3/5"), or
	// why it failed ("verification: 2 differences").
	Phase  string `json:"phase"`
	Detail string `json:"detail,omitempty"`
	// Pass is the newest pass, PassKind its kind (delta, replay, retry;
	// empty for a whole pass) and PassPhase where it stands.
	Pass      string `json:"pass,omitempty"`
	PassKind  string `json:"pass_kind,omitempty"`
	PassPhase string `json:"pass_phase,omitempty"`
	// Total is how many messages the source holds, as last seen.
	Total     int64 `json:"total"`
	Extracted int64 `json:"extracted"`
	// ExtractedBytes are of the latest extraction pass.
	ExtractedBytes int64 `json:"extracted_bytes"`
	// Loaded counts the mailbox's messages in the target, appended or
	// found there already; Appended the APPENDs the loader made (a
	// mailbox rebuilt after mail was deleted at the target counts
	// twice there, once in Loaded).
	Loaded      int64 `json:"loaded"`
	Appended    int64 `json:"appended"`
	LoadedBytes int64 `json:"loaded_bytes"`
	// Dead counts the mailbox's dead letters not retried successfully.
	Dead int64 `json:"dead_lettered"`
	// NotMail counts the source's messages that are no mail (contacts,
	// calendar and task items): counted in Total, never loaded; `mailferry
	// verify` names them.
	NotMail int64 `json:"not_mail,omitempty"`
	// Differences is what the current verification found (0 when none
	// or not verified).
	Differences  int64         `json:"differences,omitempty"`
	PassProgress *PassProgress `json:"pass_progress,omitempty"`
	Rate         float64       `json:"messages_per_second"`
	ETASeconds   float64       `json:"eta_seconds"` // -1 when unknown
	LastError    string        `json:"last_error,omitempty"`
	// Waiting says what the mailbox's loader (or extractor) waits for,
	// and since when.
	Waiting      string    `json:"waiting,omitempty"`
	WaitingSince time.Time `json:"waiting_since,omitzero"`
	// WaitingForUser is set for a mailbox that cannot be read until its
	// user signs in (see MarkWaiting).
	WaitingForUser bool      `json:"waiting_for_user,omitempty"`
	Updated        time.Time `json:"updated,omitzero"`
}

// PassProgress is the newest pass's own counts, from its progress
// samples.
type PassProgress struct {
	// Total is how many messages the pass moves: known once its
	// extraction ended (or, for a loader-only pass, once loaded).
	Total          int64 `json:"total"`
	Extracted      int64 `json:"extracted"`
	ExtractedBytes int64 `json:"extracted_bytes"`
	Loaded         int64 `json:"loaded"`
	Appended       int64 `json:"appended"`
	LoadedBytes    int64 `json:"loaded_bytes"`
	Dead           int64 `json:"dead_lettered"`
}

// Shown is the phase as the table shows it: with its detail.
func (m *Mailbox) Shown() string {
	switch {
	case m.Detail == "":
		return m.Phase
	case m.Phase == PhaseFailed:
		return m.Phase + ": " + m.Detail
	default:
		return m.Phase + " (" + m.Detail + ")"
	}
}

// Status is the whole migration.
type Status struct {
	Mailboxes []Mailbox      `json:"mailboxes"`
	Phases    map[string]int `json:"phases"`
	Totals    Mailbox        `json:"totals"`
	// Domains are the cutover campaign's domains of these mailboxes and
	// their phases, as `cutover status` shows them (none without a
	// campaign).
	Domains []Domain `json:"domains,omitempty"`
	// WaitingForUser names the mailboxes waiting for their user's
	// sign-in (see MarkWaiting).
	WaitingForUser []string  `json:"waiting_for_user,omitempty"`
	Time           time.Time `json:"time"`
}

// MarkWaiting marks the mailboxes waiting for their user: the source has
// no password for them (no password file, per-user source logins) and no
// user handed one over at sign-in yet (shared/sourcecred), and their
// migration has not got past that (not queued, queued or failed: a
// mailbox loaded or done had its credential, deleted after its last
// pass).
func (s *Status) MarkWaiting(ctx context.Context, js jetstream.JetStream, cfg *config.Config, boxes []job.Mailbox) error {
	names, err := sourcecred.Waiting(ctx, js, cfg, boxes)
	if err != nil {
		return err
	}
	waiting := map[string]bool{}
	for _, n := range names {
		waiting[n] = true
	}
	s.WaitingForUser = nil
	for i := range s.Mailboxes {
		m := &s.Mailboxes[i]
		switch m.Phase {
		case PhaseUnknown, PhaseQueued, PhaseFailed:
			m.WaitingForUser = waiting[m.Mailbox]
		default:
			m.WaitingForUser = false
		}
		if m.WaitingForUser {
			s.WaitingForUser = append(s.WaitingForUser, m.Mailbox)
		}
	}
	return nil
}

// Domain is a domain's phase in the cutover campaign.
type Domain struct {
	Domain string `json:"domain"`
	Phase  string `json:"phase"`
	// Stopped and Reason say, for a failed or paused domain, in which
	// phase and why.
	Stopped string `json:"stopped,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// steps are the event types whose latest one per mailbox status reads.
var steps = []string{event.MailboxQueued, event.MailboxExtracting, event.MailboxExtracted, event.MailboxLoaded,
	event.MailboxVerified, event.MailboxFailed, event.MailboxSuperseded}

// phases names the lifecycle phases of a pass as status shows them: a
// loaded mailbox waits for its verification, a verified one is done.
var phases = map[lifecycle.Phase]string{
	lifecycle.NotQueued: PhaseUnknown, lifecycle.Queued: PhaseQueued, lifecycle.Extracting: PhaseExtracting,
	lifecycle.Loading: PhaseLoading, lifecycle.Loaded: PhaseVerifying, lifecycle.Verified: PhaseDone, lifecycle.Failed: PhaseFailed,
}

// Read builds the status of boxes.
func Read(ctx context.Context, b *broker.Broker, boxes []job.Mailbox) (*Status, error) {
	st, err := b.JS.Stream(ctx, broker.StreamEvents)
	if err != nil {
		return nil, fmt.Errorf("events stream: %w", err)
	}
	ledger, err := readLedger(ctx, b.JS, boxes)
	if err != nil {
		return nil, err
	}
	dead, err := readDead(ctx, b.JS)
	if err != nil {
		return nil, err
	}
	s := &Status{Phases: map[string]int{}, Time: time.Now().UTC(), Totals: Mailbox{Mailbox: "TOTAL", ETASeconds: -1}}
	for _, mb := range boxes {
		m, err := readMailbox(ctx, st, b.Progress, mb.SourceUser)
		if err != nil {
			return nil, err
		}
		l := ledger[subject.Key(mb.SourceUser)]
		m.Loaded, m.Appended, m.LoadedBytes, m.NotMail = l.Loaded, l.Appended, l.LoadedBytes, l.NotMail
		m.Dead = int64(dead[subject.Dead(mb.SourceUser)])
		m.finish()
		s.add(m)
	}
	if s.Totals.Rate > 0 {
		s.Totals.ETASeconds = float64(max(0, s.Totals.Total-s.Totals.Loaded-s.Totals.Dead-s.Totals.NotMail)) / s.Totals.Rate
	}
	if s.Domains, err = readCampaign(ctx, b, boxes); err != nil {
		return nil, err
	}
	return s, nil
}

// readCampaign reads the campaign's record of each domain of boxes; a
// broker without a campaign has none.
func readCampaign(ctx context.Context, b *broker.Broker, boxes []job.Mailbox) ([]Domain, error) {
	kv, err := b.JS.KeyValue(ctx, broker.BucketCampaign)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("campaign: %w", err)
	}
	store := campaign.NewStore(kv)
	store.Domains = campaign.NewDomains(boxes)
	var out []Domain
	seen := map[string]bool{}
	for _, mb := range boxes {
		name := campaign.MailDomainOf(mb)
		if seen[name] {
			continue
		}
		seen[name] = true
		d, ok, err := store.Get(ctx, name)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, Domain{Domain: d.Domain, Phase: string(d.Phase), Stopped: string(d.Stopped), Reason: d.Reason})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Domain < out[j].Domain })
	return out, nil
}

func (s *Status) add(m Mailbox) {
	s.Mailboxes = append(s.Mailboxes, m)
	s.Phases[m.Phase]++
	t := &s.Totals
	t.Total += m.Total
	t.Extracted += m.Extracted
	t.ExtractedBytes += m.ExtractedBytes
	t.Loaded += m.Loaded
	t.Appended += m.Appended
	t.LoadedBytes += m.LoadedBytes
	t.Dead += m.Dead
	t.NotMail += m.NotMail
	t.Differences += m.Differences
	if m.PassPhase == PhaseExtracting || m.PassPhase == PhaseLoading {
		t.Rate += m.Rate
	}
}

// folderCounts are the counts of a ledger folder entry that status sums.
type folderCounts struct {
	uidValidity uint32
	// epoch is the numbering's under uidValidity (subject.Numbering).
	epoch uint32
	st    loader.FolderState
}

// readLedger sums the loader's folder entries per mailbox (keyed by
// subject.Key of the source mailbox): one watch of the entries of boxes
// when they are few, of every folder entry when they are many.
func readLedger(ctx context.Context, js jetstream.JetStream, boxes []job.Mailbox) (map[string]loader.FolderState, error) {
	sums := map[string]loader.FolderState{}
	if len(boxes) == 0 {
		return sums, nil
	}
	kv, err := js.KeyValue(ctx, broker.BucketLedger)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return sums, nil // no loader ran yet
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	filters := []string{"fld.>"}
	if len(boxes) <= 32 {
		filters = filters[:0]
		for _, mb := range boxes {
			filters = append(filters, loader.FolderFilter(mb.SourceUser))
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := kv.WatchFiltered(ctx, filters, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("read ledger: %w", err)
	}
	defer func() { _ = w.Stop() }()
	latest := map[[2]string]folderCounts{} // by mailbox and folder key
	for {
		var e jetstream.KeyValueEntry
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("read ledger: %w", ctx.Err())
		case e = <-w.Updates():
		}
		if e == nil {
			break // every entry read
		}
		// fld.<mailbox>.<folder>.<numbering>, each part a subject.Key
		parts := strings.Split(e.Key(), ".")
		if len(parts) != 4 {
			continue
		}
		uidv, epoch, err := subject.ParseNumbering(parts[3])
		if err != nil {
			continue
		}
		var st loader.FolderState
		if err := json.Unmarshal(e.Value(), &st); err != nil {
			return nil, fmt.Errorf("read ledger %s: %w", e.Key(), err)
		}
		k := [2]string{parts[1], parts[2]}
		// The newest numbering: a folder renumbered and loaded again
		// counts what it holds now, found present or appended.
		if old, ok := latest[k]; !ok || uidv > old.uidValidity || uidv == old.uidValidity && epoch >= old.epoch {
			latest[k] = folderCounts{uidv, epoch, st}
		}
	}
	for k, f := range latest {
		s := sums[k[0]]
		if f.st.Loaded == 0 {
			f.st.Loaded = f.st.Appended + f.st.Present // written before Loaded existed
		}
		s.Appended += f.st.Appended
		s.Loaded += f.st.Loaded
		s.LoadedBytes += f.st.LoadedBytes
		s.NotMail += f.st.NotMail
		sums[k[0]] = s
	}
	return sums, nil
}

// readDead counts the dead letters per subject (subject.Dead of the
// mailbox) with one stream info.
func readDead(ctx context.Context, js jetstream.JetStream) (map[string]uint64, error) {
	st, err := js.Stream(ctx, broker.StreamDead)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil // no loader ran yet
	}
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject.DeadPrefix+".>"))
	if err != nil {
		return nil, fmt.Errorf("count dead letters: %w", err)
	}
	return info.State.Subjects, nil
}

func readMailbox(ctx context.Context, st jetstream.Stream, progress jetstream.KeyValue, mailbox string) (Mailbox, error) {
	m := Mailbox{Mailbox: mailbox, Phase: PhaseUnknown, ETASeconds: -1}
	var seen []lifecycle.Seen
	var extracted *event.ExtractedData
	for _, typ := range steps {
		raw, err := st.GetLastMsgForSubject(ctx, subject.Event(typ, mailbox))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return m, fmt.Errorf("status of %s: %w", mailbox, err)
		}
		e, err := event.Decode(raw.Data)
		if err != nil {
			return m, fmt.Errorf("status of %s: %w", mailbox, err)
		}
		if typ == event.MailboxExtracted {
			var d event.ExtractedData
			if err := e.DataAs(&d); err != nil {
				return m, fmt.Errorf("status of %s: %w", mailbox, err)
			}
			extracted = &d
		}
		seen = append(seen, lifecycle.Seen{Seq: raw.Sequence, Event: e})
	}
	ex, _ := readProgress(ctx, progress, "extractor", mailbox)
	ld, _ := readProgress(ctx, progress, "loader", mailbox)
	sd := lifecycle.Stand(mailbox, seen, ex, ld)
	lc := sd.Latest
	m.Pass, m.PassKind, m.PassPhase, m.LastError = lc.Pass, sd.Kind, phases[lc.Phase], lc.LastError()
	if ex.Pass != lc.Pass || lc.Pass == "" {
		ex = event.Progress{}
	}
	if ld.Pass != lc.Pass || lc.Pass == "" {
		ld = event.Progress{}
	}
	pp := &PassProgress{Total: lc.Total, Extracted: ex.Messages, ExtractedBytes: ex.Bytes,
		Loaded: ld.Messages, Appended: ld.Appended, LoadedBytes: ld.Bytes, Dead: ld.Dead}
	if pp.Total == 0 && lc.Result != nil {
		pp.Total = lc.Result.Appended + lc.Result.Skipped + lc.Result.Dead
	}
	if *pp != (PassProgress{}) {
		m.PassProgress = pp
	}

	// The mailbox's source and what was extracted of it.
	if extracted != nil {
		for _, f := range extracted.Folders {
			m.Total += int64(f.Total)
		}
		m.Extracted, m.ExtractedBytes = m.Total, extracted.Bytes
	}
	if ex.Pass != "" && (extracted == nil || extracted.Pass != lc.Pass) {
		// The newest pass extracts (its sample is of it, its extraction
		// has not ended): the sample counts every message of the folders
		// it went through and what it has extracted anew.
		m.Extracted += ex.Messages
		m.ExtractedBytes += ex.Bytes
		m.Total = max(m.Total, ex.Total, m.Extracted)
	}

	m.Phase, m.Detail = phaseOf(&sd, pp)
	if sd.VerificationFailed() {
		m.Differences = sd.Verification.Differences
		if m.Phase != PhaseFailed && m.LastError == "" {
			m.LastError = verificationError(sd.Verification)
		}
	}
	m.Updated = later(ex.Updated, ld.Updated)
	if m.PassPhase != PhaseDone && m.PassPhase != PhaseVerifying && m.PassPhase != PhaseFailed {
		for _, p := range []event.Progress{ld, ex} {
			if p.Waiting != "" {
				m.Waiting, m.WaitingSince = p.Service+": "+p.Waiting, p.WaitingSince
				break
			}
		}
	}
	if el := ld.Updated.Sub(ld.Started).Seconds(); el > 0 && ld.Messages > 0 {
		m.Rate = float64(ld.Messages) / el
	}
	return m, nil
}

// phaseOf says where a mailbox stands, and the detail shown with it.
func phaseOf(sd *lifecycle.Standing, pp *PassProgress) (phase, detail string) {
	lc := &sd.Latest
	passPhase := phases[lc.Phase]
	switch {
	case lc.Phase == lifecycle.Failed:
		if sd.Kind != "" {
			return PhaseFailed, sd.Kind + " pass: " + lc.LastError()
		}
		return PhaseFailed, lc.LastError()
	case sd.VerificationFailed() && lc.Phase.Ended():
		return PhaseFailed, verificationError(sd.Verification)
	case sd.Complete() && lc.Phase != lifecycle.NotQueued && !lc.Phase.Ended():
		d := passName(sd) + "pass " + passPhase
		switch {
		case lc.Phase == lifecycle.Extracting:
			d += fmt.Sprintf(" %d", pp.Extracted)
		case lc.Phase == lifecycle.Loading && pp.Total > 0:
			d += fmt.Sprintf(" %d/%d", pp.Loaded, pp.Total)
		case lc.Phase == lifecycle.Loading:
			d += fmt.Sprintf(" %d", pp.Loaded)
		}
		return PhaseDone, d
	case sd.Complete():
		return PhaseDone, ""
	case lc.Phase.Ended():
		return PhaseVerifying, ""
	}
	return passPhase, ""
}

// passName names the newest pass by its kind ("delta", …) with a space,
// or "" for a whole pass.
func passName(sd *lifecycle.Standing) string {
	if sd.Kind == "" {
		return ""
	}
	return sd.Kind + " "
}

func verificationError(v *event.VerifiedData) string {
	if v.Differences == 1 {
		return "verification: 1 difference"
	}
	return fmt.Sprintf("verification: %d differences", v.Differences)
}

// finish computes the ETA from the mailbox's counts and rate.
func (m *Mailbox) finish() {
	switch {
	case m.Phase == PhaseDone || m.Phase == PhaseVerifying || m.Phase == PhaseFailed:
		m.ETASeconds = 0
	case m.Rate > 0 && m.Total > 0:
		m.ETASeconds = float64(max(0, m.Total-m.Loaded-m.Dead-m.NotMail)) / m.Rate
	}
}

// readProgress reads a service's latest sample for mailbox, of any pass.
func readProgress(ctx context.Context, kv jetstream.KeyValue, service, mailbox string) (event.Progress, error) {
	var p event.Progress
	if kv == nil {
		return p, nil
	}
	e, err := kv.Get(ctx, event.ProgressKey(service, mailbox))
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal(e.Value(), &p); err != nil {
		return event.Progress{}, err
	}
	return p, nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// WriteText writes the status as a table.
func (s *Status) WriteText(w io.Writer) {
	width := len("PHASE")
	for _, m := range s.Mailboxes {
		width = max(width, len(m.Shown()))
	}
	fmt.Fprintf(w, "%-32s %-*s %15s %15s %9s %5s %9s %9s\n", "MAILBOX", width, "PHASE", "EXTRACTED", "LOADED", "MiB", "DEAD", "MSG/S", "ETA")
	for _, m := range append(s.Mailboxes, s.Totals) {
		fmt.Fprintf(w, "%-32.32s %-*s %15s %15s %9.1f %5d %9.1f %9s\n", m.Mailbox, width, m.Shown(),
			fmt.Sprintf("%d/%d", m.Extracted, m.Total), fmt.Sprintf("%d/%d", m.Loaded, m.Total),
			float64(m.LoadedBytes)/(1<<20), m.Dead, m.Rate, eta(m.ETASeconds))
		if m.LastError != "" {
			fmt.Fprintf(w, "    last error: %s\n", m.LastError)
		}
		if m.NotMail > 0 {
			fmt.Fprintf(w, "    not mail, not copied: %d contact, calendar or task items (`mailferry verify` names them)\n", m.NotMail)
		}
		if m.Waiting != "" {
			fmt.Fprintf(w, "    waiting: %s (since %s)\n", m.Waiting, m.WaitingSince.Format(time.RFC3339))
		}
		if m.WaitingForUser {
			fmt.Fprintln(w, "    waiting for its user: no source password until they sign in on the change page")
		}
	}
	fmt.Fprintf(w, "phases:")
	for _, p := range []string{PhaseUnknown, PhaseQueued, PhaseExtracting, PhaseLoading, PhaseVerifying, PhaseDone, PhaseFailed} {
		if n := s.Phases[p]; n > 0 {
			fmt.Fprintf(w, " %s %d", p, n)
		}
	}
	fmt.Fprintln(w)
	if len(s.WaitingForUser) > 0 {
		fmt.Fprintf(w, "waiting for their user: %d (%s)\n", len(s.WaitingForUser), strings.Join(s.WaitingForUser, ", "))
	}
	for _, d := range s.Domains {
		line := d.Domain + ": " + d.Phase
		if d.Stopped != "" {
			line += " (in " + d.Stopped + ")"
		}
		if d.Reason != "" {
			line += ": " + d.Reason
		}
		fmt.Fprintln(w, "campaign: "+line)
	}
}

func eta(sec float64) string {
	if sec < 0 {
		return "-"
	}
	return (time.Duration(sec) * time.Second).String()
}
