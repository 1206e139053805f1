package loader

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/subject"
)

// logBuffer collects a service's log lines; sessions log from several
// goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

func (f *fixture) captureLog() *logBuffer {
	lb := &logBuffer{}
	f.svc.Log = zerolog.New(lb).Level(zerolog.InfoLevel)
	return lb
}

// waitFor polls cond until it holds or d passes.
func (f *fixture) waitFor(d time.Duration, what string, cond func() bool) {
	f.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			f.t.Fatalf("gave up after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// loaderProgress reads what status shows of the loader for srcUser.
func (f *fixture) loaderProgress() event.Progress {
	var p event.Progress
	if e, err := f.b.Progress.Get(f.ctx, event.ProgressKey("loader", srcUser)); err == nil {
		_ = json.Unmarshal(e.Value(), &p)
	}
	return p
}

// lastEvent returns the data of srcUser's newest event of type typ.
func (f *fixture) lastEvent(typ string, v any) bool {
	f.t.Helper()
	st, err := f.b.JS.Stream(f.ctx, broker.StreamEvents)
	if err != nil {
		f.t.Fatal(err)
	}
	raw, err := st.GetLastMsgForSubject(f.ctx, subject.Event(typ, srcUser))
	if err != nil {
		return false
	}
	e, err := event.Decode(raw.Data)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := json.Unmarshal(e.Data, v); err != nil {
		f.t.Fatal(err)
	}
	return true
}

func (f *fixture) enqueue(j *job.Job) {
	f.t.Helper()
	if err := job.Publish(f.ctx, f.b.JS, j); err != nil {
		f.t.Fatal(err)
	}
}

// runService runs the loader service until the test ends.
func (f *fixture) runService() {
	ctx, stop := context.WithCancel(f.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.svc.Run(ctx)
	}()
	f.t.Cleanup(func() { stop(); <-done })
}

func TestASessionWaitsForTheLeaseAndSaysOnceWhatItWaitsFor(t *testing.T) {
	f := newFixture(t)
	logs := f.captureLog()
	holder, err := acquire(f.ctx, f.b.Ledger, srcUser, "older-pass", f.svc.Settings.LeaseTTL.Std())
	if err != nil {
		t.Fatal(err)
	}
	want := corpusOf(6, "INBOX")
	j := f.publishPass(want, "")
	done := make(chan error, 1)
	go func() {
		_, err := f.svc.Load(f.ctx, j)
		done <- err
	}()
	f.waitFor(10*time.Second, "status to show the lease wait", func() bool {
		return strings.Contains(f.loaderProgress().Waiting, "lease held by pass older-pass")
	})
	time.Sleep(3 * leasePoll) // several polls: still one log line
	holder.release(f.ctx)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Load after the holder let go: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Load still waiting after the lease was released")
	}
	if n := logs.count("waiting for the mailbox lease another session holds"); n != 1 {
		t.Errorf("the lease wait was logged %d times, want once", n)
	}
	if w := f.loaderProgress().Waiting; w != "" {
		t.Errorf("status still shows a wait after the load: %q", w)
	}
	f.checkTarget("INBOX", want)
}

func TestAPassJobSupersededBeforeItStartsIsDroppedWithAnEvent(t *testing.T) {
	f := newFixture(t)
	old := f.job()
	old.Pass = "old-pass"
	f.enqueue(old) // its extraction never wrote a record
	want := corpusOf(5, "INBOX")
	j := f.publishPass(want, "")
	f.enqueue(j)
	f.runService()
	var loaded event.LoadedData
	f.waitFor(20*time.Second, "the newer pass to be loaded", func() bool { return f.lastEvent(event.MailboxLoaded, &loaded) })
	if loaded.Pass != j.Pass {
		t.Errorf("loaded pass %q, want %q", loaded.Pass, j.Pass)
	}
	var sup event.SupersededData
	if !f.lastEvent(event.MailboxSuperseded, &sup) || sup.Pass != "old-pass" || sup.By != j.Pass {
		t.Errorf("superseded event = %+v, want old-pass by %s", sup, j.Pass)
	}
	f.checkTarget("INBOX", want)
}

func TestASessionWaitingOnAnUnfinishedPassGivesWayToANewerPass(t *testing.T) {
	f := newFixture(t)
	logs := f.captureLog()
	all := corpusOf(8, "INBOX")
	// The first pass's extractor died after four messages, for good.
	first := f.publishUnfinished(all[:4], "")
	f.enqueue(first)
	f.runService()
	f.waitFor(30*time.Second, "the first session to wait for records", func() bool {
		return strings.Contains(f.loaderProgress().Waiting, "records of pass "+first.Pass)
	})
	if n := logs.count("waiting for the extractor's records of this pass"); n != 1 {
		t.Errorf("the record wait was logged %d times, want once", n)
	}
	// A new run enqueues a newer pass, whose extraction finishes.
	second := f.publishPass(all, "")
	f.enqueue(second)
	var loaded event.LoadedData
	f.waitFor(30*time.Second, "the newer pass to be loaded", func() bool {
		return f.lastEvent(event.MailboxLoaded, &loaded) && loaded.Pass == second.Pass
	})
	var sup event.SupersededData
	if !f.lastEvent(event.MailboxSuperseded, &sup) || sup.Pass != first.Pass || sup.By != second.Pass || sup.Phase != "loading" {
		t.Errorf("superseded event = %+v, want %s by %s while loading", sup, first.Pass, second.Pass)
	}
	f.checkTarget("INBOX", all)
}

func TestAPassWhoseEndRecordAnotherSessionReadEndsAtOnce(t *testing.T) {
	f := newFixture(t)
	want := corpusOf(5, "INBOX")
	j := f.publishPass(want, "")
	// A session of an older pass (not yet aware it was superseded) reads
	// every record, this pass's end included, then is stopped.
	older := f.job()
	older.Pass = "older-pass"
	ctx, cancel := context.WithCancel(f.ctx)
	go func() {
		time.Sleep(2 * time.Second)
		cancel()
	}()
	if _, err := f.svc.Load(ctx, older); !errors.Is(err, context.Canceled) {
		t.Fatalf("older session: err = %v, want it to wait until cancelled", err)
	}
	start := time.Now()
	if _, err := f.svc.Load(f.ctx, j); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the pass whose end was already read took %v to finish", took)
	}
	f.checkTarget("INBOX", want)
}

func TestALoadWaitingOnAnExtractionThatFailedForGoodFailsForGood(t *testing.T) {
	f := newFixture(t)
	j := f.publishUnfinished(corpusOf(3, "INBOX"), "")
	if err := event.FinalBeat(f.ctx, f.b.Progress, "extractor", srcUser, j.Pass, event.EndedFailed, "login refused"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(f.ctx, 20*time.Second)
	defer cancel()
	_, err := f.svc.Load(ctx, j)
	if !errors.Is(err, job.ErrPermanent) || !strings.Contains(err.Error(), "login refused") {
		t.Fatalf("err = %v, want a permanent failure naming the extractor's reason", err)
	}
}

func TestALoadWaitingOnASilentExtractionLetsGoOfTheMailbox(t *testing.T) {
	f := newFixture(t)
	j := f.publishUnfinished(corpusOf(3, "INBOX"), "")
	stale, _ := json.Marshal(event.Heartbeat{Service: "extractor", Mailbox: srcUser, Pass: j.Pass, Time: time.Now().Add(-time.Hour)})
	if _, err := f.b.Progress.Put(f.ctx, event.HeartbeatKey("extractor", srcUser), stale); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(f.ctx, 20*time.Second)
	defer cancel()
	_, err := f.svc.Load(ctx, j)
	if !errors.Is(err, errExtractionSilent) {
		t.Fatalf("err = %v, want the extraction taken for abandoned", err)
	}
	if errors.Is(err, job.ErrPermanent) {
		t.Errorf("a silent extraction failed the job for good: %v", err)
	}
	l, err := acquire(f.ctx, f.b.Ledger, srcUser, "next", f.svc.Settings.LeaseTTL.Std())
	if err != nil {
		t.Fatalf("the session kept the mailbox after giving up: %v", err)
	}
	l.release(f.ctx)
}
