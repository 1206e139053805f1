package loader

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/shared/broker"
)

// follower is a session's ordered consumer on the mail stream and the
// pull subscription it reads it with.
type follower struct {
	cons jetstream.Consumer
	it   jetstream.MessagesContext
	// created is when the consumer was made; checked when unstick last
	// asked the broker about it.
	created, checked time.Time
}

// follow makes an ordered consumer on the mail stream from cc and starts
// reading it. One pull subscription for the session: Next on the consumer
// itself re-creates the server's consumer for every record (measured: a
// fifth of the loader's CPU, two thirds of the embedded server's). 32
// records or 4 MiB in hand bound what it prefetches (a record is at most
// 1 MiB: larger bodies are in the object store).
func (ss *session) follow(ctx context.Context, cc jetstream.OrderedConsumerConfig) (follower, error) {
	cons, err := ss.svc.Broker.JS.OrderedConsumer(ctx, broker.StreamMail, cc)
	if err != nil {
		return follower{}, fmt.Errorf("follow mail stream: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessagesWithBytesLimit(32, 4<<20))
	if err != nil {
		return follower{}, fmt.Errorf("follow mail stream: %w", err)
	}
	now := time.Now()
	return follower{cons: cons, it: it, created: now, checked: now}, nil
}

// stuckAfter is how long a session may receive no record while the
// broker holds records for its consumer before it follows the stream
// anew.
const stuckAfter = 5 * time.Second

// unstick follows the mail stream anew, from the record after the last
// one the session took, when its consumer delivers nothing though the
// broker says records wait for it, or the consumer is gone. It happens
// after a node that held the consumer was killed or restarted: the pull
// request the subscription made is lost with it, and nats.go notices the
// missing heartbeats of a pull subscription only during a single Next
// call lasting two heartbeats (10 s for an ordered consumer), which the
// session's short waits (idle) never do: the session would wait for
// ever, silently.
func (ss *session) unstick(ctx context.Context, f *follower, cc jetstream.OrderedConsumerConfig) error {
	now := time.Now()
	if ss.waitingSince.IsZero() || now.Sub(ss.waitingSince) < stuckAfter || now.Sub(f.created) < stuckAfter || now.Sub(f.checked) < 2*time.Second {
		return nil
	}
	f.checked = now
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	info, err := f.cons.Info(ictx)
	cancel()
	if err == nil && info.NumPending == 0 {
		return nil // nothing waits: the extractor has not sent more yet
	}
	l := ss.log.Warn().Uint64("after_seq", ss.lastSeq).Dur("quiet", now.Sub(ss.waitingSince).Round(time.Second))
	if err != nil {
		l = l.AnErr("consumer_error", err)
	} else {
		l = l.Uint64("records_waiting", info.NumPending)
	}
	l.Msg("the mail stream delivers nothing to this session though its consumer has records or is gone; following the stream anew")
	f.it.Stop()
	if ss.lastSeq > 0 {
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, ss.lastSeq+1
	}
	nf, err := ss.follow(ctx, cc)
	if err != nil {
		// The deferred Stop of the caller stops the old one again:
		// harmless.
		return err
	}
	*f = nf
	return nil
}
