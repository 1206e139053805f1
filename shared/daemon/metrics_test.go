package daemon

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/command"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/metrics"
)

func TestAMetricsSectionThatWouldExposeTheEndpointIsRefusedBeforeTheBrokerStarts(t *testing.T) {
	tests := []struct {
		name, section, want string
	}{
		{"without authentication", "metrics: {listen: '127.0.0.1:9464'}", "requires authentication"},
		{"beyond loopback without TLS", "metrics: {listen: '0.0.0.0:9464', user: prom, password_file: pw}", "not a loopback address"},
		{"an unknown key", "metrics: {listen: '127.0.0.1:9464', pasword_file: x}", "field pasword_file not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			data := filepath.Join(dir, "nats")
			path := filepath.Join(dir, "loader.yaml")
			if err := os.WriteFile(path, []byte("nats: {data_dir: nats}\n"+tt.section+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			ran := false
			p := program("loader", nil, func(context.Context, *config.Config, *broker.Broker, zerolog.Logger, *metrics.Metrics) error {
				ran = true
				return nil
			})
			var errOut strings.Builder
			err := p.Run(context.Background(), []string{"-c", path}, io.Discard, &errOut)
			var cerr *command.ConfigError
			if code := command.ExitCode(err); code != 2 || !errors.As(err, &cerr) || !strings.Contains(errOut.String(), tt.want) {
				t.Errorf("exit %d (err %v), stderr %q; want exit 2 saying %q", code, err, errOut.String(), tt.want)
			}
			if ran {
				t.Error("the service ran")
			}
			if _, err := os.Stat(data); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the broker's data directory exists (err %v): the broker was started", err)
			}
		})
	}
}

func TestAServiceGetsTheMetricsOfItsProcess(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "svc.yaml")
	if err := os.WriteFile(filepath.Join(dir, "metrics.pw"), []byte("a-test-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := "nats: {data_dir: nats}\nmetrics: {listen: '127.0.0.1:0', user: prom, password_file: metrics.pw}\nlog: {level: error}\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var got *metrics.Metrics
	var ready error
	err = Run(context.Background(), "test", cfg, nil, func(ctx context.Context, _ *config.Config, _ *broker.Broker, _ zerolog.Logger, m *metrics.Metrics) error {
		got = m
		ready = m.Ready(ctx)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got == nil || got.Registry == nil {
		t.Fatal("the service got no metrics")
	}
	if ready != nil {
		t.Errorf("not ready with the broker connected: %v", ready)
	}
}
