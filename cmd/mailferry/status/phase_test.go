package status

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/testenv/imaptest"
)

func TestStatusShowsThePhaseOfEachMailboxAcrossItsPasses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	_, b := imaptest.Broker(t, ctx, fmt.Sprintf("nats: {data_dir: %s/nats}\n", dir), dir)
	loaded := func(mb, pass string) event.Outgoing { return event.Loaded(mb, event.LoadedData{Pass: pass}) }
	failed := func(mb, pass string, attempt uint64, retried bool) event.Outgoing {
		return event.Failed(mb, attempt, event.FailedData{Pass: pass, Phase: event.PhaseLoading, Reason: "down", Retried: retried})
	}
	verified := func(mb, pass string) event.Outgoing {
		return event.Verified(mb, event.VerifiedData{Pass: pass, Messages: 1, Digest: "d"})
	}
	cases := []struct {
		mailbox   string
		events    []event.Outgoing
		phase     string
		lastError string
	}{
		{"never@x", nil, PhaseUnknown, ""},
		{"queued@x", []event.Outgoing{event.Queued("queued@x", "p1")}, PhaseQueued, ""},
		{"race@x", []event.Outgoing{event.Extracting("race@x", "p1"), event.Queued("race@x", "p1")}, PhaseExtracting, ""},
		{"loaded@x", []event.Outgoing{event.Queued("loaded@x", "p1"), event.Extracting("loaded@x", "p1"),
			event.Extracted("loaded@x", &event.ExtractedData{Pass: "p1"}), loaded("loaded@x", "p1")}, PhaseVerifying, ""},
		{"done@x", []event.Outgoing{event.Queued("done@x", "p1"), loaded("done@x", "p1"), verified("done@x", "p1")}, PhaseDone, ""},
		{"failed@x", []event.Outgoing{event.Queued("failed@x", "p1"), failed("failed@x", "p1", 1, false)}, PhaseFailed, "loading: down"},
		{"retried@x", []event.Outgoing{event.Queued("retried@x", "p1"), failed("retried@x", "p1", 1, true), loaded("retried@x", "p1")},
			PhaseVerifying, "loading: down"},
		// Done stays done while a later pass runs (see across_test.go).
		{"requeued@x", []event.Outgoing{event.Queued("requeued@x", "p1"), loaded("requeued@x", "p1"), verified("requeued@x", "p1"),
			event.Queued("requeued@x", "p2")}, PhaseDone, ""},
		{"requeued-unverified@x", []event.Outgoing{event.Queued("requeued-unverified@x", "p1"), loaded("requeued-unverified@x", "p1"),
			event.Queued("requeued-unverified@x", "p2")}, PhaseQueued, ""},
	}
	ev := event.Publisher{JS: b.JS, Service: "test"}
	var boxes []job.Mailbox
	for _, c := range cases {
		boxes = append(boxes, job.Mailbox{SourceUser: c.mailbox})
		for _, o := range c.events {
			if err := ev.Publish(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
	}
	st, err := Read(ctx, b, boxes)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cases {
		if m := st.Mailboxes[i]; m.Phase != c.phase || m.LastError != c.lastError {
			t.Errorf("%s: phase %q last error %q, want %q %q", c.mailbox, m.Phase, m.LastError, c.phase, c.lastError)
		}
	}
}
