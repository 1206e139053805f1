// Package lifecycle folds a mailbox's lifecycle events into where the
// mailbox stands: the one phase machine that `mailferry status`,
// `mailferry migrate` and anything later read events with, so that they
// cannot disagree on what the events mean.
//
// A Mailbox follows one pass. Events of other passes are ignored, except
// that the followed pass's mailbox.superseded hands the following over to
// the pass that superseded it. Within the pass the phase only moves
// forward (Queued, Extracting, Loading, Loaded), whatever order the events
// arrive in, so a job's event that overtook the queued one still counts.
// Verified follows Loaded only: a verification that came before the pass
// was loaded checked an earlier state, not this pass's work. A failure
// makes the mailbox Failed when the job will not be tried again (or after
// MaxFailures attempts), and Failed is final. Loaded is final for
// failures too: once a pass is loaded, a later failure of the same pass
// cannot undo what the loaded event states.
package lifecycle

import (
	"strings"

	"github.com/mailferry/mailferry/shared/event"
)

// Phase is where a mailbox stands in the pass followed.
type Phase string

// Phases, in the order a pass goes through them; Failed can follow any
// but the last two.
const (
	NotQueued  Phase = "not queued"
	Queued     Phase = "queued"
	Extracting Phase = "extracting"
	Loading    Phase = "loading"
	Loaded     Phase = "loaded"
	Verified   Phase = "verified"
	Failed     Phase = "failed"
)

// rank orders the phases of a pass that goes well; Failed has none.
var rank = map[Phase]int{NotQueued: 0, "": 0, Queued: 1, Extracting: 2, Loading: 3, Loaded: 4, Verified: 5}

// Ended reports whether nothing more is to come of the pass: it is
// loaded (and perhaps verified) or failed for good.
func (p Phase) Ended() bool { return p == Loaded || p == Verified || p == Failed }

// Change says what an event did to a Mailbox, for a caller that reports
// it.
type Change int

// Changes of Apply.
const (
	// Unchanged: the event is of another pass, comes after the end, is
	// not a mailbox lifecycle event or its data is undecodable.
	Unchanged Change = iota
	// Advanced: the phase moved forward or the pass's data was recorded.
	Advanced
	// Followed: the followed pass was superseded; Pass is the newer one.
	Followed
	// Retrying: an attempt failed and will be tried again.
	Retrying
	// GaveUp: the pass failed for good; Phase is Failed.
	GaveUp
)

// Mailbox is one mailbox's lifecycle in the pass it follows. Its zero
// value (with Mailbox and Pass set) is a mailbox not queued yet; set Phase
// to Queued when the caller queued the pass itself.
type Mailbox struct {
	Mailbox string
	// Pass is the pass followed: the one given, or the newer one that
	// superseded it.
	Pass  string
	Phase Phase
	// MaxFailures, when positive, is how many failed attempts make the
	// mailbox Failed even though its job would be retried.
	MaxFailures int
	// Failures counts the failed attempts seen.
	Failures int
	// LastFailure is the data of the last failure seen.
	LastFailure *event.FailedData
	// Total is the number of messages the pass holds, from
	// mailbox.extracted (0 until then).
	Total int64
	// Result is the data of mailbox.loaded, once loaded.
	Result *event.LoadedData
}

// LastError names the last failure as "phase: reason" ("" when none).
func (m *Mailbox) LastError() string {
	if m.LastFailure == nil {
		return ""
	}
	// A joined error's parts are on lines of their own; one line keeps a
	// status table's rows whole.
	return m.LastFailure.Phase + ": " + strings.ReplaceAll(m.LastFailure.Reason, "\n", "; ")
}

// Apply folds e into m and says what it changed.
func (m *Mailbox) Apply(e *event.Event) Change {
	if e.Key != m.Mailbox || m.Phase == Failed {
		return Unchanged
	}
	switch e.Type {
	case event.MailboxQueued:
		var d event.QueuedData
		if !m.ours(e, &d, &d.Pass) {
			return Unchanged
		}
		return m.reach(Queued)
	case event.MailboxExtracting:
		var d event.ExtractingData
		if !m.ours(e, &d, &d.Pass) {
			return Unchanged
		}
		return m.reach(Extracting)
	case event.MailboxExtracted:
		var d event.ExtractedData
		if !m.ours(e, &d, &d.Pass) || m.Phase.Ended() {
			return Unchanged
		}
		m.Total = d.Messages
		m.reach(Loading)
		return Advanced
	case event.MailboxLoaded:
		var d event.LoadedData
		if !m.ours(e, &d, &d.Pass) || m.Phase.Ended() {
			return Unchanged
		}
		m.Result = &d
		return m.reach(Loaded)
	case event.MailboxVerified:
		var d event.VerifiedData
		if !m.ours(e, &d, &d.Pass) || m.Phase != Loaded {
			return Unchanged
		}
		m.Phase = Verified
		return Advanced
	case event.MailboxSuperseded:
		var d event.SupersededData
		if !m.ours(e, &d, &d.Pass) || m.Phase.Ended() || d.By == "" {
			return Unchanged
		}
		m.Pass = d.By
		return Followed
	case event.MailboxFailed:
		var d event.FailedData
		if !m.ours(e, &d, &d.Pass) || m.Phase.Ended() {
			return Unchanged
		}
		m.Failures++
		m.LastFailure = &d
		if !d.Retried || (m.MaxFailures > 0 && m.Failures >= m.MaxFailures) {
			m.Phase = Failed
			return GaveUp
		}
		return Retrying
	}
	return Unchanged
}

// Sampled folds in that p's service works on the mailbox: a loader's
// sample of the followed pass means loading has begun, before any event
// says so. It reports whether p is of the followed pass.
func (m *Mailbox) Sampled(p event.Progress) bool {
	if p.Mailbox != m.Mailbox || p.Pass != m.Pass {
		return false
	}
	if p.Service == "loader" && m.Phase != Failed && rank[m.Phase] < rank[Loading] {
		m.Phase = Loading
	}
	return true
}

// ours decodes e's data into d and reports whether it is of the followed
// pass (*pass, filled by the decoding).
func (m *Mailbox) ours(e *event.Event, d any, pass *string) bool {
	return e.DataAs(d) == nil && *pass == m.Pass
}

// reach moves the phase forward to p, never back.
func (m *Mailbox) reach(p Phase) Change {
	if rank[p] <= rank[m.Phase] {
		return Unchanged
	}
	m.Phase = p
	return Advanced
}
