package report

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/services/loader"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/mailscan"
	"github.com/mailferry/mailferry/shared/record"
	"github.com/mailferry/mailferry/shared/subject"
)

// msg is a stream message: its subject, sequence and data.
type msg struct {
	subject string
	seq     uint64
	data    []byte
}

// subjectsPerConsumer bounds the filter subjects of one consumer.
const subjectsPerConsumer = 100

// readWait bounds the wait for one message the stream said it holds; a
// message deleted meanwhile (a dead letter retried) ends the read early.
const readWait = 2 * time.Second

// readSubjects reads, in stream order per group of subjects, the messages
// of stream on the subjects in want among those filter matches. The
// stream's subject counts say which of them hold messages, so a mailbox
// without any costs nothing. found is false when the stream does not
// exist.
func readSubjects(ctx context.Context, js jetstream.JetStream, stream, filter string, want map[string]string) (msgs []msg, found bool, err error) {
	st, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("stream %s: %w", stream, err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, true, fmt.Errorf("stream %s: %w", stream, err)
	}
	var subjects []string
	for s, n := range info.State.Subjects {
		if _, ok := want[s]; ok && n > 0 {
			subjects = append(subjects, s)
		}
	}
	slices.Sort(subjects)
	for group := range slices.Chunk(subjects, subjectsPerConsumer) {
		var n uint64
		for _, s := range group {
			n += info.State.Subjects[s]
		}
		got, err := readGroup(ctx, st, group, n)
		if err != nil {
			return nil, true, fmt.Errorf("read stream %s: %w", stream, err)
		}
		msgs = append(msgs, got...)
	}
	return msgs, true, nil
}

// readGroup reads up to n messages on subjects with an ordered consumer.
func readGroup(ctx context.Context, st jetstream.Stream, subjects []string, n uint64) ([]msg, error) {
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: subjects})
	if err != nil {
		return nil, err
	}
	var out []msg
	for uint64(len(out)) < n {
		m, err := cons.Next(jetstream.FetchMaxWait(readWait))
		if errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages) {
			break
		}
		if err != nil {
			return nil, err
		}
		meta, err := m.Metadata()
		if err != nil {
			return nil, err
		}
		out = append(out, msg{subject: m.Subject(), seq: meta.Sequence.Stream, data: m.Data()})
		if meta.NumPending == 0 {
			break
		}
	}
	return out, ctx.Err()
}

// dead fills DeadLetters from the dead-letter stream (the records
// `mailferry deadletter list` shows), naming each message by the header
// of its record in the mail stream when that is still there.
func (r *Report) dead(ctx context.Context, js jetstream.JetStream, mailboxes []string) error {
	want := make(map[string]string, len(mailboxes))
	for _, m := range mailboxes {
		want[subject.Dead(m)] = m
	}
	msgs, found, err := readSubjects(ctx, js, broker.StreamDead, subject.DeadPrefix+".>", want)
	if err != nil {
		return fmt.Errorf("read dead letters: %w", err)
	}
	if !found {
		r.Unknown = append(r.Unknown, "messages refused by the new provider: the dead-letter stream "+broker.StreamDead+" does not exist yet")
		return nil
	}
	headers := headerReader{js: js}
	for _, m := range msgs {
		var d loader.DeadLetter
		if err := json.Unmarshal(m.data, &d); err != nil {
			return fmt.Errorf("dead letter %d: %w", m.seq, err)
		}
		h, err := headers.of(ctx, d.StreamSeq)
		if err != nil {
			return fmt.Errorf("dead letter %d: %w", m.seq, err)
		}
		reason := d.Reason
		if reason == "" {
			reason = d.Response
		}
		r.DeadLetters = append(r.DeadLetters, DeadLetter{Mailbox: clean(want[m.subject]), Folder: clean(d.Folder), UID: d.UID, Size: d.Size,
			Date: h.Date, From: h.From, Subject: h.Subject, Reason: clean(reason), Response: clean(d.Response), Time: d.Time.UTC()})
	}
	slices.SortStableFunc(r.DeadLetters, func(a, b DeadLetter) int {
		if c := strings.Compare(a.Mailbox, b.Mailbox); c != 0 {
			return c
		}
		if c := strings.Compare(a.Folder, b.Folder); c != 0 {
			return c
		}
		return cmp.Compare(a.UID, b.UID)
	})
	return nil
}

// maxHeaderBytes bounds what is read of a large message's body (in the
// object store) to find its header.
const maxHeaderBytes = 64 << 10

// headerReader reads the header of a message from its record in the mail
// stream, binding the stream and the body store once.
type headerReader struct {
	js     jetstream.JetStream
	mail   jetstream.Stream
	bodies jetstream.ObjectStore
	// gone says the mail stream (or body store) does not exist.
	gone, bodiesGone bool
}

// of is the header of the message record at seq of the mail stream;
// empty when the record or the stream is gone.
func (hr *headerReader) of(ctx context.Context, seq uint64) (mailscan.Header, error) {
	if seq == 0 || hr.gone {
		return mailscan.Header{}, nil
	}
	if hr.mail == nil {
		st, err := hr.js.Stream(ctx, broker.StreamMail)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			hr.gone = true
			return mailscan.Header{}, nil
		}
		if err != nil {
			return mailscan.Header{}, fmt.Errorf("stream %s: %w", broker.StreamMail, err)
		}
		hr.mail = st
	}
	raw, err := hr.mail.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return mailscan.Header{}, nil
	}
	if err != nil {
		return mailscan.Header{}, fmt.Errorf("read its record %d: %w", seq, err)
	}
	rec, err := record.Decode(raw.Header, raw.Data)
	if err != nil || rec.Message == nil {
		// Not a message record of this version: nothing to name it by.
		return mailscan.Header{}, nil
	}
	body := rec.Body
	if rec.Message.Object != "" {
		if body, err = hr.object(ctx, rec.Message.Object); err != nil {
			return mailscan.Header{}, err
		}
	}
	h := mailscan.ParseHeader(body)
	h.Date, h.From, h.Subject, h.MessageID = clean(h.Date), clean(h.From), clean(h.Subject), clean(h.MessageID)
	return h, nil
}

// object reads the start of a large body from the body store; nil when
// it is gone.
func (hr *headerReader) object(ctx context.Context, name string) ([]byte, error) {
	if hr.bodiesGone {
		return nil, nil
	}
	if hr.bodies == nil {
		st, err := hr.js.ObjectStore(ctx, broker.StoreBodies)
		if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			hr.bodiesGone = true
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("object store %s: %w", broker.StoreBodies, err)
		}
		hr.bodies = st
	}
	o, err := hr.bodies.Get(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read body %s: %w", name, err)
	}
	defer func() { _ = o.Close() }()
	b, err := io.ReadAll(io.LimitReader(o, maxHeaderBytes))
	if err != nil {
		return nil, fmt.Errorf("read body %s: %w", name, err)
	}
	return b, nil
}
