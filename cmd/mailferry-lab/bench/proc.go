package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mailferry/mailferry/shared/testenv/proc"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc/<pid>/stat. It
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// killWait bounds how long a process may take to disappear after SIGKILL.
const killWait = 10 * time.Second

// child is a process the benchmark started and must stop: it runs in its
// own process group (so a terminal's Ctrl-C reaches only the benchmark,
// which then stops it in order) and gets SIGTERM if the benchmark dies.
type child struct {
	name string
	cmd  *exec.Cmd
	p    *proc.Process
	// exited is closed once the process has been reaped.
	exited <-chan struct{}
}

// exitErr is the result of Wait; it waits for the child to exit.
func (c *child) exitErr() error { return c.p.ExitErr() }

// startChild starts cmd as child name.
func startChild(name string, cmd *exec.Cmd) (*child, error) {
	p, err := proc.StartCmd(name, cmd, syscall.SIGTERM)
	if err != nil {
		return nil, err
	}
	return &child{name: name, cmd: cmd, p: p, exited: p.Exited()}, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// done reports whether the child has exited.
func (c *child) done() bool {
	select {
	case <-c.exited:
		return true
	default:
		return false
	}
}

// wait waits until the child exits, or kills its group when ctx ends first.
func (c *child) wait(ctx context.Context) error {
	select {
	case <-c.exited:
		return c.exitErr()
	case <-ctx.Done():
		c.kill()
		return ctx.Err()
	}
}

// stop sends SIGTERM to the child's group, waits up to grace for it to
// exit, then kills the group. It returns the child's exit error.
func (c *child) stop(grace time.Duration) error {
	if !c.done() {
		_ = syscall.Kill(-c.pid(), syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(grace):
			c.kill()
			if !c.done() {
				return fmt.Errorf("%s (pid %d) still running after SIGKILL", c.name, c.pid())
			}
			return fmt.Errorf("%s did not stop within %s of SIGTERM and was killed", c.name, grace)
		}
	}
	// Anything it forked and left behind goes too.
	_ = syscall.Kill(-c.pid(), syscall.SIGKILL)
	return c.exitErr()
}

// stopAll stops children at once (see stop) and returns each one's
// error and how long it took, in the order of children.
func stopAll(children []*child, grace time.Duration) ([]error, []time.Duration) {
	errs := make([]error, len(children))
	took := make([]time.Duration, len(children))
	var wg sync.WaitGroup
	for i, c := range children {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			errs[i] = c.stop(grace)
			took[i] = time.Since(start)
		}()
	}
	wg.Wait()
	return errs, took
}

// kill sends SIGKILL to the child's group and waits a bounded time for the
// child to be reaped.
func (c *child) kill() {
	_ = syscall.Kill(-c.pid(), syscall.SIGKILL)
	select {
	case <-c.exited:
	case <-time.After(killWait):
	}
}

// usage returns the child's resource usage; valid once it has exited.
func (c *child) usage() *syscall.Rusage {
	if !c.done() || c.cmd.ProcessState == nil {
		return nil
	}
	ru, _ := c.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return ru
}

// cpuSeconds is user plus system time of a resource usage.
func cpuSeconds(ru *syscall.Rusage) float64 {
	if ru == nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// selfCPU returns the CPU seconds this process used so far.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return cpuSeconds(&ru)
}

// procStatusKiB reads a memory field such as "VmHWM" (in kB) from
// /proc/<pid>/status; pid 0 means this process.
func procStatusKiB(pid int, field string) (int64, error) {
	p := "/proc/self/status"
	if pid != 0 {
		p = "/proc/" + strconv.Itoa(pid) + "/status"
	}
	f, err := os.Open(p)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", field, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		num := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB"))
		v, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse %s of %s: %w", field, p, err)
		}
		return v, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read %s: %w", p, err)
	}
	return 0, fmt.Errorf("%s has no %s", p, field)
}

// resetPeakRSS sets this process's VmHWM back to its current RSS (Linux
// 4.0 and later), so the peak measured afterwards belongs to what follows.
func resetPeakRSS() error {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		return fmt.Errorf("reset peak RSS: %w", err)
	}
	return nil
}

// groupCPU returns the CPU seconds used so far by the live processes of
// process group pgid and by every descendant they have reaped. For a
// Dovecot master that includes its finished imap processes.
func groupCPU(pgid int) float64 {
	var ticks int64
	proc.EachInGroup(pgid, func(_ int, f []string) {
		for _, k := range f[11:15] { // utime stime cutime cstime
			if v, err := strconv.ParseInt(k, 10, 64); err == nil {
				ticks += v
			}
		}
	})
	return float64(ticks) / clockTicks
}

// masterPID reads the pid of a Dovecot master, which leads its process
// group, from base_dir/master.pid.
func masterPID(baseDir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(baseDir, "master.pid"))
	if err != nil {
		return 0, fmt.Errorf("dovecot master pid: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("dovecot master pid %q: not a pid", strings.TrimSpace(string(b)))
	}
	return pid, nil
}

// tailBuffer keeps the last max bytes written to it: the output of a
// child process, for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}

// fileTail returns the last n lines of the file at path.
func fileTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// dirSize sums the sizes of the regular files below dir.
func dirSize(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return nil
			}
			total += fi.Size()
		}
		return nil
	})
	return total, err
}

// childEnv is the environment of child processes without MAILFERRY_
// overrides, which would silently change the benchmark's configuration.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MAILFERRY_") {
			env = append(env, kv)
		}
	}
	return env
}

// peakMeter measures the peak RSS of a comparison tool's process. The
// Maxrss that wait4 reports for a direct child of this process is of no
// use: Go starts children with vfork, and when the child calls exec the
// kernel records the peak of the memory it leaves, which is this
// process's. GNU time forks the command from a small process and reports
// the command's own peak; without GNU time the child's VmHWM is sampled
// until it exits.
type peakMeter struct {
	gnuTime string // path of GNU time, or ""
	dir     string // where GNU time writes its reports
}

// sampleEvery is the VmHWM sampling period without GNU time.
const sampleEvery = 10 * time.Millisecond

func newPeakMeter(dir string) *peakMeter {
	m := &peakMeter{dir: dir}
	if p, err := exec.LookPath("time"); err == nil {
		if out, err := exec.Command(p, "--version").CombinedOutput(); err == nil && bytes.Contains(out, []byte("GNU")) {
			m.gnuTime = p
		}
	}
	return m
}

func (m *peakMeter) method() string {
	if m.gnuTime != "" {
		return "GNU time (%M) of each process"
	}
	return fmt.Sprintf("VmHWM of each process sampled every %s (GNU time not found)", sampleEvery)
}

// start starts cmd as child name and returns it with a function that
// returns the peak RSS in KiB (0 when unknown) once the child has exited.
func (m *peakMeter) start(name string, cmd *exec.Cmd) (*child, func() int64, error) {
	if cmd.Err != nil {
		return nil, nil, fmt.Errorf("start %s: %w", name, cmd.Err)
	}
	if m.gnuTime != "" {
		if err := os.MkdirAll(m.dir, 0o700); err != nil {
			return nil, nil, fmt.Errorf("start %s: %w", name, err)
		}
		f, err := os.CreateTemp(m.dir, "rusage-")
		if err != nil {
			return nil, nil, fmt.Errorf("start %s: %w", name, err)
		}
		report := f.Name()
		f.Close()
		wrapped := exec.Command(m.gnuTime, append([]string{"-f", "%M", "-o", report, cmd.Path}, cmd.Args[1:]...)...)
		wrapped.Dir, wrapped.Env, wrapped.Stdin, wrapped.Stdout, wrapped.Stderr = cmd.Dir, cmd.Env, cmd.Stdin, cmd.Stdout, cmd.Stderr
		c, err := startChild(name, wrapped)
		if err != nil {
			return nil, nil, err
		}
		return c, func() int64 { return readGNUTime(report) }, nil
	}
	c, err := startChild(name, cmd)
	if err != nil {
		return nil, nil, err
	}
	var peak atomic.Int64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(sampleEvery)
		defer t.Stop()
		for {
			if v, err := procStatusKiB(c.pid(), "VmHWM"); err == nil && v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-c.exited:
				return
			case <-t.C:
			}
		}
	}()
	return c, func() int64 {
		select {
		case <-sampled:
		case <-time.After(killWait):
		}
		return peak.Load()
	}, nil
}

// readGNUTime reads the %M report of GNU time: its last line, after a
// possible "Command exited with non-zero status" line.
func readGNUTime(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	lines := strings.Fields(string(b))
	if len(lines) == 0 {
		return 0
	}
	v, err := strconv.ParseInt(lines[len(lines)-1], 10, 64)
	if err != nil {
		return 0
	}
	return v
}
