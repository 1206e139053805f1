package job

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/backoff"
	"github.com/mailferry/mailferry/shared/event"
)

// closedPublisher publishes on a broker whose connection is closed.
func closedPublisher(t *testing.T, ctx context.Context) event.Publisher {
	t.Helper()
	b := openBroker(t, ctx)
	b.Close()
	return event.Publisher{JS: b.JS, Service: "test"}
}

func TestAFailureThatWasNotAnnouncedIsNotDoneForGood(t *testing.T) {
	perr := errors.New("publish mailbox.failed: connection closed")
	for _, c := range []struct {
		name          string
		err, perr     error
		permanent     bool
		wrapsPublish  bool
		keepsOriginal bool
	}{
		{"announced permanent failure", errors.Join(errors.New("login refused"), ErrPermanent), nil, true, false, true},
		{"announced transient failure", errors.New("timeout"), nil, false, false, true},
		{"unannounced permanent failure", errors.Join(errors.New("login refused"), ErrPermanent), perr, false, true, false},
		{"unannounced transient failure", errors.New("timeout"), perr, false, true, false},
	} {
		got := Unannounced(c.err, c.perr)
		if errors.Is(got, ErrPermanent) != c.permanent || errors.Is(got, perr) != c.wrapsPublish || (got == c.err) != c.keepsOriginal {
			t.Errorf("%s: %v: permanent %t, wraps the publish error %t", c.name, got, errors.Is(got, ErrPermanent), errors.Is(got, perr))
		}
	}
	if Unannounced(nil, perr) != nil {
		t.Error("a job that succeeded failed")
	}
}

// A handler as the extractor's and loader's: the job fails for good, the
// failure cannot be published, so the job must go back to the queue
// rather than be terminated unannounced.
func TestAJobWhoseFailureCannotBePublishedFailsWithThePublishError(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ev := closedPublisher(t, ctx)
	j := &Job{Mailbox: Mailbox{SourceUser: "a@old.test"}, Pass: "p1"}
	var unannounced error
	err := Retry(ctx, backoff.Policy{}, zerolog.Nop(), func() error {
		return errors.Join(errors.New("login refused"), ErrPermanent)
	}, func(err error, retried bool) {
		unannounced = ev.Publish(ctx, event.Failed(j.SourceUser, 1, event.FailedData{Pass: j.Pass, Phase: event.PhaseLoading, Reason: err.Error(), Retried: retried}))
	})
	err = Unannounced(err, unannounced)
	if errors.Is(err, ErrPermanent) || !errors.Is(err, nats.ErrConnectionClosed) {
		t.Errorf("err = %v, want the publish error and not permanent", err)
	}
}

func TestASupersededJobThatCannotSaySoIsNotDone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ev := closedPublisher(t, ctx)
	j := &Job{Mailbox: Mailbox{SourceUser: "a@old.test"}, Pass: "p1"}
	err := ReportSuperseded(ctx, ev, j, event.PhaseExtracting, &SupersededError{Pass: "p1", By: "p2"})
	if errors.Is(err, ErrSuperseded) || !errors.Is(err, nats.ErrConnectionClosed) {
		t.Errorf("err = %v, want the publish error, which sends the job back to the queue", err)
	}
}
