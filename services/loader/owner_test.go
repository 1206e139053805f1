package loader

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
)

func TestTheLoaderStartedBeforeTheExtractorWaitsForTheMailStream(t *testing.T) {
	dir := t.TempDir()
	// The file still sets the extractor's limits, as loader files did.
	cfg, err := config.Parse([]byte("nats: {data_dir: '"+filepath.Join(dir, "nats")+"', mail_max_age: 1h}\n"), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := broker.Connect(ctx, cfg.NATS, "loader-test", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	var logs bytes.Buffer
	runCtx, stop := context.WithTimeout(ctx, time.Second)
	defer stop()
	err = (&Service{Config: cfg, Settings: settingsT(t, cfg), Broker: b, Log: zerolog.New(&logs)}).Run(runCtx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run = %v, want it waiting until its context ended", err)
	}
	for _, want := range []string{"waiting for stream MF_MAIL", "the extractor creates it", "mail_max_age"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, logs.String())
		}
	}
	if _, err := b.JS.Stream(ctx, broker.StreamMail); err == nil {
		t.Error("the loader created the extractor's mail stream")
	}

	// A one-shot command with the loader's needs fails at once instead.
	err = b.Use(ctx, Needs)
	if err == nil || err.Error() != "stream MF_MAIL does not exist: the extractor creates it; start it first or run migrate" {
		t.Errorf("Use = %v", err)
	}
}
