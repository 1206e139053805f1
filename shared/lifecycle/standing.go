package lifecycle

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/mailferry/mailferry/shared/event"
)

// Across passes. A mailbox goes through many passes: the first copy, a
// new `migrate` or `enqueue`, the delta pass after its domain's switch
// (named "delta-…", no mailbox.queued), a replay ("replay-…") or a retry
// of dead letters ("retry-…", both the loader's alone). Where the
// mailbox stands is then not the phase of the pass last queued but:
//
//   - the newest pass, whichever event (or loader sample) names it last,
//     folded by Mailbox as before;
//   - the latest load and the latest verification of any pass, ordered by
//     their stream sequence: a verification after the latest load checked
//     what the target holds now, whatever pass it names (verify names the
//     pass last queued, which a delta pass is not). So does a verification
//     that found nothing different before a load that changed nothing at
//     the target (appended and dead-lettered nothing: a replay of a
//     complete mailbox).
//
// A mailbox whose current verification found nothing different is
// Complete, and stays so while a later pass runs.

// Seen is a stored mailbox event with its stream sequence, which orders
// events of different passes.
type Seen struct {
	Seq   uint64
	Event *event.Event
}

// Standing is where a mailbox stands across its passes.
type Standing struct {
	// Latest is the newest pass, folded.
	Latest Mailbox
	// Kind is the newest pass's kind: PassDelta, PassReplay, PassRetry
	// or "" for a pass over the whole mailbox.
	Kind string
	// Load is the latest mailbox.loaded of any pass (nil when none).
	Load *event.LoadedData
	// Verification is the latest mailbox.verified of any pass (nil when
	// none); Current says it checked the target as it is now.
	Verification *event.VerifiedData
	Current      bool
}

// Kinds of pass, by the prefix of the pass's name.
const (
	PassDelta  = "delta"
	PassReplay = "replay"
	PassRetry  = "retry"
)

// PassKind names the kind of a pass by its name ("" for a whole pass).
func PassKind(pass string) string {
	for _, k := range []string{PassDelta, PassReplay, PassRetry} {
		if strings.HasPrefix(pass, k+"-") {
			return k
		}
	}
	return ""
}

// Complete reports whether the mailbox was loaded and its current
// verification found the target to hold it.
func (s *Standing) Complete() bool {
	return s.Load != nil && s.Current && s.Verification.OK()
}

// VerificationFailed reports whether the current verification found
// differences.
func (s *Standing) VerificationFailed() bool {
	return s.Current && !s.Verification.OK()
}

// passOf is the pass an event is about: the newer one for a
// mailbox.superseded ("" for events without a pass).
func passOf(e *event.Event) string {
	var d struct {
		Pass string `json:"pass"`
		By   string `json:"by"`
	}
	if e.DataAs(&d) != nil {
		return ""
	}
	if e.Type == event.MailboxSuperseded && d.By != "" {
		return d.By
	}
	return d.Pass
}

// Stand folds a mailbox's events (at least the latest of each lifecycle
// type, in any order) and its services' latest progress samples into
// where it stands. A loader sample of a pass no event names yet, newer
// than every event, is the newest pass: a replay or retry before its
// mailbox.loaded.
func Stand(mailbox string, seen []Seen, samples ...event.Progress) Standing {
	seen = slices.Clone(seen)
	slices.SortFunc(seen, func(a, b Seen) int { return cmp.Compare(a.Seq, b.Seq) })
	var st Standing
	var newest string
	var newestAt time.Time
	var loadSeq, verifySeq uint64
	passes := map[string]bool{}
	for _, s := range seen {
		e := s.Event
		if e.Key != mailbox {
			continue
		}
		switch e.Type {
		case event.MailboxLoaded:
			var d event.LoadedData
			if e.DataAs(&d) == nil {
				st.Load, loadSeq = &d, s.Seq
			}
		case event.MailboxVerified:
			var d event.VerifiedData
			if e.DataAs(&d) == nil {
				st.Verification, verifySeq = &d, s.Seq
			}
			continue // names the pass last queued, not a pass of its own
		}
		if p := passOf(e); p != "" {
			newest, newestAt = p, e.Time
			passes[p] = true
		}
	}
	for _, p := range samples {
		if p.Service == "loader" && p.Mailbox == mailbox && p.Pass != "" && !passes[p.Pass] && p.Updated.After(newestAt) {
			newest = p.Pass
		}
	}
	st.Latest = Mailbox{Mailbox: mailbox, Pass: newest, Phase: NotQueued}
	if newest != "" {
		for _, s := range seen {
			st.Latest.Apply(s.Event)
		}
		for _, p := range samples {
			st.Latest.Sampled(p)
		}
	}
	st.Kind = PassKind(st.Latest.Pass)
	if st.Verification != nil {
		unchanged := st.Load != nil && st.Load.Appended == 0 && st.Load.Dead == 0 && st.Verification.OK()
		st.Current = st.Load == nil || verifySeq > loadSeq || unchanged
	}
	return st
}
