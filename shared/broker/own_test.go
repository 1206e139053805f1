package broker

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/testenv/syncbuf"
)

// The resources of the two services, as they declare them.
var (
	extractorNeeds = Needs{
		Writes: []string{StreamMail, StoreBodies, BucketCheckpoints, BucketProgress, StreamEvents},
		Reads:  []string{StreamJobs},
	}
	loaderNeeds = Needs{
		Writes: []string{BucketLedger, BucketProgress, StreamDead, StreamJobs, StreamEvents},
		Reads:  []string{StreamMail, StoreBodies},
	}
)

// connect starts an embedded server on a fresh directory, declaring
// nothing.
func connect(t *testing.T, yaml string) *Broker {
	t.Helper()
	dir := t.TempDir()
	cfg := natsConfig(t, "nats: {data_dir: '"+dir+"'}\n"+yaml)
	b, err := Connect(testContext(t), cfg, "test", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// as is another process on b's server with its own file's nats section.
func as(t *testing.T, b *Broker, yaml string) *Broker {
	t.Helper()
	return &Broker{Conn: b.Conn, JS: b.JS, cfg: natsConfig(t, yaml)}
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestAOneShotConsumerBeforeItsOwnerFailsNamingTheOwner(t *testing.T) {
	b := connect(t, "")
	err := b.Use(testContext(t), loaderNeeds)
	var missing *MissingError
	if !errors.As(err, &missing) || missing.Name != StreamMail {
		t.Fatalf("err = %v, want the mail stream missing", err)
	}
	want := "stream MF_MAIL does not exist: the extractor creates it; start it first or run migrate"
	if err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
	// What the loader writes it declared before finding what it lacks.
	if b.Ledger == nil {
		t.Error("the ledger was not declared")
	}
}

func TestADaemonWaitsForItsOwnerSayingOnceWhatItWaitsFor(t *testing.T) {
	b := connect(t, "")
	var logs syncbuf.Buffer
	log := zerolog.New(&logs)
	done := make(chan error, 1)
	go func() { done <- b.Await(testContext(t), log, loaderNeeds) }()
	time.Sleep(time.Second)
	select {
	case err := <-done:
		t.Fatalf("Await returned %v before the extractor declared the mail stream", err)
	default:
	}
	if err := as(t, b, "").Use(testContext(t), extractorNeeds); err != nil {
		t.Fatalf("the extractor: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Await = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Await still waiting after the extractor declared the mail stream")
	}
	if n := strings.Count(logs.String(), "waiting for stream MF_MAIL"); n != 1 {
		t.Errorf("said %d times that it waits for MF_MAIL, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), `"level":"info"`) || !strings.Contains(logs.String(), "the extractor creates it") {
		t.Errorf("the wait is not said at info with its owner:\n%s", logs.String())
	}
	if b.Bodies == nil || b.Ledger == nil || b.Progress == nil {
		t.Error("handles not bound")
	}
}

func TestADaemonWaitingForItsOwnerStopsWithItsContext(t *testing.T) {
	b := connect(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err := b.Await(ctx, zerolog.Nop(), loaderNeeds)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "MF_MAIL") {
		t.Errorf("err = %v, want the context's end while waiting for MF_MAIL", err)
	}
}

func TestADriftingNonOwnerConfigLeavesTheMailStreamAlone(t *testing.T) {
	b := connect(t, "")
	ctx := testContext(t)
	owner := as(t, b, "nats: {mail_max_age: 720h, mail_max_bytes: 1000000}")
	if err := owner.Use(ctx, Needs{Writes: extractorNeeds.Writes}); err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	drifted := as(t, b, "nats: {mail_max_age: 1h, mail_max_bytes: 5000}")
	if err := drifted.Await(ctx, zerolog.New(&logs), loaderNeeds); err != nil {
		t.Fatal(err)
	}
	st, err := b.JS.Stream(ctx, StreamMail)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxAge != 720*time.Hour || info.Config.MaxBytes != 1000000 {
		t.Errorf("MF_MAIL max age %v, max bytes %d: the loader's file changed the extractor's stream", info.Config.MaxAge, info.Config.MaxBytes)
	}
	if !strings.Contains(logs.String(), `"level":"warn"`) || !strings.Contains(logs.String(), "mail_max_age") {
		t.Errorf("the ignored settings are not warned about:\n%s", logs.String())
	}
	// A daemon whose file leaves them out is not warned.
	var quiet syncbuf.Buffer
	if err := as(t, b, "").Await(ctx, zerolog.New(&quiet), loaderNeeds); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(quiet.String(), "warn") {
		t.Errorf("warned without cause:\n%s", quiet.String())
	}
}

func TestDeclareAllMakesEveryResource(t *testing.T) {
	b := connect(t, "")
	if err := b.DeclareAll(testContext(t)); err != nil {
		t.Fatal(err)
	}
	fresh := as(t, b, "")
	var names []string
	for _, r := range resources {
		names = append(names, r.name)
	}
	if err := fresh.Use(testContext(t), Needs{Reads: names}); err != nil {
		t.Fatalf("after DeclareAll: %v", err)
	}
	if fresh.Checkpoints == nil || fresh.Ledger == nil || fresh.Progress == nil || fresh.Bodies == nil {
		t.Error("handles not bound")
	}
}
