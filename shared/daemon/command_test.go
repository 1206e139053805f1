package daemon

import (
	"bytes"
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

func TestAServiceBinaryFollowsTheCommandConventions(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	tests := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"-h"}, 0, "usage: mailferry-loader [-c FILE]\n", ""},
		{[]string{"-c", missing}, 2, "", "mailferry-loader: read config: open " + missing},
		{[]string{"-json"}, 2, "", "mailferry-loader: flag provided but not defined: -json\nusage: mailferry-loader [-c FILE]\n"},
		{[]string{"loader"}, 2, "", `mailferry-loader: unexpected argument "loader"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			ran := false
			p := program("loader", nil, func(context.Context, *config.Config, *broker.Broker, zerolog.Logger, *metrics.Metrics) error {
				ran = true
				return nil
			})
			var out, errOut bytes.Buffer
			err := p.Run(context.Background(), tt.args, &out, &errOut)
			if code := command.ExitCode(err); code != tt.code || ran {
				t.Errorf("exit %d (err %v), ran %v; want exit %d, not run", code, err, ran, tt.code)
			}
			if !strings.HasPrefix(out.String(), tt.stdout) || !strings.HasPrefix(errOut.String(), tt.stderr) {
				t.Errorf("stdout %q, stderr %q; want them to begin with %q and %q", out.String(), errOut.String(), tt.stdout, tt.stderr)
			}
		})
	}
}

func TestAServiceCommandTakesOnlyTheConfigurationFlag(t *testing.T) {
	var out bytes.Buffer
	p := &command.Program{Name: "mailferry", Commands: []*command.Command{Command("extractor", "run the extractor service", nil, nil)}}
	if err := p.Run(context.Background(), []string{"extractor", "-h"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if flags := strings.Count(out.String(), "\n  -"); flags != 1 || !strings.Contains(out.String(), "\n  -c string") {
		t.Errorf("help lists %d flags, want -c alone:\n%s", flags, out.String())
	}
}

func TestABadSectionOfItsOwnStopsAServiceBeforeItStartsTheBroker(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "nats")
	path := filepath.Join(dir, "loader.yaml")
	// No nats.url: the service would start an embedded server on data.
	if err := os.WriteFile(path, []byte("nats: {data_dir: nats}\nloader: {batch_mesages: 4}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var checked *config.Config
	check := func(cfg *config.Config) error {
		checked = cfg
		return errors.New("loader: line 2: field batch_mesages not found")
	}
	ran := false
	p := program("loader", check, func(context.Context, *config.Config, *broker.Broker, zerolog.Logger, *metrics.Metrics) error {
		ran = true
		return nil
	})
	var errOut bytes.Buffer
	err := p.Run(context.Background(), []string{"-c", path}, io.Discard, &errOut)
	var cerr *command.ConfigError
	if code := command.ExitCode(err); code != 2 || !errors.As(err, &cerr) {
		t.Errorf("exit %d (err %v), want 2 and a ConfigError", code, err)
	}
	if checked == nil || checked.NATS.DataDir != data {
		t.Errorf("check got %+v, want the loaded configuration", checked)
	}
	if want := "mailferry-loader: loader: line 2: field batch_mesages not found\n"; errOut.String() != want {
		t.Errorf("stderr %q, want %q", errOut.String(), want)
	}
	if ran {
		t.Error("the service ran")
	}
	if _, err := os.Stat(data); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the broker's data directory %s exists (err %v): the broker was started", data, err)
	}
}
