package status

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mailferry/mailferry/services/loader"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/record"
	"github.com/mailferry/mailferry/shared/subject"
	"github.com/mailferry/mailferry/shared/testenv/imaptest"
)

// rig writes into a real embedded broker what the services would.
type rig struct {
	t   *testing.T
	ctx context.Context
	b   *broker.Broker
	ev  event.Publisher
}

func newRig(t *testing.T) *rig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	dir := t.TempDir()
	_, b := imaptest.Broker(t, ctx, fmt.Sprintf("nats: {data_dir: %s/nats}\n", dir), dir)
	return &rig{t: t, ctx: ctx, b: b, ev: event.Publisher{JS: b.JS, Service: "test"}}
}

func (r *rig) publish(events ...event.Outgoing) {
	r.t.Helper()
	for _, o := range events {
		if err := r.ev.Publish(r.ctx, o); err != nil {
			r.t.Fatal(err)
		}
	}
}

// progress stores a service's sample of mailbox in pass.
func (r *rig) progress(p event.Progress) {
	r.t.Helper()
	p.Updated = time.Now().UTC()
	b, _ := json.Marshal(p)
	if _, err := r.b.Progress.Put(r.ctx, event.ProgressKey(p.Service, p.Mailbox), b); err != nil {
		r.t.Fatal(err)
	}
}

// ledger stores the loader's folder entry.
func (r *rig) ledger(mailbox, folder string, uidv uint32, st loader.FolderState) {
	r.t.Helper()
	r.ledgerEpoch(mailbox, folder, uidv, 0, st)
}

// ledgerEpoch stores the loader's folder entry of a folder renumbered
// epoch times under uidv.
func (r *rig) ledgerEpoch(mailbox, folder string, uidv, epoch uint32, st loader.FolderState) {
	r.t.Helper()
	b, _ := json.Marshal(st)
	if _, err := r.b.Ledger.Put(r.ctx, loader.FolderKey(mailbox, folder, uidv, epoch), b); err != nil {
		r.t.Fatal(err)
	}
}

// dead stores a dead letter of mailbox, as the loader does.
func (r *rig) dead(mailbox string, uid uint32) {
	r.t.Helper()
	b, _ := json.Marshal(event.DeadLetteredData{ID: fmt.Sprintf("INBOX/7/%d", uid), Mailbox: mailbox, UID: uid, Reason: "too big"})
	m := nats.NewMsg(subject.Dead(mailbox))
	m.Data = b
	if _, err := r.b.JS.PublishMsg(r.ctx, m); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) read(boxes ...string) *Status {
	r.t.Helper()
	var mbs []job.Mailbox
	for _, b := range boxes {
		mbs = append(mbs, job.Mailbox{SourceUser: b, TargetUser: b})
	}
	st, err := Read(r.ctx, r.b, mbs)
	if err != nil {
		r.t.Fatal(err)
	}
	return st
}

// complete writes a first pass p1 over mailbox that extracted, loaded
// and verified n messages of 100 bytes in INBOX.
func (r *rig) complete(mailbox string, n int64) {
	r.t.Helper()
	r.publish(event.Queued(mailbox, "p1"), event.Extracting(mailbox, "p1"),
		event.Extracted(mailbox, &event.ExtractedData{Mailbox: mailbox, Pass: "p1", Messages: n, Bytes: 100 * n,
			Folders: []record.FolderSummary{{Name: "INBOX", UIDValidity: 7, Messages: n, Bytes: 100 * n, Total: uint32(n)}}}))
	r.ledger(mailbox, "INBOX", 7, loader.FolderState{LastUID: uint32(n), Appended: n, Loaded: n, LoadedBytes: 100 * n})
	r.progress(event.Progress{Service: "loader", Mailbox: mailbox, Pass: "p1", Messages: n, Appended: n, Bytes: 100 * n, Started: time.Now().Add(-time.Minute)})
	r.publish(event.Loaded(mailbox, event.LoadedData{Pass: "p1", Appended: n, Bytes: 100 * n}),
		event.Verified(mailbox, event.VerifiedData{Pass: "p1", Messages: n, Digest: "ok"}))
}

func (r *rig) text(st *Status) string {
	var out bytes.Buffer
	st.WriteText(&out)
	return out.String()
}

// want checks a mailbox's phase as shown and its cumulative counts.
func want(t *testing.T, m Mailbox, shown string, total, extracted, loaded, bytes, dead int64) {
	t.Helper()
	if m.Shown() != shown {
		t.Errorf("%s shown as %q, want %q", m.Mailbox, m.Shown(), shown)
	}
	if m.Total != total || m.Extracted != extracted || m.Loaded != loaded || m.LoadedBytes != bytes || m.Dead != dead {
		t.Errorf("%s: total %d extracted %d loaded %d bytes %d dead %d, want %d %d %d %d %d", m.Mailbox,
			m.Total, m.Extracted, m.Loaded, m.LoadedBytes, m.Dead, total, extracted, loaded, bytes, dead)
	}
}

func TestAReplayOfACompleteMailboxKeepsItDoneWithItsCounts(t *testing.T) {
	r := newRig(t)
	const mbx = "a@old.example"
	r.complete(mbx, 79)
	want(t, r.read(mbx).Mailboxes[0], "done", 79, 79, 79, 7900, 0)

	// The replay has begun: only the loader's sample names it.
	r.progress(event.Progress{Service: "loader", Mailbox: mbx, Pass: "replay-1", Messages: 10, Skipped: 10, Started: time.Now()})
	st := r.read(mbx)
	want(t, st.Mailboxes[0], "done (replay pass loading 10)", 79, 79, 79, 7900, 0)
	if m := st.Mailboxes[0]; m.Pass != "replay-1" || m.PassKind != "replay" || m.PassPhase != PhaseLoading {
		t.Errorf("pass %q kind %q phase %q, want the replay loading", m.Pass, m.PassKind, m.PassPhase)
	}
	if out := r.text(st); strings.Contains(out, "0/79") || !strings.Contains(out, "79/79") {
		t.Errorf("the table does not show the mailbox's counts:\n%s", out)
	}

	// It ended, finding everything there already: the verification
	// still holds.
	r.publish(event.Loaded(mbx, event.LoadedData{Pass: "replay-1", Skipped: 79}))
	want(t, r.read(mbx).Mailboxes[0], "done", 79, 79, 79, 7900, 0)
}

func TestADeltaPassAfterDoneShowsDoneWithThePassAndThenNeedsVerifying(t *testing.T) {
	r := newRig(t)
	const mbx = "b@old.example"
	r.complete(mbx, 79)
	const delta = "delta-old=2Eexample-7"
	r.publish(event.Extracting(mbx, delta))
	r.progress(event.Progress{Service: "extractor", Mailbox: mbx, Pass: delta, Messages: 3, Bytes: 300, Total: 82, Started: time.Now()})
	st := r.read(mbx)
	want(t, st.Mailboxes[0], "done (delta pass extracting 3)", 82, 82, 79, 7900, 0)

	r.publish(event.Extracted(mbx, &event.ExtractedData{Mailbox: mbx, Pass: delta, Messages: 5, Bytes: 500,
		Folders: []record.FolderSummary{{Name: "INBOX", UIDValidity: 7, Messages: 5, Bytes: 500, Total: 84}}}))
	r.ledger(mbx, "INBOX", 7, loader.FolderState{LastUID: 82, Appended: 82, Loaded: 82, LoadedBytes: 8200})
	r.progress(event.Progress{Service: "loader", Mailbox: mbx, Pass: delta, Messages: 3, Appended: 3, Bytes: 300, Started: time.Now()})
	st = r.read(mbx)
	want(t, st.Mailboxes[0], "done (delta pass loading 3/5)", 84, 84, 82, 8200, 0)
	if p := st.Mailboxes[0].PassProgress; p == nil || p.Total != 5 || p.Loaded != 3 {
		t.Errorf("pass progress %+v, want 3 of 5", p)
	}
	if st.Phases[PhaseDone] != 1 || st.Phases[PhaseQueued] != 0 {
		t.Errorf("phases %v, want 1 done", st.Phases)
	}

	// Loaded: what the target holds changed since the verification.
	r.ledger(mbx, "INBOX", 7, loader.FolderState{LastUID: 84, Appended: 84, Loaded: 84, LoadedBytes: 8400})
	r.publish(event.Loaded(mbx, event.LoadedData{Pass: delta, Appended: 5, Bytes: 500}))
	want(t, r.read(mbx).Mailboxes[0], "verifying", 84, 84, 84, 8400, 0)

	// verify names the pass last queued, p1, and still counts.
	r.publish(event.Verified(mbx, event.VerifiedData{Pass: "p1", Messages: 84, Digest: "ok84"}))
	want(t, r.read(mbx).Mailboxes[0], "done", 84, 84, 84, 8400, 0)
}

func TestDeadLettersAndLedgerFoldersAreCountedPerMailbox(t *testing.T) {
	r := newRig(t)
	const a, b = "c@old.example", "d@old.example"
	r.complete(a, 10)
	// Replays appended and found some again: each counts once.
	r.ledger(a, "Sent", 3, loader.FolderState{Appended: 8, Present: 5, Dead: 2, Loaded: 5, LoadedBytes: 500, NotMail: 2})
	// A folder whose UIDVALIDITY changed counts by its newest entry.
	r.ledger(a, "Junk", 1, loader.FolderState{Appended: 9, Loaded: 9, LoadedBytes: 900, NotMail: 5})
	r.ledger(a, "Junk", 2, loader.FolderState{Appended: 2, Loaded: 2, LoadedBytes: 200, NotMail: 1})
	// A folder renumbered under the same UIDVALIDITY and loaded again:
	// its newest numbering counts what it holds now.
	r.ledgerEpoch(a, "Work", 4, 0, loader.FolderState{Appended: 4, Loaded: 4, LoadedBytes: 400})
	r.ledgerEpoch(a, "Work", 4, 1, loader.FolderState{Appended: 1, Present: 4, Loaded: 5, LoadedBytes: 500})
	// An entry written before the running totals existed.
	r.ledger(a, "Old", 1, loader.FolderState{Appended: 3, Present: 1})
	r.dead(a, 11)
	r.dead(a, 12)
	r.dead(b, 1)
	st := r.read(a, b)
	m := st.Mailboxes[0]
	if m.Loaded != 26 || m.Appended != 24 || m.LoadedBytes != 2200 || m.Dead != 2 || m.NotMail != 3 {
		t.Errorf("%s: loaded %d appended %d bytes %d dead %d not mail %d, want 26 24 2200 2 3", a, m.Loaded, m.Appended, m.LoadedBytes, m.Dead, m.NotMail)
	}
	var text strings.Builder
	st.WriteText(&text)
	if !strings.Contains(text.String(), "not mail, not copied: 3 contact, calendar or task items") {
		t.Errorf("status does not show the items that are no mail:\n%s", text.String())
	}
	if m := st.Mailboxes[1]; m.Dead != 1 || m.Loaded != 0 || m.Phase != PhaseUnknown {
		t.Errorf("%s: dead %d loaded %d phase %s, want 1 dead, nothing loaded, not queued", b, m.Dead, m.Loaded, m.Phase)
	}
	if st.Totals.Dead != 3 || st.Totals.Loaded != 26 {
		t.Errorf("totals %+v, want 3 dead, 26 loaded", st.Totals)
	}
	var decoded Status
	raw, _ := json.Marshal(st)
	if err := json.Unmarshal(raw, &decoded); err != nil || decoded.Mailboxes[0].Dead != 2 || decoded.Mailboxes[0].LoadedBytes != 2200 {
		t.Errorf("status -json does not carry the counts: %s", raw)
	}
}

func TestAFailedVerificationShowsFailedUntilAVerificationFindsNothing(t *testing.T) {
	r := newRig(t)
	const mbx = "e@old.example"
	r.publish(event.Queued(mbx, "p1"), event.Extracting(mbx, "p1"),
		event.Extracted(mbx, &event.ExtractedData{Mailbox: mbx, Pass: "p1", Messages: 3,
			Folders: []record.FolderSummary{{Name: "INBOX", UIDValidity: 7, Messages: 3, Total: 3}}}),
		event.Loaded(mbx, event.LoadedData{Pass: "p1", Appended: 3}))
	want(t, r.read(mbx).Mailboxes[0], "verifying", 3, 3, 0, 0, 0)

	r.publish(event.Verified(mbx, event.VerifiedData{Pass: "p1", Messages: 3, Digest: "bad", Differences: 2, Missing: 1}))
	st := r.read(mbx)
	want(t, st.Mailboxes[0], "failed: verification: 2 differences", 3, 3, 0, 0, 0)
	if m := st.Mailboxes[0]; m.Differences != 2 || st.Phases[PhaseFailed] != 1 {
		t.Errorf("differences %d phases %v, want 2 and 1 failed", m.Differences, st.Phases)
	}
	if out := r.text(st); !strings.Contains(out, "failed: verification: 2 differences") {
		t.Errorf("the table does not say why:\n%s", out)
	}

	// A new pass to fix it runs as itself, the failure named.
	r.publish(event.Queued(mbx, "p2"), event.Extracting(mbx, "p2"))
	m := r.read(mbx).Mailboxes[0]
	if m.Shown() != PhaseExtracting || m.LastError != "verification: 2 differences" {
		t.Errorf("shown %q last error %q, want extracting after the failed verification", m.Shown(), m.LastError)
	}
	r.publish(event.Extracted(mbx, &event.ExtractedData{Mailbox: mbx, Pass: "p2", Messages: 1,
		Folders: []record.FolderSummary{{Name: "INBOX", UIDValidity: 7, Messages: 1, Total: 3}}}),
		event.Loaded(mbx, event.LoadedData{Pass: "p2", Appended: 1}),
		event.Verified(mbx, event.VerifiedData{Pass: "p2", Messages: 3, Digest: "good"}))
	want(t, r.read(mbx).Mailboxes[0], "done", 3, 3, 0, 0, 0)
}

func TestAFailedDeltaPassShowsFailedWithThePass(t *testing.T) {
	r := newRig(t)
	const mbx = "f@old.example"
	r.complete(mbx, 4)
	const delta = "delta-old=2Eexample-9"
	r.publish(event.Extracting(mbx, delta),
		event.Failed(mbx, 1, event.FailedData{Pass: delta, Phase: event.PhaseExtracting, Reason: "source down"}))
	want(t, r.read(mbx).Mailboxes[0], "failed: delta pass: extracting: source down", 4, 4, 4, 400, 0)
}

func TestManyMailboxesReadTheLedgerInOneWatchWithTheSameCounts(t *testing.T) {
	r := newRig(t)
	var many []string
	for i := range 40 { // more than read per mailbox
		many = append(many, fmt.Sprintf("u%02d@old.example", i))
	}
	r.complete(many[3], 5)
	r.ledger(many[3], "Sent", 1, loader.FolderState{Appended: 2, Loaded: 2, LoadedBytes: 20})
	r.ledger(many[39], "INBOX", 1, loader.FolderState{Appended: 1, Loaded: 1, LoadedBytes: 10})
	few := r.read(many[3], many[39])
	all := r.read(many...)
	for i, m := range []Mailbox{all.Mailboxes[3], all.Mailboxes[39]} {
		if f := few.Mailboxes[i]; m.Loaded != f.Loaded || m.LoadedBytes != f.LoadedBytes || m.Phase != f.Phase {
			t.Errorf("%s read among many: %+v; alone: %+v", m.Mailbox, m, f)
		}
	}
	if all.Totals.Loaded != 8 || all.Totals.LoadedBytes != 530 || all.Phases[PhaseUnknown] != 39 {
		t.Errorf("totals %+v phases %v, want 8 loaded, 530 bytes, 39 not queued", all.Totals, all.Phases)
	}
}
