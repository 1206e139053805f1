package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/cmd/mailferry/migrate"
	"github.com/mailferry/mailferry/cmd/mailferry/verify"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/daemon"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/subject"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
)

// Bounds of the mailferry run besides the overall -timeout.
const (
	readyTimeout = time.Minute      // until both services consume jobs
	stallTimeout = 5 * time.Minute  // without any event or progress sample
	stopGrace    = 30 * time.Second // from SIGTERM to SIGKILL: above a job's grace period, a fetch and a drain
	maxFailures  = 5                // failed attempts that give a mailbox up
	progressLog  = 10 * time.Second
	reportLines  = 40 // of a failed verification, on stderr
)

// runMailferry migrates the corpus with mailferry in mode: the services
// (see services) or the all-in-one migrate (see allInOne).
func (r *runner) runMailferry(ctx context.Context, round int, mode string) *Result {
	res := &Result{Tool: mailferryName(mode), Mode: mode, Parallel: r.opts.parallel, Round: round,
		Messages: r.corpus.Messages, Bytes: r.corpus.Bytes}
	dir := r.runDir(round, "mailferry-"+mode)
	defer r.removeUnlessKept(dir)
	tgt, err := r.startTarget(ctx, dir)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer r.stopServer(tgt)
	run := r.services
	if mode == modeMigrate {
		run = r.allInOne
	}
	if err := run(ctx, dir, tgt, res); err != nil {
		res.Error = err.Error()
	}
	if ctx.Err() == nil {
		r.countTarget(ctx, tgt, res)
	}
	return res
}

// services migrates the corpus with the extractor and the loader as
// separate processes of the mailferry binary, connected through an
// embedded NATS server that this process hosts, then verifies.
func (r *runner) services(ctx context.Context, dir string, tgt *dovecottest.Server, res *Result) error {
	ctx, cancel := context.WithTimeout(ctx, r.opts.timeout)
	defer cancel()
	addr, err := freeAddr()
	if err != nil {
		return fmt.Errorf("mailferry: %w", err)
	}
	confPath, cfg, err := r.writeConfig(dir, tgt, "nats://"+addr)
	if err != nil {
		return fmt.Errorf("mailferry: %w", err)
	}
	boxes, err := job.ReadInventory(cfg.Mailboxes.File)
	if err != nil {
		return fmt.Errorf("mailferry: %w", err)
	}

	// The embedded server's peak memory is this process's: start measuring
	// it from here, without what generating the corpus took.
	debug.FreeOSMemory()
	if err := resetPeakRSS(); err != nil {
		r.logf("warning: %v; the bench process's peak includes corpus generation", err)
	}
	var usage0 benchUsage
	usage0.rss, _ = procStatusKiB(0, "VmRSS")
	usage0.cpu = selfCPU()
	srvCPU0 := r.serverCPU(tgt)

	stopProfile := r.profile("bench")
	defer func() { stopProfile() }()
	bcfg := cfg.NATS
	bcfg.URL, bcfg.Listen, bcfg.DataDir = "", addr, filepath.Join(dir, "nats")
	// The server makes its password in DataDir; the children's
	// configuration names that file.
	bcfg.User, bcfg.PasswordFile = "", ""
	// Like `mailferry nats`, the process hosting the server limits its
	// heap (memory_limit) while it runs.
	blog := zerolog.New(r.stderr).Level(zerolog.WarnLevel)
	was := debug.SetMemoryLimit(-1)
	daemon.LimitMemory(cfg, daemon.EmbeddedServerMemory, blog)
	defer debug.SetMemoryLimit(was)
	b, err := broker.Open(ctx, bcfg, "mailferry-bench", blog)
	if err != nil {
		return fmt.Errorf("mailferry: start embedded nats on %s: %w", addr, err)
	}
	defer b.Close()

	var children []*child
	defer func() { stopAll(children, stopGrace) }()
	for _, svc := range []string{"extractor", "loader"} {
		c, err := r.startService(dir, svc, confPath)
		if err != nil {
			return fmt.Errorf("mailferry: %w", err)
		}
		children = append(children, c)
	}
	if err := waitConsumers(ctx, b, children); err != nil {
		return fmt.Errorf("mailferry: %w", err)
	}

	events, err := migrate.FollowEvents(ctx, b)
	if err != nil {
		return fmt.Errorf("mailferry: %w", err)
	}
	prog := &progressSum{loaded: map[string]int64{}}
	sub, err := b.Conn.Subscribe(subject.ProgressPrefix+".loader.>", prog.onSample)
	if err != nil {
		return fmt.Errorf("mailferry: follow progress: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()

	r.logf("mailferry: migrating %d mailboxes (extractor and loader as processes, %d mailboxes at once)", len(boxes), r.opts.parallel)
	start := time.Now()
	pass, err := migrate.Enqueue(ctx, b, boxes)
	if err != nil {
		return fmt.Errorf("mailferry: enqueue: %w", err)
	}
	tl := newTimeline(start)
	loaded, err := r.awaitLoaded(ctx, dir, events, pass, boxes, prog, children, tl)
	took := time.Since(start)
	if err != nil {
		return fmt.Errorf("mailferry: pass %s: %w", pass, err)
	}
	res.setCopy(took)
	var appended, dead int64
	for _, l := range loaded {
		appended += l.Appended
		dead += l.Dead
	}
	if dead > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d messages dead-lettered", dead))
	}
	r.logf("mailferry: %d messages appended in %.1f s", appended, took.Seconds())
	res.Notes = append(res.Notes, tl.summary())
	if r.pprofDir != "" {
		if err := tl.write(r.pprofDir); err != nil {
			r.logf("warning: timeline: %v", err)
		}
	}

	err = r.finishServices(dir, children, bcfg.DataDir, usage0, res)
	children = nil // stopped
	r.setServerCPU(res, tgt, srvCPU0)
	stopProfile()
	stopProfile = func() {}
	if err != nil {
		return fmt.Errorf("mailferry: %w", err)
	}

	if ctx.Err() != nil {
		return fmt.Errorf("mailferry: %w", ctx.Err())
	}
	r.logf("mailferry: verifying")
	stopProfile = r.profile("verify")
	vstart, vcpu := time.Now(), selfCPU()
	rep := verify.Mailboxes(ctx, cfg, boxes)
	vtook := time.Since(vstart)
	res.Verify = summarize(rep, vtook)
	res.VerifySeconds = vtook.Seconds()
	res.Seconds = res.CopySeconds + res.VerifySeconds
	// The verification's CPU counts like migrate's, whose process
	// verifies itself; so does the Dovecots' during it.
	vcpu = selfCPU() - vcpu
	res.CPU += vcpu
	res.Processes = append(res.Processes, ProcessCPU{Process: "verification", Seconds: vcpu})
	r.setServerCPU(res, tgt, srvCPU0)
	stopProfile()
	stopProfile = func() {}
	if ctx.Err() != nil {
		return fmt.Errorf("mailferry: verify: %w", ctx.Err())
	}
	if !rep.OK {
		var sb strings.Builder
		rep.WriteText(&sb)
		r.logf("mailferry verification report (first %d lines):\n%s", reportLines, firstLines(sb.String(), reportLines))
	}
	return nil
}

// benchUsage is this process's RSS (KiB) and CPU seconds when the pass
// started.
type benchUsage struct {
	rss int64
	cpu float64
}

// finishServices records the peak RSS of the services and of this process
// (the embedded NATS server), then stops the services and adds up the CPU
// time of all three.
func (r *runner) finishServices(dir string, children []*child, natsDir string, usage0 benchUsage, res *Result) error {
	// Peaks are read before the services stop: a stopping process can
	// still allocate. The services are stopped whatever fails here.
	var errs []error
	for _, c := range children {
		kib, err := procStatusKiB(c.pid(), "VmHWM")
		if err != nil {
			errs = append(errs, fmt.Errorf("peak RSS of %s: %w", c.name, err))
			continue
		}
		res.Peaks = append(res.Peaks, Peak{Process: c.name, KiB: kib, Count: 1})
	}
	if self, err := procStatusKiB(0, "VmHWM"); err != nil {
		errs = append(errs, fmt.Errorf("peak RSS of the bench process: %w", err))
	} else {
		res.Peaks = append(res.Peaks, Peak{Process: "nats+bench", KiB: self, Count: 1})
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.Notes = append(res.Notes, fmt.Sprintf("bench process (embedded NATS): RSS %.1f MiB when the pass started; "+
		"Go heap %.1f MiB in use, %.1f MiB obtained from the OS when it ended",
		float64(usage0.rss)/1024, float64(ms.HeapInuse)/(1<<20), float64(ms.HeapSys)/(1<<20)))
	if size, err := dirSize(natsDir); err == nil {
		res.Notes = append(res.Notes, fmt.Sprintf("JetStream store after the pass: %.1f MB", float64(size)/1e6))
	}
	benchCPU := selfCPU() - usage0.cpu
	res.CPU = benchCPU

	stopErrs, took := stopAll(children, stopGrace)
	for i, c := range children {
		r.logf("mailferry: %s stopped %.1f s after SIGTERM", c.name, took[i].Seconds())
		if stopErrs[i] != nil {
			// The pass is done: a bad stop is a finding, not a failure.
			n := fmt.Sprintf("stopping the %s: %v (log %s)", c.name, stopErrs[i], r.serviceLog(dir, c.name))
			res.Notes = append(res.Notes, n)
			r.logf("warning: mailferry: %s", n)
		}
		cpu := cpuSeconds(c.usage())
		res.CPU += cpu
		res.Processes = append(res.Processes, ProcessCPU{Process: c.name, Seconds: cpu})
	}
	res.Processes = append(res.Processes, ProcessCPU{Process: "nats+bench", Seconds: benchCPU})
	res.Notes = append(res.Notes, "CPU: the services' includes their start and stop; the verification ran in the bench process")
	return errors.Join(errs...)
}

// writeConfig writes mailferry's configuration with its inventory and
// master password file, and returns it loaded. With natsURL the services
// connect to that server (whose password is in dir/nats); without, the
// configuration is a plain all-in-one one: an embedded, private NATS with
// its store in dir/nats.
func (r *runner) writeConfig(dir string, tgt *dovecottest.Server, natsURL string) (string, *config.Config, error) {
	pw := filepath.Join(dir, "master.pw")
	if err := os.WriteFile(pw, []byte(r.masterPassword+"\n"), 0o600); err != nil {
		return "", nil, fmt.Errorf("write master password: %w", err)
	}
	var csv strings.Builder
	csv.WriteString("source_user,target_user\n")
	for _, u := range r.users {
		fmt.Fprintf(&csv, "%s,%s\n", u, u)
	}
	if err := os.WriteFile(filepath.Join(dir, "mailboxes.csv"), []byte(csv.String()), 0o600); err != nil {
		return "", nil, fmt.Errorf("write inventory: %w", err)
	}
	// The loader holds two connections per mailbox; migrate's
	// verification may run while others still load.
	conns := max(2*r.opts.parallel+2, 3*r.opts.parallel)
	natsYAML := "nats:\n  data_dir: nats\n"
	if natsURL != "" {
		natsYAML = fmt.Sprintf("nats:\n  url: %s\n  user: mailferry\n  password_file: nats/broker.password\n", natsURL)
	}
	yaml := fmt.Sprintf(`# written by mailferry bench
%ssource:
  address: %s
  tls: none
  auth: master
  master_user: %s
  master_password_file: master.pw
  connections: %d
target:
  address: %s
  tls: none
  auth: master
  master_user: %s
  master_password_file: master.pw
  connections: %d
mailboxes:
  file: mailboxes.csv
extractor:
  concurrency: %d
loader:
  concurrency: %d
log:
  level: info
  format: json
`, natsYAML, r.src.Addr, masterUser, conns, tgt.Addr, masterUser, conns, r.opts.parallel, r.opts.parallel)
	path := filepath.Join(dir, "mailferry.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		return "", nil, fmt.Errorf("write config: %w", err)
	}
	cfg, err := config.Parse([]byte(yaml), dir, childEnv())
	if err != nil {
		return "", nil, fmt.Errorf("config %s: %w", path, err)
	}
	return path, cfg, nil
}

// startService starts `mailferry SVC -c CONF` with its log in dir.
func (r *runner) startService(dir, svc, conf string) (*child, error) {
	logf, err := os.Create(r.serviceLog(dir, svc))
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", svc, err)
	}
	// The child has its own descriptor once started.
	defer logf.Close()
	cmd := exec.Command(r.opts.bin, svc, "-c", conf)
	cmd.Dir = dir
	cmd.Env = r.serviceEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	return startChild(svc, cmd)
}

func (r *runner) serviceLog(dir, svc string) string { return filepath.Join(dir, svc+".log") }

// waitConsumers waits until the extractor's and the loader's durable job
// consumers exist, that is until both services are connected and about to
// fetch jobs, so the measured time does not include their start.
func waitConsumers(ctx context.Context, b *broker.Broker, children []*child) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for _, name := range []string{"extractor", "loader"} {
		for {
			_, err := b.JS.Consumer(ctx, broker.StreamJobs, name)
			if err == nil {
				break
			}
			for _, c := range children {
				if c.done() {
					return fmt.Errorf("%s exited during start: %v", c.name, c.exitErr())
				}
			}
			if ctx.Err() != nil {
				return fmt.Errorf("wait for the %s to consume jobs: %w (last: %v)", name, ctx.Err(), err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

// progressSum adds up the loader's progress samples; the NATS callback and
// the waiting loop share it.
type progressSum struct {
	mu     sync.Mutex
	loaded map[string]int64
	bytes  map[string]int64
	seen   time.Time
}

func (p *progressSum) onSample(m *nats.Msg) {
	var s event.Progress
	if json.Unmarshal(m.Data, &s) != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bytes == nil {
		p.bytes = map[string]int64{}
	}
	p.loaded[s.Mailbox] = s.Messages
	p.bytes[s.Mailbox] = s.Bytes
	p.seen = time.Now()
}

func (p *progressSum) totals() (msgs, bytes int64, last time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, n := range p.loaded {
		msgs += n
	}
	for _, n := range p.bytes {
		bytes += n
	}
	return msgs, bytes, p.seen
}

// awaitLoaded follows the events of pass until every mailbox is loaded,
// recording them in tl (whose start is the pass's).
// It gives up when a mailbox failed maxFailures times or for good, when a
// service exits, when nothing happens for stallTimeout, or when ctx ends.
func (r *runner) awaitLoaded(ctx context.Context, dir string, cons jetstream.Consumer, pass string, boxes []job.Mailbox,
	prog *progressSum, children []*child, tl *timeline) (map[string]event.LoadedData, error) {
	start := tl.start
	loaded := map[string]event.LoadedData{}
	failures := map[string]int{}
	lastActivity, lastLog := time.Now(), time.Now()
	for len(loaded) < len(boxes) {
		for _, c := range children {
			if c.done() {
				return nil, fmt.Errorf("%s exited (%v); log tail:\n%s", c.name, c.exitErr(), fileTail(r.serviceLog(dir, c.name), 20))
			}
		}
		msg, err := cons.Next(jetstream.FetchMaxWait(time.Second))
		switch {
		case err == nil:
			lastActivity = time.Now()
			e, derr := event.Decode(msg.Data())
			if derr != nil {
				r.logf("warning: mailferry: %v", derr)
				break
			}
			tl.add(e, pass)
			if err := r.onEvent(e, pass, loaded, failures); err != nil {
				return nil, err
			}
		case errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages):
		case ctx.Err() != nil:
			return nil, fmt.Errorf("%d of %d mailboxes loaded: %w", len(loaded), len(boxes), ctx.Err())
		default:
			return nil, fmt.Errorf("read events: %w", err)
		}
		msgs, bytes, seen := prog.totals()
		if seen.After(lastActivity) {
			lastActivity = seen
		}
		if time.Since(lastActivity) > stallTimeout {
			return nil, fmt.Errorf("no event and no progress for %s (%d of %d mailboxes loaded)", stallTimeout, len(loaded), len(boxes))
		}
		if time.Since(lastLog) >= progressLog {
			el := time.Since(start).Seconds()
			r.logf("mailferry: %d/%d mailboxes loaded, %d messages, %.1f MB (%.0f messages/s, %.1f MB/s)",
				len(loaded), len(boxes), msgs, float64(bytes)/1e6, float64(msgs)/el, float64(bytes)/1e6/el)
			lastLog = time.Now()
		}
	}
	return loaded, nil
}

// onEvent folds one event of pass into loaded and failures.
func (r *runner) onEvent(e *event.Event, pass string, loaded map[string]event.LoadedData, failures map[string]int) error {
	switch e.Type {
	case event.MailboxLoaded:
		var d event.LoadedData
		if json.Unmarshal(e.Data, &d) != nil || d.Pass != pass {
			return nil
		}
		loaded[e.Key] = d
	case event.MailboxFailed:
		var d event.FailedData
		if json.Unmarshal(e.Data, &d) != nil || d.Pass != pass {
			return nil
		}
		failures[e.Key]++
		r.logf("mailferry: %s: attempt %d failed while %s (retried: %t): %s", e.Key, failures[e.Key], d.Phase, d.Retried, d.Reason)
		if !d.Retried || failures[e.Key] >= maxFailures {
			return fmt.Errorf("mailbox %s failed %d times, last while %s: %s", e.Key, failures[e.Key], d.Phase, d.Reason)
		}
	}
	return nil
}

// summarize reduces a verification report to its outcome and the number
// of differences by kind.
func summarize(rep *verify.Report, took time.Duration) *Verification {
	v := &Verification{OK: rep.OK, Seconds: took.Seconds(), Differences: map[string]int{}}
	for _, m := range rep.Mailboxes {
		v.Mailboxes++
		v.Messages += m.Messages
		if m.Error != "" {
			v.Errors = append(v.Errors, m.Source+": "+m.Error)
		}
		for _, f := range m.Folders {
			for _, d := range f.Differences {
				v.Differences[d.Kind]++
			}
		}
	}
	return v
}

// freeAddr returns 127.0.0.1:port for a port that was free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(l.Addr().(*net.TCPAddr).Port)), nil
}

// firstLines returns the first n lines of s.
func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}
