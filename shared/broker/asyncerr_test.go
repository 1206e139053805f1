package broker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/testenv/syncbuf"
)

// A subscription that cannot keep up drops messages; nats.go would print
// that to stderr. It is a structured line in the service's log instead.
func TestAsynchronousErrorsAreLoggedAsStructuredLines(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var logs syncbuf.Buffer
	b, err := Connect(ctx, natsConfig(t, "nats: {data_dir: nats}\n"), "test", zerolog.New(&logs).Level(zerolog.DebugLevel))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	release := make(chan struct{})
	sub, err := b.Conn.Subscribe("test.slow", func(*nats.Msg) { <-release })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	defer close(release)
	if err := sub.SetPendingLimits(1, 1<<20); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if err := b.Conn.Publish("test.slow", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Conn.Flush(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), `"subject":"test.slow"`); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no structured line for the slow consumer; log:\n%s", logs.String())
		}
	}
	if !strings.Contains(logs.String(), `"message":"nats asynchronous error"`) || !strings.Contains(logs.String(), `"level":"debug"`) {
		t.Errorf("log:\n%s", logs.String())
	}
}
