package extractor

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/metrics"
	"github.com/mailferry/mailferry/shared/record"
)

// publisher publishes message records asynchronously with a bound on the
// bytes awaiting the broker's acknowledgement, and tells which UID is the
// last of an unbroken acknowledged run (what a checkpoint may record).
type publisher struct {
	js       jetstream.JetStream
	maxBytes int64
	pending  []pendingPub
	bytes    int64
	acked    uint32
	// anchors are the folder's newest acknowledged messages, newest
	// first (at most maxAnchors): what a checkpoint keeps to recognise
	// them on resume.
	anchors []Anchor
	// m counts the messages the broker acknowledged.
	m *metrics.Metrics
}

type pendingPub struct {
	f    jetstream.PubAckFuture
	msg  *nats.Msg
	uid  uint32
	size int64
	// notMail marks the record of a message that is no mail: not
	// counted as extracted.
	notMail bool
	// anchor is the message as a checkpoint remembers it.
	anchor Anchor
}

func newPublisher(b *broker.Broker, maxBytes int64) *publisher {
	return &publisher{js: b.JS, maxBytes: maxBytes}
}

// publish sends rec with body; anchor is how a checkpoint at it would
// remember the message.
func (p *publisher) publish(ctx context.Context, rec *record.Message, body []byte, anchor Anchor) error {
	m, err := record.MessageMsg(rec, body)
	if err != nil {
		return err
	}
	size := int64(len(body)) + 512
	for p.bytes+size > p.maxBytes && len(p.pending) > 0 {
		if _, err := p.collectOne(ctx, true); err != nil {
			return err
		}
	}
	f, err := p.js.PublishMsgAsync(m)
	if err != nil {
		return fmt.Errorf("publish uid %d: %w", rec.UID, err)
	}
	p.pending = append(p.pending, pendingPub{f: f, msg: m, uid: rec.UID, size: size, notMail: rec.NotMail != "", anchor: anchor})
	p.bytes += size
	return nil
}

// collect waits for acknowledgements: all of them, or (all=false) only
// those already in.
func (p *publisher) collect(ctx context.Context, all bool) error {
	for len(p.pending) > 0 {
		done, err := p.collectOne(ctx, all)
		if err != nil || !done {
			return err
		}
	}
	return nil
}

func (p *publisher) drain(ctx context.Context) error { return p.collect(ctx, true) }

// collectOne settles the oldest publish, waiting for it when block is set;
// a failed one is published again synchronously a few times (the broker
// drops a duplicate by its id).
func (p *publisher) collectOne(ctx context.Context, block bool) (bool, error) {
	pp := p.pending[0]
	var perr error
	if block {
		select {
		case <-pp.f.Ok():
		case perr = <-pp.f.Err():
		case <-ctx.Done():
			return false, ctx.Err()
		}
	} else {
		select {
		case <-pp.f.Ok():
		case perr = <-pp.f.Err():
		default:
			return false, nil
		}
	}
	for try := 0; perr != nil && try < 5; try++ {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(time.Duration(try+1) * 200 * time.Millisecond):
		}
		_, perr = p.js.PublishMsg(ctx, pp.msg)
	}
	if perr != nil {
		return false, fmt.Errorf("publish uid %d: %w", pp.uid, perr)
	}
	p.pending = p.pending[1:]
	p.bytes -= pp.size
	p.acked = pp.uid
	p.anchors = append([]Anchor{pp.anchor}, p.anchors[:min(len(p.anchors), maxAnchors-1)]...)
	if !pp.notMail {
		p.m.Extracted(1)
	}
	return true, nil
}

// startFolder begins a folder: acknowledgements count from here, so one
// folder's UIDs never move another folder's checkpoint.
func (p *publisher) startFolder() {
	p.acked = 0
	p.anchors = nil
}

// lastAcked is the highest UID such that it and every earlier message of
// the folder are acknowledged, with the anchors a checkpoint at it keeps:
// the newest acknowledged messages, those of the checkpoint cp it moves
// on from after them. It is cp's own when nothing new is.
func (p *publisher) lastAcked(cp Checkpoint) (uint32, []Anchor) {
	if p.acked <= cp.LastUID {
		return cp.LastUID, cp.Anchors
	}
	out := slices.Clone(p.anchors)
	for _, a := range cp.Anchors {
		if len(out) == maxAnchors {
			break
		}
		if a.UID < out[len(out)-1].UID {
			out = append(out, a)
		}
	}
	return p.acked, out
}
