// Package proc runs the daemons behind the test peers (dovecot for
// dovecottest, named for bindtest): each in its own process group, so one
// signal reaches everything it forked; dying with the test binary when
// that is killed; waited for until it is ready, within a bound, with its
// output and the tail of its log in the error when it is not; stopped with
// SIGTERM, then SIGKILL after a grace period. Its instance directories
// record the test process that made them, so that a later run removes
// what a killed one left behind.
package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mailferry/mailferry/shared/testenv/syncbuf"
)

// DefaultReadyTimeout bounds Ready when its context has no deadline.
const DefaultReadyTimeout = 60 * time.Second

// ErrExited is wrapped by Ready's error when the daemon ended first.
var ErrExited = errors.New("exited during startup")

// Options says how to run a daemon.
type Options struct {
	// Dir is the working directory (the caller's when empty).
	Dir string
	// Env is added to the caller's environment.
	Env []string
	// LogPath is the daemon's own log file; the part it writes after
	// Start goes with failures.
	LogPath string
	// DeathSignal is what the kernel sends the daemon when the test
	// binary dies without stopping it (SIGKILL when zero).
	DeathSignal syscall.Signal
}

// Process is a running daemon.
type Process struct {
	// Name is the program, for messages.
	Name string

	opts      Options
	cmd       *exec.Cmd
	out       syncbuf.Buffer
	logOffset int64
	exited    chan struct{}
	waitErr   error

	stopOnce sync.Once
	stopErr  error
}

// Start runs name with args in a process group of its own.
func Start(name string, args []string, opts Options) (*Process, error) {
	p := &Process{Name: name, opts: opts, exited: make(chan struct{})}
	if opts.LogPath != "" {
		p.logOffset = fileSize(opts.LogPath)
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = opts.Dir
	if opts.Env != nil {
		cmd.Env = append(os.Environ(), opts.Env...)
	}
	cmd.Stdout, cmd.Stderr = &p.out, &p.out
	if err := p.spawn(cmd, opts.DeathSignal); err != nil {
		return nil, fmt.Errorf("exec %s: %w", name, err)
	}
	return p, nil
}

// StartCmd starts a command the caller prepared (its output, its
// environment) in a process group of its own, like Start; Output is empty
// unless the caller left cmd's output unset.
func StartCmd(name string, cmd *exec.Cmd, deathSignal syscall.Signal) (*Process, error) {
	p := &Process{Name: name, exited: make(chan struct{})}
	if cmd.Stdout == nil && cmd.Stderr == nil {
		cmd.Stdout, cmd.Stderr = &p.out, &p.out
	}
	if err := p.spawn(cmd, deathSignal); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return p, nil
}

// spawn starts cmd and reaps it when it ends, closing p.exited.
func (p *Process) spawn(cmd *exec.Cmd, sig syscall.Signal) error {
	if sig == 0 {
		sig = syscall.SIGKILL
	}
	// Own process group: Stop reaches the daemon and all its children
	// with one signal to the group. Pdeathsig: if the test binary dies
	// without running cleanups, the kernel signals the daemon.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: sig}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the OS thread that forked the child exits,
		// not the process: keep this goroutine on its own thread until the
		// daemon has been reaped. Returning while locked ends the thread,
		// which is harmless by then.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	if err := <-started; err != nil {
		return err
	}
	p.cmd = cmd
	return nil
}

// Pid is the daemon's pid, also its process group id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited is closed once the daemon has ended and been reaped.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// ExitErr is how the daemon ended; valid once Exited is closed.
func (p *Process) ExitErr() error {
	<-p.exited
	return p.waitErr
}

// Output is what the daemon wrote to stdout and stderr so far.
func (p *Process) Output() string { return p.out.String() }

// LogTail is the last n lines the daemon wrote to its log since Start.
func (p *Process) LogTail(n int) string {
	if p.opts.LogPath == "" {
		return ""
	}
	return Tail(p.opts.LogPath, p.logOffset, n)
}

// permanent marks an error after which Ready stops waiting.
type permanent struct{ err error }

func (e permanent) Error() string { return e.err.Error() }
func (e permanent) Unwrap() error { return e.err }

// Permanent wraps an error of a readiness check that waiting will not
// cure (another process holds the port): Ready returns it at once.
func Permanent(err error) error { return permanent{err} }

// Ready calls ready every poll until it returns nil, the daemon exits,
// ready returns a Permanent error, or ctx ends (DefaultReadyTimeout when
// it has no deadline). Failures carry the daemon's output and log tail;
// the error of the last check stays reachable with errors.Is.
func (p *Process) Ready(ctx context.Context, poll time.Duration, ready func(ctx context.Context) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultReadyTimeout)
		defer cancel()
	}
	for {
		select {
		case <-p.exited:
			return p.failure(fmt.Errorf("%s %w: %v", p.Name, ErrExited, p.waitErr))
		default:
		}
		err := ready(ctx)
		if err == nil {
			return nil
		}
		var perm permanent
		if errors.As(err, &perm) {
			return p.failure(perm.err)
		}
		select {
		case <-ctx.Done():
			return p.failure(fmt.Errorf("%s not ready: %w (last: %w)", p.Name, ctx.Err(), err))
		case <-p.exited:
			return p.failure(fmt.Errorf("%s %w: %v (last: %w)", p.Name, ErrExited, p.waitErr, err))
		case <-time.After(poll):
		}
	}
}

// failure adds the daemon's output and log tail to err.
func (p *Process) failure(err error) error {
	msg := fmt.Sprintf("%s output:\n%s", p.Name, strings.TrimSpace(p.Output()))
	if p.opts.LogPath != "" {
		msg += fmt.Sprintf("\n%s tail:\n%s", filepath.Base(p.opts.LogPath), p.LogTail(30))
	}
	return fmt.Errorf("%w\n%s", err, msg)
}

// Stop sends SIGTERM to the daemon's process group, SIGKILL after grace,
// then kills what is left of the group (children that outlived the
// daemon) and waits, up to grace again, until no process of it is alive.
// It is idempotent: later calls return the first result.
func (p *Process) Stop(grace time.Duration) error {
	p.stopOnce.Do(func() {
		pgid := p.Pid()
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(grace):
			p.Kill()
			<-p.exited
		}
		p.Kill()
		if err := WaitGroupGone(pgid, grace); err != nil {
			p.stopErr = fmt.Errorf("stop %s: %w", p.Name, err)
		}
	})
	return p.stopErr
}

// Kill sends SIGKILL to the daemon's process group.
func (p *Process) Kill() { _ = syscall.Kill(-p.Pid(), syscall.SIGKILL) }

// WaitGroupGone waits until no live process is left in process group
// pgid, killing its members meanwhile. Zombies do not count: they hold
// nothing and are reaped by whoever inherited them.
func WaitGroupGone(pgid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		live := GroupMembers(pgid)
		if len(live) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v of group %d still alive", live, pgid)
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		time.Sleep(20 * time.Millisecond)
	}
}

// GroupMembers lists the live (not zombie) processes of group pgid.
func GroupMembers(pgid int) []int {
	var live []int
	EachInGroup(pgid, func(pid int, f []string) {
		if f[0] != "Z" && f[0] != "X" {
			live = append(live, pid)
		}
	})
	return live
}

// EachInGroup calls fn for every process of group pgid with the fields of
// its /proc/PID/stat after the parenthesised command name (state ppid
// pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime
// stime cutime cstime ...). A process gone while it is read is passed
// over.
func EachInGroup(pgid int, fn func(pid int, fields []string)) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 15 {
			continue
		}
		if g, err := strconv.Atoi(f[2]); err == nil && g == pgid {
			fn(pid, f)
		}
	}
}

// alive reports whether a process pid exists.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// KillStale kills the process group named by the pid in pidFile, but
// only if that process still runs with conf on its command line: pids are
// reused.
func KillStale(pidFile, conf string) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil || !strings.Contains(string(cmdline), conf) {
		return
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}

// Tail returns the last n lines of path after byte offset, or says why
// there are none.
func Tail(path string, offset int64, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if offset > 0 && offset <= int64(len(b)) {
		b = b[offset:]
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return "(empty)"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
