package job

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/subject"
)

// The rule for passes: a mailbox's newest pass job supersedes every older
// one. A newer pass extracts everything an older one would have (it resumes
// from the same checkpoints and reads what arrived since), and its loader
// follows the same records, so finishing an older pass is wasted work at
// best and, at worst, a session that holds the mailbox while it waits for an
// end record nobody will write. Services therefore drop a superseded job at
// once (acknowledged, with a mailbox.superseded event) and stop one that
// becomes superseded while it runs, after settling the work in hand.

// ErrSuperseded is returned by a handler whose pass was superseded by a
// newer one; the job is then done, not failed.
var ErrSuperseded = errors.New("superseded by a newer pass")

// SupersededError names the pass that superseded a job.
type SupersededError struct {
	Pass, By string
}

// Error names both passes, the dropped one first.
func (e *SupersededError) Error() string {
	return fmt.Sprintf("pass %s superseded by pass %s", e.Pass, e.By)
}

// Unwrap makes errors.Is(err, ErrSuperseded) hold.
func (e *SupersededError) Unwrap() error { return ErrSuperseded }

// Superseded returns a *SupersededError when a newer pass job than j was
// enqueued for j's mailbox, nil when j is the newest, and nil for jobs that
// supersede nothing and cannot be superseded (loader-only jobs, or a job
// not read from the stream).
func Superseded(ctx context.Context, js jetstream.JetStream, j *Job) error {
	if j.LoaderOnly() || j.Seq == 0 {
		return nil
	}
	newest, seq, err := Newest(ctx, js, j.SourceUser)
	if err != nil {
		return err
	}
	if newest == nil || seq <= j.Seq || newest.Pass == j.Pass {
		return nil
	}
	return &SupersededError{Pass: j.Pass, By: newest.Pass}
}

// Newest returns a mailbox's newest pass job and its sequence, or nil when
// none was ever enqueued.
func Newest(ctx context.Context, js jetstream.JetStream, mailbox string) (*Job, uint64, error) {
	st, err := js.Stream(ctx, broker.StreamJobs)
	if err != nil {
		return nil, 0, fmt.Errorf("newest pass of %s: %w", mailbox, err)
	}
	raw, err := st.GetLastMsgForSubject(ctx, subject.Job(mailbox))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("newest pass of %s: %w", mailbox, err)
	}
	j, err := Decode(raw.Data)
	if err != nil {
		return nil, 0, fmt.Errorf("newest pass of %s: %w", mailbox, err)
	}
	j.Seq = raw.Sequence
	return j, raw.Sequence, nil
}

// PassCheck asks, at most once per Every, whether a running job's pass was
// superseded; a long pass checks between units of work without loading the
// broker.
type PassCheck struct {
	JS    jetstream.JetStream
	Job   *Job
	Every time.Duration
	last  time.Time
}

// Superseded returns a *SupersededError once a newer pass exists. A failed
// lookup counts as not superseded: the next check asks again.
func (c *PassCheck) Superseded(ctx context.Context) error {
	every := c.Every
	if every == 0 {
		every = 2 * time.Second
	}
	if time.Since(c.last) < every {
		return nil
	}
	c.last = time.Now()
	err := Superseded(ctx, c.JS, c.Job)
	if errors.Is(err, ErrSuperseded) {
		return err
	}
	return nil
}

// ReportSuperseded publishes, for a job whose try returned err, that the
// newer pass err names took over in phase (event.PhaseExtracting,
// event.PhaseLoading), and returns err, which makes the job count as done.
// Should the publish fail, that error is returned instead: the job goes
// back to the queue and its next delivery reports again.
func ReportSuperseded(ctx context.Context, ev event.Publisher, j *Job, phase string, err error) error {
	var se *SupersededError
	if !errors.As(err, &se) {
		return err
	}
	if perr := ev.Publish(ctx, event.Superseded(j.SourceUser, event.SupersededData{Pass: j.Pass, By: se.By, Phase: phase})); perr != nil {
		return perr
	}
	return err
}

// Unannounced is what a handler returns when its job failed with err but
// the mailbox.failed event saying so could not be published (perr, nil
// when it was). Others wait on that event, so the job is not done, even
// when err was permanent: the result keeps err's text but wraps only
// perr, not ErrPermanent, so the job goes back to the queue and a later
// delivery announces how it ended.
func Unannounced(err, perr error) error {
	if perr == nil || err == nil {
		return err
	}
	return fmt.Errorf("%s; the failure was not announced: %w", err.Error(), perr)
}
