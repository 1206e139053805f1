package loader

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/record"
)

// RetryDead appends dead-lettered records again, straight from the mail
// stream. What the target folder already holds is not appended twice; a
// message refused again gets a new dead letter. Each retried dead letter
// is removed once its fate is recorded.
func (s *Service) RetryDead(ctx context.Context, j *job.Job) (*event.LoadedData, error) {
	rj := *j
	rj.Replay = &job.Replay{}
	ss, err := s.open(ctx, &rj)
	if err != nil {
		return nil, fmt.Errorf("retry %s: %w", j.SourceUser, err)
	}
	defer ss.close()
	mail, err := s.Broker.JS.Stream(ctx, broker.StreamMail)
	if err != nil {
		return nil, fmt.Errorf("retry %s: %w", j.SourceUser, err)
	}
	dead, err := s.Broker.JS.Stream(ctx, broker.StreamDead)
	if err != nil {
		return nil, fmt.Errorf("retry %s: %w", j.SourceUser, err)
	}
	recs := make([]*record.Decoded, len(j.Retry))
	ss.again = map[string]bool{}
	for i, it := range j.Retry {
		if recs[i], err = ss.retryRecord(ctx, mail, it); err != nil {
			return nil, fmt.Errorf("retry %s record %d: %w", j.SourceUser, it.MailSeq, err)
		}
		ss.again[againKey(recs[i].Message.Folder, recs[i].Message.UID)] = true
	}
	for i, it := range j.Retry {
		if err := ss.retryOne(ctx, recs[i], it); err != nil {
			return nil, fmt.Errorf("retry %s record %d: %w", j.SourceUser, it.MailSeq, err)
		}
		if err := dead.DeleteMsg(ctx, it.DeadSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, fmt.Errorf("retry %s: remove dead letter %d: %w", j.SourceUser, it.DeadSeq, err)
		}
	}
	ss.stats.Pass, ss.stats.TargetUser = j.Pass, j.TargetUser
	return &ss.stats, nil
}

// retryRecord reads the mail record a dead letter is about.
func (ss *session) retryRecord(ctx context.Context, mail jetstream.Stream, it job.RetryItem) (*record.Decoded, error) {
	raw, err := mail.GetMsg(ctx, it.MailSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("the record is no longer in the mail stream (past its retention): %w", job.ErrPermanent)
	}
	if err != nil {
		return nil, err
	}
	d, err := record.Decode(raw.Header, raw.Data)
	if err != nil {
		return nil, errors.Join(err, job.ErrPermanent)
	}
	if d.Message == nil || d.Message.Mailbox != ss.j.SourceUser {
		return nil, fmt.Errorf("record is not a message of %s: %w", ss.j.SourceUser, job.ErrPermanent)
	}
	return d, nil
}

func (ss *session) retryOne(ctx context.Context, d *record.Decoded, it job.RetryItem) error {
	m := d.Message
	if err := ss.startFolder(ctx, m.Folder, m.Delim, m.UIDValidity, m.Epoch); err != nil {
		return err
	}
	return ss.lease.hold(ctx, func(ctx context.Context) error {
		return ss.load(ctx, []pending{{rec: m, body: d.Body, seq: it.MailSeq}})
	})
}
