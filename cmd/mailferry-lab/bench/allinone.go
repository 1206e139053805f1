package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/mailferry/mailferry/cmd/mailferry/verify"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
)

// migrateResult is what the bench reads of `mailferry migrate -json`'s
// result. CopyTook and VerifyTook are nil when the binary predates them.
type migrateResult struct {
	Took       time.Duration
	CopyTook   *time.Duration
	VerifyTook *time.Duration
	Report     *verify.Report
}

// allInOne migrates the corpus as users run mailferry: `mailferry migrate
// -json -c CONF`, one process with its own embedded NATS server, which
// copies and verifies. The run's total is its wall time from start to exit;
// copy and verification are the times it reports. Exit status 0 means
// every mailbox was loaded and verified.
func (r *runner) allInOne(ctx context.Context, dir string, tgt *dovecottest.Server, res *Result) error {
	ctx, cancel := context.WithTimeout(ctx, r.opts.timeout)
	defer cancel()
	conf, _, err := r.writeConfig(dir, tgt, "")
	if err != nil {
		return fmt.Errorf("mailferry migrate: %w", err)
	}
	outPath, logPath := filepath.Join(dir, "migrate.json"), filepath.Join(dir, "migrate.log")
	out, err := os.Create(outPath)
	if err != nil {
		return fmt.Errorf("mailferry migrate: result file: %w", err)
	}
	defer out.Close()
	logf, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("mailferry migrate: log: %w", err)
	}
	defer logf.Close()

	cmd := exec.Command(r.opts.bin, "migrate", "-json", "-c", conf)
	cmd.Dir = dir
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = out, logf
	// wait4's ru_maxrss of a direct child is useless (see peakMeter): GNU
	// time reports it as seen from a parent of its own.
	meter := newPeakMeter(filepath.Join(dir, "rusage"))
	res.Notes = append(res.Notes, "peak RSS measured with "+meter.method())
	srvCPU0 := r.serverCPU(tgt)
	r.logf("%s: migrating %d mailboxes, %d at once (one process, embedded NATS)", res.Tool, len(r.users), r.opts.parallel)
	start := time.Now()
	c, peak, err := meter.start(res.Tool, cmd)
	if err != nil {
		return fmt.Errorf("mailferry migrate: %w", err)
	}
	werr := c.wait(ctx)
	took := time.Since(start)
	r.setServerCPU(res, tgt, srvCPU0)
	res.Peaks = []Peak{{Process: "all-in-one", KiB: peak(), Count: 1}}
	res.CPU = cpuSeconds(c.usage())
	res.Processes = []ProcessCPU{{Process: "all-in-one", Seconds: res.CPU}}
	// A failed run may still have written its result.
	var mr migrateResult
	b, rerr := os.ReadFile(outPath)
	if rerr == nil && len(b) > 0 {
		rerr = json.Unmarshal(b, &mr)
	}
	if mr.Report != nil {
		res.Verify = summarize(mr.Report, 0)
	}
	if werr != nil {
		return fmt.Errorf("mailferry migrate exited after %.1f s: %w; log tail:\n%s", took.Seconds(), werr, fileTail(logPath, 20))
	}
	if rerr != nil || len(b) == 0 {
		return fmt.Errorf("mailferry migrate: its result %s: unreadable (%v) or empty", outPath, rerr)
	}
	if err := mr.record(res, took); err != nil {
		return fmt.Errorf("mailferry migrate: %w", err)
	}
	r.logf("%s: done in %.1f s (copy %s s, verification %s s)", res.Tool, took.Seconds(), secs(res.CopySeconds), secs(res.VerifySeconds))
	return nil
}

// record fills res from a run that exited successfully after wall: its
// total, and the copy and verification times when mailferry reports them.
func (mr *migrateResult) record(res *Result, wall time.Duration) error {
	res.Seconds = wall.Seconds()
	if mr.CopyTook != nil && *mr.CopyTook > 0 {
		res.setCopy(*mr.CopyTook)
		if mr.VerifyTook != nil {
			res.VerifySeconds = mr.VerifyTook.Seconds()
		}
	} else {
		res.Notes = append(res.Notes, "this mailferry reports no CopyTook: copy and verification unknown, total only")
	}
	res.Notes = append(res.Notes, fmt.Sprintf("its own Took: %.1f s (start to end of its verification, without starting and stopping the process)", mr.Took.Seconds()))
	if mr.Report == nil {
		return fmt.Errorf("its result has no verification report")
	}
	res.Verify = summarize(mr.Report, time.Duration(res.VerifySeconds*float64(time.Second)))
	return nil
}
