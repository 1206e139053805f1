package plan

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/subject"
)

// The default throughput, used when the events stream has too little to
// measure. The README's benchmark moved 25.6 MB/s and 925 messages/s from
// one local Dovecot to another on two loaded cores (10,000 messages, mean
// 27.7 kB); a production legacy server is remote and busy with its users,
// so the defaults are about two fifths and a third of that.
const (
	DefaultBytesPerSecond    = 10_000_000
	DefaultMessagesPerSecond = 300
	// DefaultMailboxShare divides the default rates for one mailbox's
	// copy: the loader's default concurrency, 4 mailboxes at once, as
	// in the benchmark.
	DefaultMailboxShare = 4
	// DefaultMeanMessageBytes is the mean message size assumed for a
	// mailbox whose bytes the server does not report (no STATUS=SIZE)
	// when nothing was measured: 100 KiB, well above the benchmark
	// corpus's 27.7 kB mean, since real mailboxes hold attachments.
	DefaultMeanMessageBytes = 100 << 10
)

// Thresholds of a measurement: below them the default is used, since a
// few small mailboxes measure connection set-up rather than throughput.
const (
	minMeasuredBytes   = 1 << 20
	minMeasuredSeconds = 1.0
)

// Sources of a throughput.
const (
	SourceMeasured = "measured"
	SourceDefault  = "default"
)

// Throughput is the copy rate estimates are made at.
type Throughput struct {
	// BytesPerSecond and MessagesPerSecond are the rates of the whole
	// copy, every mailbox in flight together.
	BytesPerSecond    float64 `json:"bytes_per_second"`
	MessagesPerSecond float64 `json:"messages_per_second"`
	// MailboxBytesPerSecond and MailboxMessagesPerSecond are the rates
	// of one mailbox's copy: a large mailbox takes at least its bytes at
	// these, however many others run beside it.
	MailboxBytesPerSecond    float64 `json:"mailbox_bytes_per_second"`
	MailboxMessagesPerSecond float64 `json:"mailbox_messages_per_second"`
	// MeanMessageBytes sizes the mail of mailboxes whose bytes the
	// server does not report.
	MeanMessageBytes int64 `json:"mean_message_bytes"`
	// Source is SourceMeasured or SourceDefault.
	Source string `json:"source"`
	// Passes counts the mailbox passes measured; Bytes, Messages and
	// Seconds are what they loaded and how long loading was under way.
	Passes   int     `json:"passes,omitempty"`
	Bytes    int64   `json:"measured_bytes,omitempty"`
	Messages int64   `json:"measured_messages,omitempty"`
	Seconds  float64 `json:"measured_seconds,omitempty"`
	// Note says how the figures were obtained.
	Note string `json:"note"`
}

// Default is the documented default throughput.
func Default() Throughput {
	return Throughput{
		BytesPerSecond: DefaultBytesPerSecond, MessagesPerSecond: DefaultMessagesPerSecond,
		MailboxBytesPerSecond:    DefaultBytesPerSecond / DefaultMailboxShare,
		MailboxMessagesPerSecond: DefaultMessagesPerSecond / DefaultMailboxShare,
		MeanMessageBytes:         DefaultMeanMessageBytes, Source: SourceDefault,
		Note: "default: 10 MB/s and 300 messages/s in all, a quarter of that per mailbox; about two fifths and a third of the README benchmark (25.6 MB/s, 925 messages/s between two local Dovecots, 4 mailboxes at once)",
	}
}

// Estimate is the estimated time to copy bytes in messages at t's rates
// of the whole copy: the longer of bytes at the byte rate and messages at
// the message rate (small messages are bound by round trips, large ones
// by bandwidth).
func (t Throughput) Estimate(bytes, messages int64) float64 {
	return seconds(bytes, messages, t.BytesPerSecond, t.MessagesPerSecond)
}

// MailboxEstimate is Estimate at the rates of one mailbox's copy: the
// least time one mailbox of bytes in messages takes.
func (t Throughput) MailboxEstimate(bytes, messages int64) float64 {
	return seconds(bytes, messages, t.MailboxBytesPerSecond, t.MailboxMessagesPerSecond)
}

func seconds(bytes, messages int64, bps, mps float64) float64 {
	var s float64
	if bps > 0 {
		s = float64(bytes) / bps
	}
	if mps > 0 {
		s = max(s, float64(messages)/mps)
	}
	return math.Round(s)
}

// passKey names one pass over one mailbox.
type passKey struct{ mailbox, pass string }

// passTimes is what the events say of one pass over one mailbox.
type passTimes struct {
	queued, extracting, loaded time.Time
	bytes, appended            int64
}

// Measure reads the throughput of the passes on the events stream: every
// mailbox.loaded event gives a pass's bytes and messages appended, and the
// pass ran from its mailbox.extracting event (its mailbox.queued when the
// extracting one is gone) to the loaded one. Throughput is the bytes and
// messages of every pass that moved mail divided by the time at least one
// of them was running (the union of their intervals), so passes that ran
// side by side count once, at the concurrency they ran with. One
// mailbox's rates are the same bytes and messages divided by the passes'
// durations summed. With less than 1 MiB or one second measured it is
// the Default, saying why.
func Measure(ctx context.Context, st jetstream.Stream) (Throughput, error) {
	passes, err := readPasses(ctx, st)
	if err != nil {
		return Default(), err
	}
	return measure(passes), nil
}

func measure(passes map[passKey]*passTimes) Throughput {
	type span struct{ from, to time.Time }
	var spans []span
	var each time.Duration // the passes' durations, summed
	t := Throughput{Source: SourceMeasured}
	for _, p := range passes {
		from := p.extracting
		if from.IsZero() {
			from = p.queued
		}
		if p.loaded.IsZero() || from.IsZero() || !from.Before(p.loaded) || p.appended == 0 {
			continue
		}
		spans = append(spans, span{from, p.loaded})
		each += p.loaded.Sub(from)
		t.Passes++
		t.Bytes += p.bytes
		t.Messages += p.appended
	}
	slices.SortFunc(spans, func(a, b span) int { return a.from.Compare(b.from) })
	var busy time.Duration
	var cur span
	for i, s := range spans {
		switch {
		case i == 0:
			cur = s
		case !s.from.After(cur.to):
			if s.to.After(cur.to) {
				cur.to = s.to
			}
		default:
			busy += cur.to.Sub(cur.from)
			cur = s
		}
	}
	if len(spans) > 0 {
		busy += cur.to.Sub(cur.from)
	}
	t.Seconds = busy.Seconds()
	if t.Bytes < minMeasuredBytes || t.Seconds < minMeasuredSeconds {
		d := Default()
		d.Note = fmt.Sprintf("%s; the events stream has too little to measure (%d passes, %d bytes in %.1f s)", d.Note, t.Passes, t.Bytes, t.Seconds)
		return d
	}
	t.BytesPerSecond = float64(t.Bytes) / t.Seconds
	t.MessagesPerSecond = float64(t.Messages) / t.Seconds
	t.MailboxBytesPerSecond = float64(t.Bytes) / each.Seconds()
	t.MailboxMessagesPerSecond = float64(t.Messages) / each.Seconds()
	t.MeanMessageBytes = t.Bytes / t.Messages
	t.Note = fmt.Sprintf("measured: %d mailbox passes loaded %d messages, %d bytes in %.0f s of copying (mailbox.extracting or mailbox.queued to mailbox.loaded; %.0f s summed over the passes)",
		t.Passes, t.Messages, t.Bytes, t.Seconds, each.Seconds())
	return t
}

// readPasses reads the queued, extracting and loaded events of the
// stream, by mailbox and pass.
func readPasses(ctx context.Context, st jetstream.Stream) (map[passKey]*passTimes, error) {
	out := map[passKey]*passTimes{}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("events stream: %w", err)
	}
	if info.State.Msgs == 0 {
		return out, nil
	}
	var filters []string
	for _, typ := range []string{event.MailboxQueued, event.MailboxExtracting, event.MailboxLoaded} {
		filters = append(filters, subject.EventPrefix+"."+typ+".>")
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: filters})
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(500 * time.Millisecond))
		if errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read events: %w", err)
		}
		addEvent(out, m.Data())
		meta, err := m.Metadata()
		if err != nil {
			return nil, fmt.Errorf("read events: %w", err)
		}
		if meta.NumPending == 0 {
			return out, nil
		}
	}
}

// addEvent folds one event into passes; an event this code cannot read
// (another version) is left out of the measurement.
func addEvent(passes map[passKey]*passTimes, raw []byte) {
	e, err := event.Decode(raw)
	if err != nil {
		return
	}
	var ref struct {
		Pass string `json:"pass"`
	}
	if err := e.DataAs(&ref); err != nil || ref.Pass == "" {
		return
	}
	k := passKey{e.Key, ref.Pass}
	p := passes[k]
	if p == nil {
		p = &passTimes{}
		passes[k] = p
	}
	switch e.Type {
	case event.MailboxQueued:
		p.queued = e.Time
	case event.MailboxExtracting:
		p.extracting = e.Time
	case event.MailboxLoaded:
		var d event.LoadedData
		if err := e.DataAs(&d); err != nil {
			return
		}
		p.loaded, p.bytes, p.appended = e.Time, d.Bytes, d.Appended
	}
}
