package event_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/event"
)

func openBroker(t *testing.T, ctx context.Context) *broker.Broker {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf("nats: {data_dir: %s}\n", t.TempDir())), ".", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.Open(ctx, cfg.NATS, "event-test", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

func TestPublishingTheSameFactTwiceStoresItOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b := openBroker(t, ctx)
	ev := event.Publisher{JS: b.JS, Service: "test"}
	for range 2 {
		if err := ev.Publish(ctx, event.Queued("a@old.test", "p1")); err != nil {
			t.Fatal(err)
		}
	}
	st, err := b.JS.Stream(ctx, broker.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("%d events stored, want 1", info.State.Msgs)
	}
	raw, err := st.GetLastMsgForSubject(ctx, event.Queued("a@old.test", "p1").Subject())
	if err != nil {
		t.Fatal(err)
	}
	if raw.Header.Get(nats.MsgIdHdr) != "queued.a@old.test.p1" {
		t.Errorf("Nats-Msg-Id = %q", raw.Header.Get(nats.MsgIdHdr))
	}
}

func TestAPublishOnAClosedConnectionReturnsItsError(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b := openBroker(t, ctx)
	b.Conn.Close()
	start := time.Now()
	err := event.Publisher{JS: b.JS, Service: "test"}.Publish(ctx, event.Failed("a@old.test", 1, event.FailedData{Pass: "p1", Phase: event.PhaseLoading}))
	if !errors.Is(err, nats.ErrConnectionClosed) {
		t.Fatalf("err = %v, want the closed connection", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %s: a closed connection is not worth retrying", d)
	}
}

func TestAPublishNobodyStoresFailsAfterABoundedRetry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b := openBroker(t, ctx)
	if err := b.JS.DeleteStream(ctx, broker.StreamEvents); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := event.Publisher{JS: b.JS, Service: "test"}.Publish(ctx, event.Queued("a@old.test", "p1"))
	if err == nil {
		t.Fatal("published where no stream listens")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("gave up after %s", d)
	}
}
