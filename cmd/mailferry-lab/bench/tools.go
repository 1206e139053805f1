package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mailferry/mailferry/cmd/mailferry/verify"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
)

// Names of the comparison tools.
const (
	toolDoveadm = "doveadm"
	toolMbsync  = "mbsync"
)

// outputTail is how much of a tool's output is kept for error messages.
const outputTail = 4 << 10

// runDoveadm migrates every mailbox with Dovecot's own dsync, reading the
// source over IMAP (imapc) and writing the target's Maildir directly:
// doveadm backup -R imapc:, one process per mailbox.
func (r *runner) runDoveadm(ctx context.Context, round, parallel int) *Result {
	res := &Result{Tool: toolName(toolDoveadm, parallel), Parallel: parallel, Round: round, Messages: r.corpus.Messages, Bytes: r.corpus.Bytes,
		Notes: []string{"doveadm backup -R imapc: writes the target's Maildir itself, not through the target's IMAP server"}}
	if _, err := exec.LookPath("doveadm"); err != nil {
		res.Error = fmt.Sprintf("doveadm not found on PATH (Debian package %s): %v", dovecottest.DebianPackage, err)
		return res
	}
	_, port, err := net.SplitHostPort(r.src.Addr)
	if err != nil {
		res.Error = fmt.Sprintf("doveadm: source address %q: %v", r.src.Addr, err)
		return res
	}
	dir := r.runDir(round, fmt.Sprintf("%s-%d", toolDoveadm, parallel))
	r.runTool(ctx, res, dir, func(tgt *dovecottest.Server, user string) (*exec.Cmd, error) {
		// doveadm does not expand %u in -o values: every value is literal.
		return exec.Command("doveadm", "-c", tgt.ConfigPath,
			"-o", "mail_fsync=optimized",
			"-o", "imapc_host=127.0.0.1",
			"-o", "imapc_port="+port,
			"-o", "imapc_ssl=no",
			"-o", "imapc_user="+user,
			"-o", "imapc_master_user="+masterUser,
			"-o", "imapc_password="+r.masterPassword,
			"-o", "imapc_features=rfc822.size fetch-headers",
			"-o", "mail_prefetch_count=20",
			"backup", "-R", "-u", user, "imapc:"), nil
	})
	return res
}

// runMbsync migrates every mailbox with isync's mbsync, IMAP to IMAP, one
// process (and configuration file) per mailbox.
func (r *runner) runMbsync(ctx context.Context, round, parallel int) *Result {
	res := &Result{Tool: toolName(toolMbsync, parallel), Parallel: parallel, Round: round, Messages: r.corpus.Messages, Bytes: r.corpus.Bytes,
		Notes: []string{"mbsync (Debian package isync) stands in for imapsync, which Debian does not ship",
			"mbsync adds an X-TUID header to every message it copies, so its copies are not byte-identical"}}
	if _, err := exec.LookPath("mbsync"); err != nil {
		res.Error = fmt.Sprintf("mbsync not found on PATH (install the Debian package isync: apt-get install -y isync): %v", err)
		return res
	}
	if out, err := exec.CommandContext(ctx, "mbsync", "--version").Output(); err == nil {
		res.Notes[0] = strings.TrimSpace(string(out)) + " (Debian package isync) stands in for imapsync, which Debian does not ship"
	}
	srcHost, srcPort, err := net.SplitHostPort(r.src.Addr)
	if err != nil {
		res.Error = fmt.Sprintf("mbsync: source address %q: %v", r.src.Addr, err)
		return res
	}
	dir := r.runDir(round, fmt.Sprintf("%s-%d", toolMbsync, parallel))
	r.runTool(ctx, res, dir, func(tgt *dovecottest.Server, user string) (*exec.Cmd, error) {
		tgtHost, tgtPort, err := net.SplitHostPort(tgt.Addr)
		if err != nil {
			return nil, fmt.Errorf("target address %q: %w", tgt.Addr, err)
		}
		state := filepath.Join(dir, "state", user)
		if err := os.MkdirAll(state, 0o700); err != nil {
			return nil, fmt.Errorf("sync state dir: %w", err)
		}
		// Dovecot's master login: LOGIN "user*master" with the master's
		// password (auth_master_user_separator is '*').
		login := user + "*" + masterUser
		rc := fmt.Sprintf(`# written by mailferry bench
IMAPAccount source
Host %s
Port %s
User "%s"
Pass "%s"
SSLType None
AuthMechs LOGIN
Timeout 300

IMAPStore source
Account source

IMAPAccount target
Host %s
Port %s
User "%s"
Pass "%s"
SSLType None
AuthMechs LOGIN
Timeout 300

IMAPStore target
Account target

Channel migrate
Far :source:
Near :target:
Patterns *
Create Near
Sync Pull
Expunge None
CopyArrivalDate yes
SyncState %s/
`, srcHost, srcPort, login, r.masterPassword, tgtHost, tgtPort, login, r.masterPassword, state)
		path := filepath.Join(dir, "rc", user+".mbsyncrc")
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("mbsyncrc dir: %w", err)
		}
		if err := os.WriteFile(path, []byte(rc), 0o600); err != nil {
			return nil, fmt.Errorf("write mbsyncrc: %w", err)
		}
		return exec.Command("mbsync", "-c", path, "-a"), nil
	})
	return res
}

// runTool starts a fresh target in dir, runs one command per mailbox,
// res.Parallel at once, and fills res with the time, the largest peak
// RSS and the CPU time of the processes, what the target holds afterwards
// and mailferry's verification of it.
func (r *runner) runTool(ctx context.Context, res *Result, dir string, command func(tgt *dovecottest.Server, user string) (*exec.Cmd, error)) {
	defer r.removeUnlessKept(dir)
	tgt, err := r.startTarget(ctx, dir)
	if err != nil {
		res.Error = err.Error()
		return
	}
	defer r.stopServer(tgt)

	tctx, cancel := context.WithTimeout(ctx, r.opts.timeout)
	defer cancel()
	srvCPU0 := r.serverCPU(tgt)
	r.logf("%s: migrating %d mailboxes, %d at once", res.Tool, len(r.users), res.Parallel)

	meter := newPeakMeter(filepath.Join(dir, "rusage"))
	res.Notes = append(res.Notes, "peak RSS measured with "+meter.method())
	var (
		mu         sync.Mutex
		errs       []error
		name, _, _ = strings.Cut(res.Tool, " ")
		peak       = Peak{Process: name}
		cpu        float64
		wg         sync.WaitGroup
		users      = make(chan string)
	)
	worker := func() {
		defer wg.Done()
		for user := range users {
			kib, cpuSec, err := r.runOne(tctx, res.Tool, tgt, user, meter, command)
			mu.Lock()
			if err != nil {
				errs = append(errs, err)
			}
			if kib > 0 {
				peak.Count++
				peak.KiB = max(peak.KiB, kib)
			}
			cpu += cpuSec
			mu.Unlock()
		}
	}
	start := time.Now()
	for range min(res.Parallel, len(r.users)) {
		wg.Add(1)
		go worker()
	}
feed:
	for _, u := range r.users {
		select {
		case users <- u:
		case <-tctx.Done():
			break feed
		}
	}
	close(users)
	wg.Wait()
	took := time.Since(start)
	res.Peaks = []Peak{peak}
	res.CPU = cpu
	res.Processes = []ProcessCPU{{Process: name, Seconds: cpu}}
	r.setServerCPU(res, tgt, srvCPU0)
	failed := len(errs)
	if tctx.Err() != nil {
		errs = append(errs, fmt.Errorf("stopped after %.1f s: %w", took.Seconds(), tctx.Err()))
	}
	if len(errs) > 0 {
		// No rate for an incomplete run.
		res.Error = fmt.Sprintf("%d of %d mailboxes failed: %v", failed, len(r.users), errors.Join(errs...))
		r.logf("%s: %s", res.Tool, res.Error)
	} else {
		res.setCopy(took)
		res.Seconds = res.CopySeconds
		r.logf("%s: done in %.1f s", res.Tool, took.Seconds())
	}
	if ctx.Err() != nil {
		return
	}
	r.countTarget(ctx, tgt, res)
	if r.opts.verifyOthers {
		r.verifyTarget(ctx, dir, tgt, res)
	}
}

// runOne runs the command of one mailbox to its end and returns its peak
// RSS in KiB and its CPU seconds.
func (r *runner) runOne(ctx context.Context, tool string, tgt *dovecottest.Server, user string, meter *peakMeter,
	command func(tgt *dovecottest.Server, user string) (*exec.Cmd, error)) (int64, float64, error) {
	cmd, err := command(tgt, user)
	if err != nil {
		return 0, 0, fmt.Errorf("%s %s: %w", tool, user, err)
	}
	out := newTailBuffer(outputTail)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = childEnv()
	c, peak, err := meter.start(tool+" "+user, cmd)
	if err != nil {
		return 0, 0, err
	}
	err = c.wait(ctx)
	kib, cpu := peak(), cpuSeconds(c.usage())
	if err != nil {
		return kib, cpu, fmt.Errorf("%s %s: %w; output: %s", tool, user, err, out.String())
	}
	return kib, cpu, nil
}

// startTarget starts a fresh, empty target Dovecot in dir/target.
func (r *runner) startTarget(ctx context.Context, dir string) (*dovecottest.Server, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("chmod %s: %w", dir, err)
	}
	sctx, cancel := context.WithTimeout(ctx, dovecotStartTimeout)
	defer cancel()
	tgt, err := dovecottest.Start(sctx, filepath.Join(dir, "target"), r.serverOptions('.'))
	if err != nil {
		return nil, fmt.Errorf("start target dovecot: %w", err)
	}
	return tgt, nil
}

// countTarget records how many messages and bytes the target holds.
func (r *runner) countTarget(ctx context.Context, tgt *dovecottest.Server, res *Result) {
	cctx, cancel := context.WithTimeout(ctx, countTimeout)
	defer cancel()
	res.TargetMessages, res.TargetBytes = 0, 0
	for _, u := range r.users {
		n, b, err := mailboxTotals(cctx, tgt, u)
		if err != nil {
			res.Notes = append(res.Notes, fmt.Sprintf("counting the target failed: %v", err))
			return
		}
		res.TargetMessages += n
		res.TargetBytes += b
	}
}

// verifyTarget runs mailferry's verification of a tool's target: the same
// comparison of content, flags and INTERNALDATE mailferry must pass.
func (r *runner) verifyTarget(ctx context.Context, dir string, tgt *dovecottest.Server, res *Result) {
	vctx, cancel := context.WithTimeout(ctx, r.opts.timeout)
	defer cancel()
	_, cfg, err := r.writeConfig(dir, tgt, "nats://127.0.0.1:4222")
	if err != nil {
		res.Notes = append(res.Notes, fmt.Sprintf("verification not run: %v", err))
		return
	}
	boxes := inventory(r.users)
	r.logf("%s: verifying its target with mailferry's verification", res.Tool)
	start := time.Now()
	rep := verify.Mailboxes(vctx, cfg, boxes)
	res.Verify = summarize(rep, time.Since(start))
}

func inventory(users []string) []job.Mailbox {
	boxes := make([]job.Mailbox, len(users))
	for i, u := range users {
		boxes[i] = job.Mailbox{SourceUser: u, TargetUser: u}
	}
	return boxes
}

// serverCPU is the CPU time the source and tgt Dovecot instances used so
// far, their finished imap processes included.
func (r *runner) serverCPU(tgt *dovecottest.Server) dovecotCPU {
	var cpu dovecotCPU
	for i, s := range []*dovecottest.Server{r.src, tgt} {
		if pid, err := masterPID(s.BaseDir); err == nil {
			cpu[i] = groupCPU(pid)
		}
	}
	return cpu
}

// dovecotCPU is the CPU seconds of the source and the target Dovecot.
type dovecotCPU [2]float64

// setServerCPU records in res the Dovecot CPU time used since was.
func (r *runner) setServerCPU(res *Result, tgt *dovecottest.Server, was dovecotCPU) {
	now := r.serverCPU(tgt)
	res.SourceCPU, res.TargetCPU = now[0]-was[0], now[1]-was[1]
	res.ServerCPU = res.SourceCPU + res.TargetCPU
}
