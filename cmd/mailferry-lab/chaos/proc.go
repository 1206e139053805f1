package chaos

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// proc is one restartable child process: a mailferry service or a
// migrate run. Each start appends to <dir>/<name>.log (stdout and stderr)
// under a line naming the start; stdout, when set, receives stdout alone
// (truncated at each start).
type proc struct {
	name   string
	bin    string
	args   []string
	dir    string
	stdout string

	cmd     *exec.Cmd
	done    chan struct{}
	started time.Time
	ended   time.Time
	runs    int
	// exit is the exit code of the last run that ended (-1: killed).
	exit int
}

func (p *proc) logPath() string { return filepath.Join(p.dir, p.name+".log") }

func (p *proc) start() error {
	p.runs++
	logf, err := os.OpenFile(p.logPath(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== start %d at %s\n", p.runs, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	var outf *os.File
	if p.stdout != "" {
		if outf, err = os.Create(p.stdout); err != nil {
			logf.Close()
			return err
		}
		cmd.Stdout = outf
	}
	// Every goroutine in a SIGQUIT dump, not only the running one.
	cmd.Env = append(os.Environ(), "GOTRACEBACK=all")
	// Its own process group, and dead with us if we die.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		if outf != nil {
			outf.Close()
		}
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.cmd, p.done, p.started = cmd, make(chan struct{}), time.Now()
	go func(done chan struct{}) {
		_ = cmd.Wait()
		p.exit, p.ended = cmd.ProcessState.ExitCode(), time.Now()
		fmt.Fprintf(logf, "=== end %d at %s: %s\n", p.runs, time.Now().Format(time.RFC3339Nano), cmd.ProcessState)
		logf.Close()
		if outf != nil {
			outf.Close()
		}
		close(done)
	}(p.done)
	return nil
}

// running reports whether the process was started and has not ended.
func (p *proc) running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// reap reports whether the process ended by itself since its start, and
// forgets it when it did.
func (p *proc) reap() (ended bool) {
	if p.cmd == nil || p.running() {
		return false
	}
	p.cmd = nil
	return true
}

// age is how long the current run has been going, or the last one went.
func (p *proc) age() time.Duration {
	select {
	case <-p.done:
		return p.ended.Sub(p.started)
	default:
		return time.Since(p.started)
	}
}

// kill9 kills the whole process group without warning, as a crash (or an
// operator's kill -9 -PGID) would.
func (p *proc) kill9() {
	if p.cmd == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	p.cmd = nil
}

// quit sends SIGQUIT, which makes a Go program print every goroutine's
// stack to stderr and exit, and kills the group when that takes too long.
func (p *proc) quit() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
	}
	p.kill9()
}

// stop asks the process to shut down and kills it when it takes too long.
func (p *proc) stop(ctx context.Context) {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	case <-ctx.Done():
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	p.cmd = nil
}

// wait waits up to d for the process to end by itself.
func (p *proc) wait(ctx context.Context, d time.Duration) bool {
	if p.cmd == nil {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// logSince returns what the log file holds from offset on.
func logSince(path string, offset int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return "", err
	}
	b, err := io.ReadAll(f)
	return string(b), err
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}
