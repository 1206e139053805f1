package command_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/shared/command"
)

// ran records what the test program's commands were run with.
type ran struct {
	name string
	json bool
	n    int
}

// testProgram has a plain command, a group of two and one whose run fails
// as asked.
func testProgram(got *ran, fail error) *command.Program {
	cmd := func(name string, flags func(fs *flag.FlagSet)) *command.Command {
		return &command.Command{
			Name:      name,
			UsageLine: "[-json]",
			Short:     "the " + name + " command",
			Setup: func(fs *flag.FlagSet) command.Run {
				asJSON := fs.Bool("json", false, "print JSON")
				n := fs.Int("n", 0, "a number")
				if flags != nil {
					flags(fs)
				}
				return func(ctx context.Context, stdout, stderr io.Writer) error {
					*got = ran{name: name, json: *asJSON, n: *n}
					return fail
				}
			},
		}
	}
	return &command.Program{
		Name: "prog",
		Doc:  "prog is a test.",
		Commands: []*command.Command{
			cmd("run", nil),
			cmd("dns plan", func(fs *flag.FlagSet) { fs.Bool("dry-run", false, "change nothing") }),
			cmd("dns apply", nil),
		},
	}
}

func TestRunPicksTheCommandWithTheLongestNameAndParsesOnlyItsFlags(t *testing.T) {
	tests := []struct {
		args []string
		want ran
	}{
		{[]string{"run"}, ran{name: "run"}},
		{[]string{"run", "-json", "-n", "3"}, ran{name: "run", json: true, n: 3}},
		{[]string{"dns", "plan", "-dry-run"}, ran{name: "dns plan"}},
		{[]string{"dns", "apply", "-json"}, ran{name: "dns apply", json: true}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var got ran
			var out, errOut bytes.Buffer
			if err := testProgram(&got, nil).Run(context.Background(), tt.args, &out, &errOut); err != nil {
				t.Fatalf("err = %v\n%s", err, errOut.String())
			}
			if got != tt.want {
				t.Errorf("ran %+v, want %+v", got, tt.want)
			}
			if errOut.Len() > 0 {
				t.Errorf("stderr of a run that went well: %q", errOut.String())
			}
		})
	}
}

func TestFlagValuesDoNotOutliveTheirCommandLine(t *testing.T) {
	var got ran
	p := testProgram(&got, nil)
	for _, args := range [][]string{{"run", "-json", "-n", "3"}, {"run"}} {
		if err := p.Run(context.Background(), args, io.Discard, io.Discard); err != nil {
			t.Fatal(err)
		}
	}
	if got != (ran{name: "run"}) {
		t.Errorf("second run saw %+v: values of the first run's flags", got)
	}
}

func TestCommandLineMistakesAreUsageErrorsPrintedOnceWithTheUsageLine(t *testing.T) {
	tests := []struct {
		args      []string
		says      string
		usageLine string
	}{
		{nil, "prog: no command given\n", "Run 'prog help' for the commands."},
		{[]string{"fly"}, `prog: unknown command "fly"` + "\n", "Run 'prog help' for the commands."},
		{[]string{"dns"}, "prog: dns: want one of plan, apply\n", "Run 'prog help dns' for the commands."},
		{[]string{"dns", "fly"}, `prog: dns: unknown command "fly" (want one of plan, apply)` + "\n", "Run 'prog help dns' for the commands."},
		{[]string{"run", "-dry-run"}, "prog: run: flag provided but not defined: -dry-run\n", "usage: prog run [-json]\nRun 'prog help run' for details."},
		{[]string{"dns", "apply", "-dry-run"}, "prog: dns apply: flag provided but not defined: -dry-run\n", "usage: prog dns apply [-json]"},
		{[]string{"run", "-n", "x"}, `prog: run: invalid value "x" for flag -n: parse error` + "\n", "usage: prog run [-json]"},
		{[]string{"run", "extra"}, `prog: run: unexpected argument "extra"` + "\n", "usage: prog run [-json]"},
		{[]string{"help", "fly"}, `prog: unknown help topic "fly"` + "\n", "Run 'prog help' for the commands."},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			got := ran{name: "none"}
			var out, errOut bytes.Buffer
			err := testProgram(&got, nil).Run(context.Background(), tt.args, &out, &errOut)
			if code := command.ExitCode(err); code != command.ExitUsage || !errors.Is(err, command.ErrUsage) {
				t.Errorf("err = %v (exit %d), want a usage error (exit 2)", err, code)
			}
			if got.name != "none" {
				t.Errorf("%s ran", got.name)
			}
			if !strings.HasPrefix(errOut.String(), tt.says) || strings.Count(errOut.String(), "prog: ") != 1 {
				t.Errorf("stderr %q, want it to begin with %q, once", errOut.String(), tt.says)
			}
			if !strings.Contains(errOut.String(), tt.usageLine) {
				t.Errorf("stderr %q lacks %q", errOut.String(), tt.usageLine)
			}
		})
	}
}

func TestErrorsOfARunMapToOneExitCodeAndArePrintedOnce(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		code   int
		stderr string
	}{
		{"ok", nil, 0, ""},
		{"runtime failure", errors.New("broker down"), 1, "prog: run: broker down\n"},
		{"failures found", fmt.Errorf("3 differ: %w", command.ErrFailures), 1, ""},
		{"configuration", &command.ConfigError{Err: errors.New("config x.yaml: bad tls")}, 2, "prog: run: config x.yaml: bad tls\n"},
		{"flag combination", command.Usagef("pass -a or -b"), 2, "prog: run: pass -a or -b\nusage: prog run [-json]\nRun 'prog help run' for details.\n"},
		{"wrapped configuration", fmt.Errorf("open: %w", &command.ConfigError{Err: errors.New("no domains")}), 2, "prog: run: open: no domains\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got ran
			var errOut bytes.Buffer
			err := testProgram(&got, tt.err).Run(context.Background(), []string{"run"}, io.Discard, &errOut)
			if code := command.ExitCode(err); code != tt.code {
				t.Errorf("exit %d, want %d (err %v)", code, tt.code, err)
			}
			if tt.err != nil && !errors.Is(err, tt.err) {
				t.Errorf("err = %v does not wrap %v", err, tt.err)
			}
			if errOut.String() != tt.stderr {
				t.Errorf("stderr %q, want %q", errOut.String(), tt.stderr)
			}
		})
	}
}

func TestHelpIsGeneratedFromTheTable(t *testing.T) {
	tests := []struct {
		args []string
		want []string
		not  []string
	}{
		{[]string{"help"}, []string{"prog is a test.", "usage: prog COMMAND [flags]", "  run        the run command\n", "  dns plan   the dns plan command\n", "  dns apply  the dns apply command\n", "Exit status: 0 ok; 1"}, nil},
		{[]string{"help", "dns"}, []string{"usage: prog dns COMMAND [flags]", "dns plan", "dns apply"}, []string{"the run command", "Exit status"}},
		{[]string{"help", "dns", "plan"}, []string{"usage: prog dns plan [-json]\n", "the dns plan command", "-dry-run", "-json", "-n int"}, []string{"dns apply"}},
		{[]string{"dns", "plan", "-h"}, []string{"usage: prog dns plan [-json]\n", "-dry-run"}, nil},
		{[]string{"run", "-h"}, []string{"usage: prog run [-json]\n", "-json", "-n int"}, []string{"-dry-run"}},
		{[]string{"run", "--help"}, []string{"usage: prog run [-json]\n"}, nil},
		{[]string{"dns", "-h"}, []string{"usage: prog dns COMMAND [flags]", "dns plan", "dns apply"}, []string{"the run command"}},
		{[]string{"dns", "--help"}, []string{"usage: prog dns COMMAND [flags]"}, nil},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			got := ran{name: "none"}
			var out, errOut bytes.Buffer
			if err := testProgram(&got, nil).Run(context.Background(), tt.args, &out, &errOut); err != nil {
				t.Fatalf("err = %v, want help and exit 0", err)
			}
			if got.name != "none" || errOut.Len() > 0 {
				t.Errorf("help ran %q or wrote %q to stderr", got.name, errOut.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("help lacks %q:\n%s", w, out.String())
				}
			}
			for _, n := range tt.not {
				if strings.Contains(out.String(), n) {
					t.Errorf("help has %q:\n%s", n, out.String())
				}
			}
		})
	}
}

func TestAProgramOfOneCommandTakesItsFlagsDirectly(t *testing.T) {
	var got ran
	p := testProgram(&got, nil)
	p.Commands = p.Commands[:1]
	p.Commands[0] = &command.Command{UsageLine: "[-json]", Short: "serve", Setup: p.Commands[0].Setup}
	if err := p.Run(context.Background(), []string{"-json"}, io.Discard, io.Discard); err != nil || !got.json {
		t.Errorf("-json: err %v, ran %+v", err, got)
	}
	var out, errOut bytes.Buffer
	err := p.Run(context.Background(), []string{"help"}, &out, &errOut)
	if command.ExitCode(err) != command.ExitUsage || !strings.Contains(errOut.String(), "usage: prog [-json]\nRun 'prog -h' for details.") {
		t.Errorf("help as an argument: err %v, stderr %q", err, errOut.String())
	}
	out.Reset()
	if err := p.Run(context.Background(), []string{"-h"}, &out, io.Discard); err != nil || !strings.HasPrefix(out.String(), "usage: prog [-json]\n\nserve\n") {
		t.Errorf("-h: err %v, stdout %q", err, out.String())
	}
}
