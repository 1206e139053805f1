package loader

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/subject"
)

// A session waits for two things: the mailbox's lease, and the records of
// its pass. Neither wait may outlive its reason. The lease wait ends when
// the holder lets go or its lease runs out, or when this pass is
// superseded. The record wait ends with the pass's end record, or when the
// pass was superseded, its extraction failed for good, or its extractor
// fell silent (no heartbeat for abandonAfter: a dead process whose job no
// other extractor picked up); in that last case the session lets go of the
// mailbox and the job is retried later. Each wait is logged once at info
// and shown by status (Progress.Waiting).

var errExtractionSilent = errors.New("the extraction of this pass shows no sign of life")

// recordWaitLogged is how long a session runs out of records before it
// says, once, what it waits for.
const recordWaitLogged = 5 * time.Second

// leasePoll is how often a waiting session looks at the lease again.
const leasePoll = 500 * time.Millisecond

// abandonAfter is how long an extraction may be silent before its pass is
// taken for abandoned: longer than a dead extractor's job takes to reach
// another extractor (AckWait), with room for missed beats.
func (s *Service) abandonAfter() time.Duration {
	return max(2*s.Config.NATS.JobAckWait.Std(), 6*event.HeartbeatPeriod)
}

// waitLease takes the mailbox's lease, waiting while another session holds
// it.
func (ss *session) waitLease(ctx context.Context) (*lease, error) {
	logged := false
	defer ss.prog.Wait(ctx, "")
	for {
		l, err := acquire(ctx, ss.svc.Broker.Ledger, ss.j.SourceUser, ss.j.Pass, ss.svc.Settings.LeaseTTL.Std())
		if err == nil {
			if logged {
				ss.log.Info().Msg("mailbox lease taken")
			}
			return l, nil
		}
		if !errors.Is(err, errBusy) {
			return nil, err
		}
		if err := ss.check.Superseded(ctx); err != nil {
			return nil, err
		}
		var busy *busyError
		if errors.As(err, &busy) && !logged {
			logged = true
			ss.log.Info().Str("holder_pass", busy.Holder.Pass).Str("holder", busy.Holder.Owner).Time("until", busy.Until).
				Msg("waiting for the mailbox lease another session holds")
			ss.prog.Wait(ctx, fmt.Sprintf("lease held by pass %s until %s", busy.Holder.Pass, busy.Until.Format(time.RFC3339)))
		}
		if job.IsStopping(ctx) {
			return nil, job.ErrStopping
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-job.Stopping(ctx):
			return nil, job.ErrStopping
		case <-time.After(leasePoll):
		}
	}
}

// passEnded reports whether the end record of this session's pass lies at
// or before the mailbox's position in the stream: another session (of an
// older pass that had not yet seen it was superseded) read it, so every
// record of the pass is dealt with and waiting for it would be for ever.
func (ss *session) passEnded(ctx context.Context) (bool, error) {
	st, err := ss.svc.Broker.JS.Stream(ctx, broker.StreamMail)
	if err != nil {
		return false, fmt.Errorf("look up the end of pass %s: %w", ss.j.Pass, err)
	}
	raw, err := st.GetLastMsgForSubject(ctx, subject.End(ss.j.SourceUser, ss.j.Pass))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up the end of pass %s: %w", ss.j.Pass, err)
	}
	return ss.mbx.exists() && raw.Sequence <= ss.mbx.V.Seq, nil
}

// outOfRecords is called when the stream has nothing new for the session;
// it returns an error when waiting on would be in vain.
func (ss *session) outOfRecords(ctx context.Context) error {
	now := time.Now()
	if ss.waitingSince.IsZero() {
		ss.waitingSince = now
		return nil
	}
	if now.Sub(ss.waitingSince) < time.Second || now.Sub(ss.lastWaitCheck) < 2*time.Second {
		return nil
	}
	ss.lastWaitCheck = now
	if err := ss.extractionGaveUp(ctx); err != nil {
		return err
	}
	hb, err := event.LastBeat(ctx, ss.svc.Broker.Progress, "extractor", ss.j.SourceUser)
	if err != nil {
		return nil // the next check asks again
	}
	if hb != nil && hb.Pass == ss.j.Pass {
		switch {
		case hb.Ended == event.EndedFailed:
			return fmt.Errorf("extraction of this pass failed for good (%s): %w", hb.Reason, job.ErrPermanent)
		case hb.Ended == "" && now.Sub(hb.Time) > ss.svc.abandonAfter():
			return fmt.Errorf("%w since %s", errExtractionSilent, hb.Time.Format(time.RFC3339))
		}
	}
	if now.Sub(ss.waitingSince) < recordWaitLogged {
		return nil
	}
	what := "records of pass " + ss.j.Pass + " from the extractor"
	if !ss.waitLogged {
		ss.waitLogged = true
		l := ss.log.Info().Str("waiting_for", "records").Uint64("after_seq", ss.lastSeq)
		if hb != nil {
			l = l.Str("extractor_pass", hb.Pass).Time("extractor_seen", hb.Time)
		}
		l.Msg("waiting for the extractor's records of this pass")
	}
	ss.prog.Wait(ctx, what)
	return nil
}

// gotRecord ends a wait for records.
func (ss *session) gotRecord(ctx context.Context) {
	ss.waitingSince = time.Time{}
	if ss.prog.Current.Waiting != "" {
		ss.prog.Wait(ctx, "")
	}
}
