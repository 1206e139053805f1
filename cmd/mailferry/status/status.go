// Package status tells where every mailbox of a migration stands, from what
// the services left in JetStream (lifecycle events and progress), so it
// works while they run in other processes or on other machines.
package status

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/lifecycle"
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

// Mailbox is one mailbox's state in its latest pass.
type Mailbox struct {
	Mailbox        string  `json:"mailbox"`
	Phase          string  `json:"phase"`
	Pass           string  `json:"pass,omitempty"`
	Total          int64   `json:"total"`
	Extracted      int64   `json:"extracted"`
	ExtractedBytes int64   `json:"extracted_bytes"`
	Loaded         int64   `json:"loaded"`
	Appended       int64   `json:"appended"`
	LoadedBytes    int64   `json:"loaded_bytes"`
	Dead           int64   `json:"dead_lettered"`
	Rate           float64 `json:"messages_per_second"`
	ETASeconds     float64 `json:"eta_seconds"` // -1 when unknown
	LastError      string  `json:"last_error,omitempty"`
	// Waiting says what the mailbox's loader (or extractor) waits for,
	// and since when.
	Waiting      string    `json:"waiting,omitempty"`
	WaitingSince time.Time `json:"waiting_since,omitzero"`
	Updated      time.Time `json:"updated,omitzero"`
}

// Status is the whole migration.
type Status struct {
	Mailboxes []Mailbox      `json:"mailboxes"`
	Phases    map[string]int `json:"phases"`
	Totals    Mailbox        `json:"totals"`
	Time      time.Time      `json:"time"`
}

// steps are the event types whose latest one per mailbox status reads.
var steps = []string{event.MailboxQueued, event.MailboxExtracting, event.MailboxExtracted, event.MailboxLoaded, event.MailboxVerified, event.MailboxFailed}

// phases names the lifecycle phases as status shows them: a loaded
// mailbox waits for its verification, a verified one is done.
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
	s := &Status{Phases: map[string]int{}, Time: time.Now().UTC(), Totals: Mailbox{Mailbox: "TOTAL", ETASeconds: -1}}
	for _, mb := range boxes {
		m, err := readMailbox(ctx, st, b.Progress, mb.SourceUser)
		if err != nil {
			return nil, err
		}
		s.add(m)
	}
	if s.Totals.Rate > 0 {
		s.Totals.ETASeconds = float64(max(0, s.Totals.Total-s.Totals.Loaded)) / s.Totals.Rate
	}
	return s, nil
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
	if m.Phase == PhaseExtracting || m.Phase == PhaseLoading {
		t.Rate += m.Rate
	}
}

func readMailbox(ctx context.Context, st jetstream.Stream, progress jetstream.KeyValue, mailbox string) (Mailbox, error) {
	m := Mailbox{Mailbox: mailbox, Phase: PhaseUnknown, ETASeconds: -1}
	type latest struct {
		seq uint64
		e   *event.Event
	}
	var events []latest
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
		if typ == event.MailboxQueued {
			var d event.QueuedData
			if err := e.DataAs(&d); err != nil {
				return m, fmt.Errorf("status of %s: %w", mailbox, err)
			}
			m.Pass = d.Pass
		}
		events = append(events, latest{raw.Sequence, e})
	}
	// The mailbox's latest pass is the one last queued; its events are
	// folded in the order they were published.
	slices.SortFunc(events, func(a, b latest) int { return cmp.Compare(a.seq, b.seq) })
	lc := lifecycle.Mailbox{Mailbox: mailbox, Pass: m.Pass, Phase: lifecycle.NotQueued}
	for _, l := range events {
		lc.Apply(l.e)
	}
	m.Phase, m.LastError = phases[lc.Phase], lc.LastError()
	ex, _ := readProgress(ctx, progress, "extractor", mailbox, m.Pass)
	ld, _ := readProgress(ctx, progress, "loader", mailbox, m.Pass)
	m.Total, m.Extracted, m.ExtractedBytes = ex.Total, ex.Messages, ex.Bytes
	m.Loaded, m.Appended, m.LoadedBytes, m.Dead = ld.Messages, ld.Appended, ld.Bytes, ld.Dead
	m.Updated = later(ex.Updated, ld.Updated)
	if m.Phase != PhaseDone && m.Phase != PhaseFailed {
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
	switch {
	case m.Phase == PhaseDone || m.Phase == PhaseVerifying:
		m.ETASeconds = 0
	case m.Rate > 0 && m.Total > 0:
		m.ETASeconds = float64(max(0, m.Total-m.Loaded)) / m.Rate
	}
	return m, nil
}

func readProgress(ctx context.Context, kv jetstream.KeyValue, service, mailbox, pass string) (event.Progress, error) {
	var p event.Progress
	e, err := kv.Get(ctx, event.ProgressKey(service, mailbox))
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal(e.Value(), &p); err != nil || p.Pass != pass {
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
	fmt.Fprintf(w, "%-32s %-11s %15s %15s %9s %5s %9s %9s\n", "MAILBOX", "PHASE", "EXTRACTED", "LOADED", "MiB", "DEAD", "MSG/S", "ETA")
	for _, m := range append(s.Mailboxes, s.Totals) {
		fmt.Fprintf(w, "%-32.32s %-11s %15s %15s %9.1f %5d %9.1f %9s\n", m.Mailbox, m.Phase,
			fmt.Sprintf("%d/%d", m.Extracted, m.Total), fmt.Sprintf("%d/%d", m.Loaded, m.Total),
			float64(m.LoadedBytes)/(1<<20), m.Dead, m.Rate, eta(m.ETASeconds))
		if m.LastError != "" {
			fmt.Fprintf(w, "    last error: %s\n", m.LastError)
		}
		if m.Waiting != "" {
			fmt.Fprintf(w, "    waiting: %s (since %s)\n", m.Waiting, m.WaitingSince.Format(time.RFC3339))
		}
	}
	fmt.Fprintf(w, "phases:")
	for _, p := range []string{PhaseUnknown, PhaseQueued, PhaseExtracting, PhaseLoading, PhaseVerifying, PhaseDone, PhaseFailed} {
		if n := s.Phases[p]; n > 0 {
			fmt.Fprintf(w, " %s %d", p, n)
		}
	}
	fmt.Fprintln(w)
}

func eta(sec float64) string {
	if sec < 0 {
		return "-"
	}
	return (time.Duration(sec) * time.Second).String()
}
