package migrate

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/cmd/mailferry/verify"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/testenv/imaptest"
)

func openBroker(t *testing.T, ctx context.Context) *broker.Broker {
	t.Helper()
	dir := t.TempDir()
	_, b := imaptest.Broker(t, ctx, fmt.Sprintf("nats: {data_dir: %s/nats}\n", dir), dir)
	return b
}

func storedEvents(t *testing.T, ctx context.Context, b *broker.Broker) uint64 {
	t.Helper()
	st, err := b.JS.Stream(ctx, broker.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestVerifyingTheSameResultTwiceRecordsItOnceAndAnotherResultAgain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := openBroker(t, ctx)
	const mbx = "alice@old.example"
	if err := enqueue(ctx, b, []job.Mailbox{{SourceUser: mbx, TargetUser: mbx}}, "p1"); err != nil {
		t.Fatal(err)
	}
	r := &verify.Report{OK: true, Mailboxes: []verify.MailboxReport{{Source: mbx, Target: mbx, OK: true, Messages: 3}}}
	for range 2 {
		if err := publishVerified(ctx, b, r); err != nil {
			t.Fatal(err)
		}
	}
	if n := storedEvents(t, ctx, b); n != 2 {
		t.Errorf("%d events after queued and two identical verifications, want 2", n)
	}
	r.Mailboxes[0].Messages = 4 // new mail arrived and was loaded
	if err := publishVerified(ctx, b, r); err != nil {
		t.Fatal(err)
	}
	if n := storedEvents(t, ctx, b); n != 3 {
		t.Errorf("%d events after a verification with another result, want 3", n)
	}
	st, _ := b.JS.Stream(ctx, broker.StreamEvents)
	raw, err := st.GetLastMsgForSubject(ctx, event.Verified(mbx, event.VerifiedData{}).Subject())
	if err != nil {
		t.Fatal(err)
	}
	e, err := event.Decode(raw.Data)
	if err != nil {
		t.Fatal(err)
	}
	var d event.VerifiedData
	if err := e.DataAs(&d); err != nil {
		t.Fatal(err)
	}
	if d.Pass != "p1" || d.Messages != 4 || d.Digest == "" {
		t.Errorf("verified data %+v, want pass p1, 4 messages and a digest", d)
	}
}

func TestAVerificationThatFoundDifferencesIsRecordedWithTheirCount(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := openBroker(t, ctx)
	const bad, broken = "bad@old.example", "broken@old.example"
	if err := enqueue(ctx, b, []job.Mailbox{{SourceUser: bad, TargetUser: bad}, {SourceUser: broken, TargetUser: broken}}, "p1"); err != nil {
		t.Fatal(err)
	}
	r := &verify.Report{Mailboxes: []verify.MailboxReport{
		{Source: bad, Target: bad, Messages: 3, Folders: []verify.FolderReport{{Sources: []string{"INBOX"}, Target: "INBOX",
			Differences: []verify.Diff{{Kind: "missing", UID: 2}, {Kind: "flags", UID: 3}}}}},
		// Not compared at all: nothing to record.
		{Source: broken, Target: broken, Error: "login refused"},
	}}
	if err := publishVerified(ctx, b, r); err != nil {
		t.Fatal(err)
	}
	st, _ := b.JS.Stream(ctx, broker.StreamEvents)
	raw, err := st.GetLastMsgForSubject(ctx, event.Verified(bad, event.VerifiedData{}).Subject())
	if err != nil {
		t.Fatal(err)
	}
	e, err := event.Decode(raw.Data)
	if err != nil {
		t.Fatal(err)
	}
	var d event.VerifiedData
	if err := e.DataAs(&d); err != nil {
		t.Fatal(err)
	}
	if d.OK() || d.Differences != 2 || d.Missing != 1 || d.Pass != "p1" {
		t.Errorf("verified data %+v, want 2 differences, 1 missing, pass p1", d)
	}
	if _, err := st.GetLastMsgForSubject(ctx, event.Verified(broken, event.VerifiedData{}).Subject()); err == nil {
		t.Error("a mailbox that could not be compared was recorded as verified")
	}
}

func TestRecordingAVerificationOnAClosedConnectionFails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := openBroker(t, ctx)
	b.Conn.Close()
	r := &verify.Report{OK: true, Mailboxes: []verify.MailboxReport{{Source: "a@old.example", OK: true, Messages: 1}}}
	if err := publishVerified(ctx, b, r); err == nil {
		t.Error("the verification was not recorded and nobody was told")
	}
}

func TestTheTrackerShowsWhatTheLifecycleSays(t *testing.T) {
	boxes := []job.Mailbox{{SourceUser: "a"}, {SourceUser: "b"}, {SourceUser: "c"}}
	tr := newTracker(boxes, "p1", 2)
	for _, o := range []event.Outgoing{
		event.Extracting("a", "p1"),
		event.Extracted("a", &event.ExtractedData{Pass: "p1", Messages: 5}),
		event.Loaded("a", event.LoadedData{Pass: "p1", Appended: 4, Skipped: 1, Bytes: 50}),
		event.Superseded("b", event.SupersededData{Pass: "p1", By: "p2", Phase: event.PhaseExtracting}),
		event.Extracting("b", "p2"),
		event.Failed("c", 1, event.FailedData{Pass: "p1", Phase: event.PhaseLoading, Reason: "down", Retried: true}),
		event.Failed("c", 2, event.FailedData{Pass: "p1", Phase: event.PhaseLoading, Reason: "still down", Retried: true}),
	} {
		e, err := o.Envelope("test", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		tr.onEvent(e, zerolog.Nop())
	}
	got := map[string]MailboxProgress{}
	for _, p := range tr.snapshot() {
		got[p.Mailbox] = p
	}
	if a := got["a"]; a.Phase != PhaseLoaded || a.Total != 5 || a.Loaded != 5 || a.Appended != 4 || a.LoadedBytes != 50 {
		t.Errorf("a = %+v, want loaded 5 of 5", a)
	}
	if b := got["b"]; b.Phase != PhaseExtracting || b.Pass != "p2" {
		t.Errorf("b = %+v, want extracting p2", b)
	}
	if c := got["c"]; c.Phase != PhaseFailed || c.Failures != 2 || c.LastError != "loading: still down" {
		t.Errorf("c = %+v, want failed after 2 attempts", c)
	}
	if tr.finished() {
		t.Error("finished while b extracts")
	}
}
