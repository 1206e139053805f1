package daemon

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/command"
	"github.com/mailferry/mailferry/shared/config"
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
			p := program("loader", func(context.Context, *config.Config, *broker.Broker, zerolog.Logger) error {
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
	p := &command.Program{Name: "mailferry", Commands: []*command.Command{Command("extractor", "run the extractor service", nil)}}
	if err := p.Run(context.Background(), []string{"extractor", "-h"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if flags := strings.Count(out.String(), "\n  -"); flags != 1 || !strings.Contains(out.String(), "\n  -c string") {
		t.Errorf("help lists %d flags, want -c alone:\n%s", flags, out.String())
	}
}
