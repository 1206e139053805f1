package auth

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/services/auth/internal/authtest"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/command"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/sourcecred"
	"github.com/mailferry/mailferry/shared/subject"
)

const bobLegacy = "bob's legacy pw 7"

// handOffFixture is a hand-off over an embedded broker and a mailboxes
// file where alice has a source password file and bob has none.
func handOffFixture(t *testing.T) (*sourceHandOff, *broker.Broker, *authtest.LogSink) {
	t.Helper()
	dir := t.TempDir()
	boxes := filepath.Join(dir, "mailboxes.csv")
	if err := os.WriteFile(boxes, []byte("source_user,target_user,source_password_file\nalice@company,alice@example.com,alice.pw\nbob@company,Bob@Example.com,\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := authtest.Config(t, "")
	b := authtest.Broker(t, cfg)
	kv, err := sourcecred.Bind(authtest.Context(t, 10*time.Second), b.JS)
	if err != nil || kv == nil {
		t.Fatalf("bind: %v, %v", kv, err)
	}
	key, err := sourcecred.ParseKey([]byte(sourcecred.NewKeyText()))
	if err != nil {
		t.Fatal(err)
	}
	logs := authtest.NewLogSink(t)
	return &sourceHandOff{mailboxes: boxes, store: &sourcecred.Store{KV: kv, Key: key}, js: b.JS,
		events: event.Publisher{JS: b.JS, Service: ServiceName}, log: logs.Logger()}, b, logs
}

// jobsOf counts the jobs and the mailbox.queued events of mailbox.
func jobsOf(t *testing.T, b *broker.Broker, mailbox string) (jobs uint64, queued int) {
	t.Helper()
	ctx := authtest.Context(t, 10*time.Second)
	st, err := b.JS.Stream(ctx, broker.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	evs, _ := authtest.Events(t, b.JS)
	for _, e := range evs {
		if e.Type == event.MailboxQueued && e.Key == mailbox {
			queued++
		}
	}
	if info.State.Msgs == 0 {
		return 0, queued
	}
	sub := subject.Job(mailbox)
	info, err = st.Info(ctx, jetstream.WithSubjectFilter(sub))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[sub], queued
}

func TestFiftySignInsAtOnceHandOffOneCredentialAndQueueOnePass(t *testing.T) {
	h, b, logs := handOffFixture(t)
	ctx := authtest.Context(t, time.Minute)
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.HandOff(ctx, "bob@example.com", bobLegacy)
		}()
	}
	wg.Wait()
	if pw, err := h.store.Password(ctx, "bob@company"); err != nil || pw != bobLegacy {
		t.Fatalf("bob's credential: %v", err)
	}
	if jobs, queued := jobsOf(t, b, "bob@company"); jobs != 1 || queued != 1 {
		t.Fatalf("%d jobs and %d mailbox.queued for bob; want one of each", jobs, queued)
	}
	// alice's password is the operator's; a stranger has no mailbox.
	h.HandOff(ctx, "alice@example.com", "alice pw")
	h.HandOff(ctx, "carol@example.com", "carol pw")
	for _, mb := range []string{"alice@company", "carol@example.com"} {
		if has, err := sourcecred.Has(ctx, h.store.KV, mb); err != nil || has {
			t.Errorf("%s has a credential: %v %v", mb, has, err)
		}
	}
	if jobs, _ := jobsOf(t, b, "alice@company"); jobs != 0 {
		t.Errorf("alice was queued")
	}
	_, raw := authtest.Events(t, b.JS)
	authtest.AssertAbsent(t, "the log", logs.String(), bobLegacy, "alice pw", "carol pw")
	authtest.AssertAbsent(t, "the events", raw, bobLegacy)
	if !strings.Contains(logs.String(), "migration queued") {
		t.Errorf("the hand-off was not logged:\n%s", logs.String())
	}
}

func TestAHandOffWhosePassCannotBeQueuedLeavesNoCredential(t *testing.T) {
	h, b, logs := handOffFixture(t)
	ctx := authtest.Context(t, time.Minute)
	if err := b.JS.DeleteStream(ctx, broker.StreamJobs); err != nil {
		t.Fatal(err)
	}
	h.HandOff(ctx, "bob@example.com", bobLegacy)
	if has, err := sourcecred.Has(ctx, h.store.KV, "bob@company"); err != nil || has {
		t.Fatalf("a credential without its pass is left: %v %v", has, err)
	}
	if !strings.Contains(logs.String(), "migration not queued") {
		t.Errorf("the failure was not logged:\n%s", logs.String())
	}
	authtest.AssertAbsent(t, "the log", logs.String(), bobLegacy)
	// The next sign-in tries again, once the stream is back.
	if err := b.DeclareAll(ctx); err != nil {
		t.Fatal(err)
	}
	h.HandOff(ctx, "bob@example.com", bobLegacy)
	if jobs, _ := jobsOf(t, b, "bob@company"); jobs != 1 {
		t.Fatalf("%d jobs for bob after signing in again; want 1", jobs)
	}
}

// legacyRecorder is a legacy server that records whom it was asked about.
type legacyRecorder struct{ users []string }

func (l *legacyRecorder) Verify(_ context.Context, user, _, _ string) (bool, error) {
	l.users = append(l.users, user)
	return true, nil
}

func TestTheLegacyServerIsAskedWithTheMailboxesSourceLogin(t *testing.T) {
	h, _, _ := handOffFixture(t)
	rec := &legacyRecorder{}
	v := sourceLogins{LegacyVerifier: rec, mailboxes: h.mailboxes}
	ctx := authtest.Context(t, 10*time.Second)
	for _, email := range []string{"bob@example.com", "alice@example.com", "carol@example.com"} {
		if ok, err := v.Verify(ctx, email, "pw", "192.0.2.1"); err != nil || !ok {
			t.Fatalf("%s: %v %v", email, ok, err)
		}
	}
	if want := []string{"bob@company", "alice@company", "carol@example.com"}; !slices.Equal(rec.users, want) {
		t.Fatalf("asked about %q; want %q (a stranger by address)", rec.users, want)
	}
}

func TestTheAuthServiceRefusesAKeyOthersMayReadOrNoMailboxesFile(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "source-credential.key")
	if err := os.WriteFile(key, []byte(sourcecred.NewKeyText()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	section := "auth: {provider: dovecot, dovecot: {passwd_file: " + filepath.Join(dir, "passwd") + "}, source_credentials: {key_file: " + key + "}}\n"
	if _, err := loadAuth(t, section, nil); err == nil || !strings.Contains(err.Error(), "needs mailboxes.file") {
		t.Errorf("without mailboxes.file: %v, want it refused", err)
	}
	cfg := authtest.Config(t, "mailboxes: {file: "+filepath.Join(dir, "mailboxes.csv")+"}\n"+section)
	err := (&Service{Config: cfg}).Run(authtest.Context(t, 10*time.Second))
	var ce *command.ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "mode 0644") {
		t.Fatalf("a key others may read: %v, want a configuration error naming its mode", err)
	}
}

func TestASignInWhileTheMailboxsPassWaitsQueuesNoOtherPass(t *testing.T) {
	h, b, logs := handOffFixture(t)
	ctx := authtest.Context(t, time.Minute)
	bob := job.Mailbox{SourceUser: "bob@company", TargetUser: "bob@example.com"}
	if err := job.Publish(ctx, b.JS, &job.Job{Mailbox: bob, Pass: "campaign-1"}); err != nil {
		t.Fatal(err)
	}
	// No extractor has taken it up yet (none ran at all).
	h.HandOff(ctx, "bob@example.com", bobLegacy)
	if jobs, queued := jobsOf(t, b, "bob@company"); jobs != 1 || queued != 0 {
		t.Fatalf("%d jobs, %d queued events: the waiting pass was superseded", jobs, queued)
	}
	if has, err := sourcecred.Has(ctx, h.store.KV, "bob@company"); err != nil || !has {
		t.Fatalf("no credential for the waiting pass: %v %v", has, err)
	}
	if !strings.Contains(logs.String(), "queued pass will use it") {
		t.Errorf("not logged:\n%s", logs.String())
	}
	// Once an extractor took the job up (and failed it for want of the
	// credential), a later hand-off queues a pass of its own.
	cons, err := b.JS.CreateOrUpdateConsumer(ctx, broker.StreamJobs, jetstream.ConsumerConfig{Durable: extractorConsumer, AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: subject.JobPrefix + ".>"})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range msgs.Messages() {
		if err := m.Term(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sourcecred.Forget(ctx, h.store.KV, "bob@company"); err != nil {
		t.Fatal(err)
	}
	h.HandOff(ctx, "bob@example.com", bobLegacy)
	if jobs, queued := jobsOf(t, b, "bob@company"); jobs != 2 || queued != 1 {
		t.Fatalf("%d jobs, %d queued events after the taken-up pass; want 2 and 1", jobs, queued)
	}
}
