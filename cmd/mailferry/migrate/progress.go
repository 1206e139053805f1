package migrate

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/lifecycle"
)

// Phases of a mailbox as Run sees them.
const (
	PhaseQueued     = "queued"
	PhaseExtracting = "extracting"
	PhaseLoading    = "loading"
	PhaseLoaded     = "loaded"
	PhaseFailed     = "failed"
)

// MailboxProgress is one mailbox's state and counters.
type MailboxProgress struct {
	Mailbox        string `json:"mailbox"`
	Phase          string `json:"phase"`
	Extracted      int64  `json:"extracted"`
	ExtractedBytes int64  `json:"extracted_bytes"`
	Total          int64  `json:"total"`
	Loaded         int64  `json:"loaded"`
	LoadedBytes    int64  `json:"loaded_bytes"`
	Appended       int64  `json:"appended"`
	Skipped        int64  `json:"skipped"`
	Dead           int64  `json:"dead"`
	Failures       int    `json:"failures"`
	LastError      string `json:"last_error,omitempty"`
	// WaitingForUser is set for a mailbox that failed for want of a
	// source password: it is copied once its user signs in.
	WaitingForUser bool `json:"waiting_for_user,omitempty"`
	// Pass is the pass followed: the one enqueued, or the newer one that
	// superseded it.
	Pass    string `json:"pass,omitempty"`
	started time.Time
	lc      lifecycle.Mailbox
}

// phases names the lifecycle phases as Run reports them: Run verifies
// by itself once every mailbox is loaded, so a verified one is loaded.
var phases = map[lifecycle.Phase]string{
	lifecycle.NotQueued: PhaseQueued, lifecycle.Queued: PhaseQueued, lifecycle.Extracting: PhaseExtracting,
	lifecycle.Loading: PhaseLoading, lifecycle.Loaded: PhaseLoaded, lifecycle.Verified: PhaseLoaded, lifecycle.Failed: PhaseFailed,
}

// tracker folds events and progress samples into per-mailbox state. The
// NATS callback and the follow loop share it, hence the mutex.
type tracker struct {
	mu       sync.Mutex
	order    []string
	boxes    map[string]*MailboxProgress
	start    time.Time
	lastRows int
}

func newTracker(boxes []job.Mailbox, pass string, maxFail int) *tracker {
	t := &tracker{boxes: map[string]*MailboxProgress{}, start: time.Now()}
	for _, b := range boxes {
		t.order = append(t.order, b.SourceUser)
		t.boxes[b.SourceUser] = &MailboxProgress{Mailbox: b.SourceUser, Phase: PhaseQueued, Pass: pass,
			lc: lifecycle.Mailbox{Mailbox: b.SourceUser, Pass: pass, Phase: lifecycle.Queued, MaxFailures: maxFail}}
	}
	return t
}

func (t *tracker) onProgress(m *nats.Msg) {
	var p event.Progress
	if json.Unmarshal(m.Data, &p) != nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.boxes[p.Mailbox]
	if b == nil || !b.lc.Sampled(p) {
		return
	}
	b.Phase = phases[b.lc.Phase]
	if b.started.IsZero() {
		b.started = time.Now()
	}
	switch p.Service {
	case "extractor":
		b.Extracted, b.ExtractedBytes, b.Total = p.Messages, p.Bytes, p.Total
	case "loader":
		b.Loaded, b.LoadedBytes, b.Skipped, b.Dead = p.Messages, p.Bytes, p.Skipped, p.Dead
	}
}

// onEvent applies e and returns the mailbox's progress with true when e
// made it loaded.
func (t *tracker) onEvent(e *event.Event, log zerolog.Logger) (MailboxProgress, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.boxes[e.Key]
	if b == nil {
		return MailboxProgress{}, false
	}
	lc := &b.lc
	was := lc.Pass
	change := lc.Apply(e)
	b.Phase, b.Pass, b.Failures, b.LastError = phases[lc.Phase], lc.Pass, lc.Failures, lc.LastError()
	b.WaitingForUser = lc.LastFailure != nil && lc.LastFailure.WaitingForUser
	switch {
	case change == lifecycle.Unchanged:
	case e.Type == event.MailboxExtracted:
		b.Total = lc.Total
	case e.Type == event.MailboxLoaded:
		d := lc.Result
		b.Loaded, b.Appended, b.Skipped, b.Dead, b.LoadedBytes = d.Appended+d.Skipped+d.Dead, d.Appended, d.Skipped, d.Dead, d.Bytes
		log.Info().Str("mailbox", b.Mailbox).Int64("appended", d.Appended).Int64("skipped", d.Skipped).Int64("dead", d.Dead).Msg("mailbox loaded")
	case change == lifecycle.Followed:
		// Someone enqueued a newer pass: its outcome is this mailbox's.
		log.Info().Str("mailbox", b.Mailbox).Str("pass", was).Str("by", lc.Pass).Msg("following the newer pass of the mailbox")
	case change == lifecycle.GaveUp:
		f := lc.LastFailure
		log.Error().Str("mailbox", b.Mailbox).Int("failures", b.Failures).Str("phase", f.Phase).Str("reason", f.Reason).Msg("mailbox failed")
	case change == lifecycle.Retrying:
		f := lc.LastFailure
		log.Warn().Str("mailbox", b.Mailbox).Int("failures", b.Failures).Str("phase", f.Phase).Str("reason", f.Reason).Msg("mailbox attempt failed, will be retried")
	}
	return *b, change != lifecycle.Unchanged && b.Phase == PhaseLoaded
}

func (t *tracker) finished() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, b := range t.boxes {
		if !b.lc.Phase.Ended() {
			return false
		}
	}
	return true
}

func (t *tracker) snapshot() []MailboxProgress {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]MailboxProgress, 0, len(t.order))
	for _, n := range t.order {
		out = append(out, *t.boxes[n])
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Mailbox < out[j].Mailbox })
	return out
}

// rate and eta of one mailbox's loading.
func rateETA(b *MailboxProgress) (msgsPerSec float64, eta time.Duration) {
	if b.started.IsZero() || b.Loaded == 0 {
		return 0, -1
	}
	el := time.Since(b.started).Seconds()
	msgsPerSec = float64(b.Loaded) / el
	left := b.Total - b.Loaded
	if left <= 0 || b.Phase == PhaseLoaded {
		return msgsPerSec, 0
	}
	return msgsPerSec, time.Duration(float64(left) / msgsPerSec * float64(time.Second))
}

// draw repaints the progress table in place on a terminal.
func (t *tracker) draw(w io.Writer) {
	rows := t.snapshot()
	if t.lastRows > 0 {
		fmt.Fprintf(w, "\033[%dA", t.lastRows)
	}
	var tot MailboxProgress
	for _, b := range rows {
		r, eta := rateETA(&b)
		fmt.Fprintf(w, "\033[K%-32.32s %-10s %7d/%-7d msgs %9s  %7.1f msg/s  eta %s\n",
			b.Mailbox, b.Phase, b.Loaded, b.Total, mib(b.LoadedBytes), r, etaString(eta))
		tot.Loaded += b.Loaded
		tot.Total += b.Total
		tot.LoadedBytes += b.LoadedBytes
	}
	el := time.Since(t.start).Seconds()
	rate := float64(tot.Loaded) / el
	eta := time.Duration(-1)
	if rate > 0 && tot.Total >= tot.Loaded {
		eta = time.Duration(float64(tot.Total-tot.Loaded) / rate * float64(time.Second))
	}
	fmt.Fprintf(w, "\033[K%-32s %-10s %7d/%-7d msgs %9s  %7.1f msg/s  %.1f MB/s  eta %s\n",
		"TOTAL", "", tot.Loaded, tot.Total, mib(tot.LoadedBytes), rate, float64(tot.LoadedBytes)/el/1e6, etaString(eta))
	t.lastRows = len(rows) + 1
}

func (t *tracker) logTotals(log zerolog.Logger) {
	var loaded, total, bytes int64
	done := 0
	for _, b := range t.snapshot() {
		loaded += b.Loaded
		total += b.Total
		bytes += b.LoadedBytes
		if b.Phase == PhaseLoaded || b.Phase == PhaseFailed {
			done++
		}
	}
	el := time.Since(t.start).Seconds()
	log.Info().Int("mailboxes_done", done).Int("mailboxes", len(t.order)).Int64("messages", loaded).Int64("total", total).
		Int64("bytes", bytes).Float64("msgs_per_sec", float64(loaded)/el).Msg("progress")
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func etaString(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	return d.Round(time.Second).String()
}
