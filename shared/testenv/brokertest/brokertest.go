// Package brokertest starts an embedded broker for tests, with the streams
// and buckets a test names declared.
package brokertest

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/testenv/configtest"
)

// Embedded connects to an embedded server in a new temporary directory,
// its nats section "data_dir: nats" plus natsYAML (", key: value" ...),
// and declares what needs names; the broker closes with the test.
func Embedded(t *testing.T, natsYAML string, needs broker.Needs) *broker.Broker {
	t.Helper()
	cfg := configtest.Parse(t, "nats: {data_dir: nats"+natsYAML+"}\n")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := broker.Connect(ctx, cfg.NATS, t.Name(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	if err := b.Use(ctx, needs); err != nil {
		t.Fatal(err)
	}
	return b
}
