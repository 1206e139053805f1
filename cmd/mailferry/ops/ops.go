// Package ops holds the operator's repair tools: dead letters (list, show,
// retry) and replays of the mail stream.
package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/mailferry/mailferry/services/loader"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/subject"
)

// Dead is a dead letter with its place in the dead-letter stream.
type Dead struct {
	Seq uint64 `json:"seq"`
	loader.DeadLetter
}

// ListDead returns the dead letters, of one mailbox when mailbox is set.
func ListDead(ctx context.Context, b *broker.Broker, mailbox string) ([]Dead, error) {
	filter := subject.DeadPrefix + ".>"
	if mailbox != "" {
		filter = subject.Dead(mailbox)
	}
	st, err := b.JS.Stream(ctx, broker.StreamDead)
	if err != nil {
		return nil, fmt.Errorf("dead-letter stream: %w", err)
	}
	info, err := st.Info(ctx)
	if err != nil || info.State.Msgs == 0 {
		return nil, err
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		return nil, fmt.Errorf("read dead letters: %w", err)
	}
	var out []Dead
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(300 * time.Millisecond))
		if errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read dead letters: %w", err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return nil, err
		}
		d := Dead{Seq: meta.Sequence.Stream}
		if err := json.Unmarshal(m.Data(), &d.DeadLetter); err != nil {
			return nil, fmt.Errorf("dead letter %d: %w", d.Seq, err)
		}
		out = append(out, d)
		if meta.NumPending == 0 {
			return out, nil
		}
	}
}

// ShowDead returns one dead letter.
func ShowDead(ctx context.Context, b *broker.Broker, seq uint64) (*Dead, error) {
	st, err := b.JS.Stream(ctx, broker.StreamDead)
	if err != nil {
		return nil, fmt.Errorf("dead-letter stream: %w", err)
	}
	raw, err := st.GetMsg(ctx, seq)
	if err != nil {
		return nil, fmt.Errorf("dead letter %d: %w", seq, err)
	}
	d := &Dead{Seq: seq}
	if err := json.Unmarshal(raw.Data, &d.DeadLetter); err != nil {
		return nil, fmt.Errorf("dead letter %d: %w", seq, err)
	}
	return d, nil
}

// Retry enqueues one retry job per mailbox for the given dead letters, all
// under one pass, which it returns. boxes supplies the credentials files of
// each mailbox.
func Retry(ctx context.Context, b *broker.Broker, boxes []job.Mailbox, dead []Dead) (int, string, error) {
	by := map[string][]job.RetryItem{}
	for _, d := range dead {
		if d.UID == 0 {
			return 0, "", fmt.Errorf("dead letter %d (%s) is not about a message: %s", d.Seq, d.ID, d.Reason)
		}
		by[d.Mailbox] = append(by[d.Mailbox], job.RetryItem{MailSeq: d.StreamSeq, DeadSeq: d.Seq})
	}
	n, pass := 0, "retry-"+nuid.Next()
	for mailbox, items := range by {
		mb, err := find(boxes, mailbox)
		if err != nil {
			return n, pass, err
		}
		if err := job.Publish(ctx, b.JS, &job.Job{Mailbox: mb, Pass: pass, Enqueued: time.Now().UTC(), Retry: items}); err != nil {
			return n, pass, err
		}
		n += len(items)
	}
	return n, pass, nil
}

func find(boxes []job.Mailbox, mailbox string) (job.Mailbox, error) {
	for _, mb := range boxes {
		if mb.SourceUser == mailbox {
			return mb, nil
		}
	}
	return job.Mailbox{}, fmt.Errorf("mailbox %s is not in the mailboxes file", mailbox)
}

// ReplayRequest says what to replay.
type ReplayRequest struct {
	Mailbox string
	Folder  string
	FromSeq uint64
	Since   time.Time
}

// ErrPastRetention reports a replay that reaches before the oldest record
// the mail stream still holds.
var ErrPastRetention = errors.New("past the mail stream's retention")

// Replay enqueues a replay job after checking that the stream still holds
// what it asks for.
func Replay(ctx context.Context, b *broker.Broker, boxes []job.Mailbox, r ReplayRequest) (*job.Job, error) {
	mb, err := find(boxes, r.Mailbox)
	if err != nil {
		return nil, err
	}
	st, err := b.JS.Stream(ctx, broker.StreamMail)
	if err != nil {
		return nil, fmt.Errorf("mail stream: %w", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("mail stream: %w", err)
	}
	s := info.State
	retention := fmt.Sprintf("max_age %s, max_bytes %d", info.Config.MaxAge, info.Config.MaxBytes)
	from := max(r.FromSeq, 1)
	switch {
	case !r.Since.IsZero():
		if s.Msgs > 0 && r.Since.Before(s.FirstTime) && s.FirstSeq > 1 {
			return nil, fmt.Errorf("replay since %s: records before %s were removed (first missing sequence %d; %s): %w",
				r.Since.Format(time.RFC3339), s.FirstTime.Format(time.RFC3339), s.FirstSeq-1, retention, ErrPastRetention)
		}
		if from, err = firstSince(ctx, st, r.Mailbox, r.Since); err != nil {
			return nil, err
		}
	case from < s.FirstSeq:
		return nil, fmt.Errorf("replay from sequence %d: first missing sequence %d, the stream now starts at %d (%s): %w",
			from, from, s.FirstSeq, retention, ErrPastRetention)
	}
	// The replay ends at the mailbox's (or folder's) own last record.
	filter := subject.Mailbox(r.Mailbox)
	if r.Folder != "" {
		filter = subject.MessagesOfFolder(r.Mailbox, r.Folder)
	}
	until := s.LastSeq
	if last, err := st.GetLastMsgForSubject(ctx, filter); err == nil {
		until = last.Sequence
	} else if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("replay %s: the mail stream holds no record of it", r.Mailbox)
	}
	if from > until {
		return nil, fmt.Errorf("replay %s from sequence %d: its last record is %d", r.Mailbox, from, until)
	}
	j := &job.Job{Mailbox: mb, Pass: "replay-" + nuid.Next(), Enqueued: time.Now().UTC(),
		Replay: &job.Replay{Folder: r.Folder, FromSeq: from, UntilSeq: until}}
	if err := job.Publish(ctx, b.JS, j); err != nil {
		return nil, err
	}
	return j, nil
}

// firstSince finds the first record of a mailbox stored at or after t.
func firstSince(ctx context.Context, st jetstream.Stream, mailbox string, t time.Time) (uint64, error) {
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject.Mailbox(mailbox)},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy, OptStartTime: &t,
	})
	if err != nil {
		return 0, fmt.Errorf("find records since %s: %w", t.Format(time.RFC3339), err)
	}
	m, err := cons.Next(jetstream.FetchMaxWait(time.Second))
	if err != nil {
		return 0, fmt.Errorf("no records of %s since %s: %w", mailbox, t.Format(time.RFC3339), err)
	}
	meta, err := m.Metadata()
	if err != nil {
		return 0, err
	}
	return meta.Sequence.Stream, nil
}
