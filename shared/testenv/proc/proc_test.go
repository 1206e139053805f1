package proc

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestReadyWaitsUntilTheCheckPasses(t *testing.T) {
	dir := t.TempDir()
	flag := filepath.Join(dir, "ready")
	p, err := Start("sh", []string{"-c", "sleep 0.3; touch " + flag + "; exec sleep 60"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Ready(ctx, 20*time.Millisecond, func(context.Context) error {
		_, err := os.Stat(flag)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

func TestReadyReportsAnExitWithOutputAndLogTail(t *testing.T) {
	log := filepath.Join(t.TempDir(), "d.log")
	if err := os.WriteFile(log, []byte("from an earlier run\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Start("sh", []string{"-c", "echo bad setting >&2; echo log line >> " + log + "; exit 3"}, Options{LogPath: log})
	if err != nil {
		t.Fatal(err)
	}
	err = p.Ready(context.Background(), 10*time.Millisecond, func(context.Context) error { return errors.New("not yet") })
	if !errors.Is(err, ErrExited) {
		t.Fatalf("Ready: %v, want ErrExited", err)
	}
	for _, want := range []string{"bad setting", "log line"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "earlier run") {
		t.Errorf("error shows log lines from before Start: %v", err)
	}
}

func TestReadyIsBoundedAndStopsOnPermanentErrors(t *testing.T) {
	p, err := Start("sleep", []string{"60"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	errNo := errors.New("no answer")
	if err := p.Ready(ctx, 10*time.Millisecond, func(context.Context) error { return errNo }); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, errNo) {
		t.Errorf("Ready past its deadline: %v, want the deadline and the last check's error", err)
	}
	errTaken := errors.New("port taken")
	calls := 0
	start := time.Now()
	err = p.Ready(context.Background(), 10*time.Millisecond, func(context.Context) error {
		calls++
		return Permanent(errTaken)
	})
	if !errors.Is(err, errTaken) || calls != 1 || time.Since(start) > time.Second {
		t.Errorf("Ready with a permanent error: %v after %d calls", err, calls)
	}
}

func TestStopKillsTheWholeGroupAndIsIdempotent(t *testing.T) {
	// The shell ignores SIGTERM, so Stop must escalate; its child sleeps
	// in the same group.
	p, err := Start("sh", []string{"-c", "trap '' TERM; sleep 60 & wait"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	pgid := p.Pid()
	if len(GroupMembers(pgid)) < 2 {
		t.Fatalf("group %d has %v, want the shell and its child", pgid, GroupMembers(pgid))
	}
	for range 2 {
		if err := p.Stop(300 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if live := GroupMembers(pgid); len(live) > 0 {
		t.Errorf("processes %v alive after Stop", live)
	}
	var ee *exec.ExitError
	if !errors.As(p.ExitErr(), &ee) {
		t.Fatalf("exit of a killed process: %v", p.ExitErr())
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Errorf("ended by %v, want SIGKILL", ee)
	}
}

type fakeTB struct {
	testing.TB
	skipped string
}

func (f *fakeTB) Skip(args ...any) { f.skipped = args[0].(string) }

func TestSweepRemovesOnlyDirsOfDeadOwners(t *testing.T) {
	root := t.TempDir()
	p, err := Start("true", nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	<-p.Exited()
	owners := map[string]int{"dead": p.Pid(), "alive": os.Getpid()}
	for name, pid := range owners {
		dir := filepath.Join(root, "pfx-"+name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, OwnerFile), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var killed []string
	Sweep(t, root, "pfx-", func(dir string) { killed = append(killed, filepath.Base(dir)) })
	if _, err := os.Stat(filepath.Join(root, "pfx-dead")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dir of a dead owner survived (stat: %v)", err)
	}
	if _, err := os.Stat(filepath.Join(root, "pfx-alive")); err != nil {
		t.Errorf("dir of a live owner removed: %v", err)
	}
	if len(killed) != 1 || killed[0] != "pfx-dead" {
		t.Errorf("killStale called for %v, want pfx-dead only", killed)
	}
}

func TestRequireSkipsWithTheProblemOutsideCI(t *testing.T) {
	t.Setenv("CI", "")
	f := &fakeTB{TB: t}
	Require(f, "")
	if f.skipped != "" {
		t.Fatal("skipped without a problem")
	}
	Require(f, "no daemon here")
	if f.skipped != "no daemon here" {
		t.Errorf("skipped with %q", f.skipped)
	}
}
