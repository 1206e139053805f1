// Package bench measures a whole mailferry migration between two real
// Dovecot servers and compares it, on the same machine and corpus, with
// Dovecot's own migration (doveadm backup -R imapc:) and with mbsync.
//
// It generates a deterministic corpus (long-tailed sizes up to -max-size,
// nested and non-ASCII folders, random flags, keywords and dates) into a
// source Dovecot, then for each tool starts a fresh, empty target Dovecot,
// migrates every mailbox with the same parallelism, and reports messages/s,
// MB/s, peak RSS per process, CPU time and what the target holds. mailferry
// runs as it is deployed: the extractor and the loader are separate
// processes of the mailferry binary, connected through an embedded NATS
// server that the benchmark process hosts; its run must pass mailferry's
// verification. The other tools' targets are verified the same way, for
// information. With -pprof it writes CPU and heap profiles of the
// extractor, the loader (through daemon.PprofDirEnv) and itself (the
// embedded NATS server) during the pass, and the pass's timeline.
//
// It needs root and Debian's dovecot-imapd; mbsync comes from the Debian
// package isync.
package bench

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/mailferry/mailferry/cmd/mailferry-lab/shipped"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
)

const (
	// masterUser logs in as any user on both Dovecot servers.
	masterUser = "admin"
	// dovecotStartTimeout bounds the start of one Dovecot instance.
	dovecotStartTimeout = time.Minute
	// countTimeout bounds counting what a target holds.
	countTimeout = 5 * time.Minute
)

// Sub-directories of the work directory, one per phase.
var workDirs = []string{"source", "mailferry", toolDoveadm, toolMbsync}

// options are the parsed flags.
type options struct {
	mailboxes    int
	messages     int
	maxSize      int64
	seed         uint64
	keep         bool
	compare      []string
	work         string
	bin          string
	parallel     int
	timeout      time.Duration
	verifyOthers bool
	json         bool
	pprof        string
}

// Main runs the benchmark with command-line args (without the command
// name), printing the table (and with -json a JSON line) to stdout and
// progress to stderr. It returns an error when the mailferry run failed or
// did not verify; a failing comparison tool is reported, not an error.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	r := &runner{opts: o, stderr: stderr, start: time.Now()}
	return r.run(ctx, stdout)
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: mailferry bench [flags]

Generates a corpus in a source Dovecot, migrates it with mailferry (extractor
and loader as separate processes, embedded NATS), verifies, and compares with
doveadm backup -R imapc: and mbsync on fresh target Dovecots. Needs root.

flags:
`)
		fs.PrintDefaults()
	}
	o := &options{maxSize: 25_000_000}
	fs.IntVar(&o.mailboxes, "mailboxes", 20, "number of mailboxes")
	fs.IntVar(&o.messages, "messages", 10000, "number of messages over all mailboxes")
	fs.Var((*byteSize)(&o.maxSize), "max-size", "largest message (`SIZE`: bytes, or with kB, MB, KiB, MiB)")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the generated corpus")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (servers' mail, NATS store, logs)")
	compare := fs.String("compare", toolDoveadm+","+toolMbsync, "comparison tools, comma-separated (doveadm, mbsync), or none")
	fs.StringVar(&o.work, "work", "", "work `DIR` (default: a new directory under "+os.TempDir()+")")
	fs.StringVar(&o.bin, "bin", "", "mailferry binary that runs the extractor and the loader (default: next to this one, on PATH, or built from source)")
	fs.IntVar(&o.parallel, "parallel", 4, "mailboxes migrated at once, by every tool")
	fs.DurationVar(&o.timeout, "timeout", time.Hour, "bound of each tool's run and verification")
	fs.BoolVar(&o.verifyOthers, "verify-others", true, "verify the comparison tools' targets with mailferry's verification too")
	fs.BoolVar(&o.json, "json", false, "also print the report as one JSON line")
	fs.StringVar(&o.pprof, "pprof", "", "write CPU and heap profiles of mailferry's pass (extractor, loader, this process with the embedded NATS) and of its verification, and the pass's timeline, into `DIR`")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("bench: unexpected arguments %q", fs.Args())
	}
	switch {
	case o.mailboxes < 1 || o.mailboxes > 1000:
		return nil, fmt.Errorf("bench: -mailboxes %d: want 1 to 1000", o.mailboxes)
	case o.messages < o.mailboxes:
		return nil, fmt.Errorf("bench: -messages %d: want at least one per mailbox (%d)", o.messages, o.mailboxes)
	case o.maxSize < 64<<10 || o.maxSize > 512<<20:
		return nil, fmt.Errorf("bench: -max-size %d: want 64 KiB to 512 MiB", o.maxSize)
	case o.parallel < 1:
		return nil, fmt.Errorf("bench: -parallel %d: want at least 1", o.parallel)
	case o.timeout <= 0:
		return nil, fmt.Errorf("bench: -timeout %s: want a positive duration", o.timeout)
	}
	if o.pprof != "" {
		d, err := filepath.Abs(o.pprof)
		if err != nil {
			return nil, fmt.Errorf("bench: -pprof: %w", err)
		}
		o.pprof = d
	}
	for _, t := range strings.Split(*compare, ",") {
		t = strings.TrimSpace(t)
		switch t {
		case "", "none":
		case toolDoveadm, toolMbsync:
			if !contains(o.compare, t) {
				o.compare = append(o.compare, t)
			}
		default:
			return nil, fmt.Errorf("bench: -compare: unknown tool %q (want doveadm, mbsync or none)", t)
		}
	}
	return o, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// byteSize is a flag value in bytes written as 25MB, 512KiB or 1048576.
type byteSize int64

func (b *byteSize) String() string {
	if b == nil {
		return ""
	}
	return strconv.FormatInt(int64(*b), 10)
}

func (b *byteSize) Set(s string) error {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"kB", 1e3}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range units {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 {
		return fmt.Errorf("size %q: want a number of bytes, optionally with kB, MB, GB, KiB, MiB or GiB", s)
	}
	*b = byteSize(v * float64(mult))
	return nil
}

// runner is one benchmark run.
type runner struct {
	opts   *options
	stderr io.Writer
	start  time.Time
	logMu  sync.Mutex

	work           string
	users          []string
	masterPassword string
	src            *dovecottest.Server
	corpus         *Corpus
}

// logf writes a progress line to stderr.
func (r *runner) logf(format string, args ...any) {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	fmt.Fprintf(r.stderr, "bench %7.1fs: %s\n", time.Since(r.start).Seconds(), fmt.Sprintf(format, args...))
}

func (r *runner) run(ctx context.Context, stdout io.Writer) (err error) {
	if err := r.preflight(); err != nil {
		return err
	}
	cleanup, err := r.makeWork()
	if err != nil {
		return err
	}
	defer cleanup()
	if err := r.findBinary(ctx); err != nil {
		return err
	}

	var pw [12]byte
	if _, err := crand.Read(pw[:]); err != nil {
		return fmt.Errorf("bench: master password: %w", err)
	}
	r.masterPassword = "bench-" + hex.EncodeToString(pw[:])
	width := len(strconv.Itoa(r.opts.mailboxes))
	for i := range r.opts.mailboxes {
		r.users = append(r.users, fmt.Sprintf("user%0*d@old.example", width, i+1))
	}

	r.logf("starting the source Dovecot in %s", r.work)
	sctx, cancel := context.WithTimeout(ctx, dovecotStartTimeout)
	r.src, err = dovecottest.Start(sctx, filepath.Join(r.work, "source"), r.serverOptions('/'))
	cancel()
	if err != nil {
		return fmt.Errorf("bench: source: %w", err)
	}
	defer r.stopServer(r.src)

	r.logf("seeding %d messages into %d mailboxes (seed %d, max size %d bytes)", r.opts.messages, r.opts.mailboxes, r.opts.seed, r.opts.maxSize)
	rng := newRand(r.opts.seed)
	plans := planCorpus(r.users, r.opts.messages, r.opts.maxSize, rng)
	if r.corpus, err = seedCorpus(ctx, r.src, plans, rng, r.opts.seed); err != nil {
		return fmt.Errorf("bench: %w (source log: %s)", err, r.src.LogPath)
	}
	r.logf("seeded %d messages, %.1f MB in %d folders in %.1f s", r.corpus.Messages, float64(r.corpus.Bytes)/1e6, r.corpus.Folders, r.corpus.Seconds)

	rep := &Report{Corpus: r.corpus, Parallel: r.opts.parallel, CPUs: runtime.NumCPU(), LoadBefore: loadAverage()}
	mf := r.runMailferry(ctx)
	rep.Results = append(rep.Results, mf)
	for _, tool := range r.opts.compare {
		if ctx.Err() != nil {
			break
		}
		switch tool {
		case toolDoveadm:
			rep.Results = append(rep.Results, r.runDoveadm(ctx))
		case toolMbsync:
			rep.Results = append(rep.Results, r.runMbsync(ctx))
		}
	}
	rep.LoadAfter = loadAverage()
	rep.WriteText(stdout)
	if r.opts.keep {
		fmt.Fprintf(stdout, "work directory kept: %s\n", r.work)
	}
	if r.opts.json {
		if err := json.NewEncoder(stdout).Encode(rep); err != nil {
			return fmt.Errorf("bench: write JSON: %w", err)
		}
	}
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("bench: %w", ctx.Err())
	case mf.Error != "":
		return fmt.Errorf("bench: %s", mf.Error)
	case mf.Verify == nil || !mf.Verify.OK:
		return errors.New("bench: mailferry's migration did not pass verification")
	}
	return nil
}

// preflight reports what is missing before anything starts.
func (r *runner) preflight() error {
	if os.Geteuid() != 0 {
		return errors.New("bench: must run as root: Dovecot switches to the users vmail and dovecot")
	}
	for _, bin := range []string{"dovecot", "doveadm"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("bench: %s not found on PATH: install the Debian package %s", bin, dovecottest.DebianPackage)
		}
	}
	return nil
}

// findBinary finds (or builds) the mailferry binary the services run as.
func (r *runner) findBinary(ctx context.Context) error {
	bin, err := shipped.Binary(ctx, r.opts.bin, r.work)
	if err != nil {
		return fmt.Errorf("bench: %w (-bin)", err)
	}
	r.opts.bin = bin
	return nil
}

// makeWork creates the work directory (traversable by Dovecot's users)
// and returns what removes it again unless -keep.
func (r *runner) makeWork() (func(), error) {
	if r.opts.work == "" {
		d, err := os.MkdirTemp("", "mailferry-bench-")
		if err != nil {
			return nil, fmt.Errorf("bench: work dir: %w", err)
		}
		r.work = d
	} else {
		d, err := filepath.Abs(r.opts.work)
		if err != nil {
			return nil, fmt.Errorf("bench: work dir: %w", err)
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("bench: work dir: %w", err)
		}
		for _, sub := range workDirs {
			if _, err := os.Stat(filepath.Join(d, sub)); err == nil {
				return nil, fmt.Errorf("bench: work dir %s already holds %s/ from an earlier run: remove it or choose another -work", d, sub)
			}
		}
		r.work = d
	}
	if err := os.Chmod(r.work, 0o755); err != nil {
		return nil, fmt.Errorf("bench: work dir: %w", err)
	}
	own := r.opts.work == ""
	return func() {
		if r.opts.keep {
			return
		}
		if own {
			_ = os.RemoveAll(r.work)
			return
		}
		for _, sub := range workDirs {
			_ = os.RemoveAll(filepath.Join(r.work, sub))
		}
	}, nil
}

// serverOptions configures a Dovecot instance with every benchmark user
// and the master user. Only the target has the special-use folders
// created for every user, like a new provider.
func (r *runner) serverOptions(sep rune) dovecottest.Options {
	users := make(map[string]string, len(r.users))
	for i, u := range r.users {
		users[u] = fmt.Sprintf("pw-%d", i+1)
	}
	return dovecottest.Options{Separator: sep, MasterUser: masterUser, MasterPassword: r.masterPassword,
		Users: users, PlainPasswords: true, AutoCreateSpecial: sep == '.'}
}

func (r *runner) stopServer(s *dovecottest.Server) {
	if err := s.Stop(); err != nil {
		r.logf("warning: %v", err)
	}
}

// removeUnlessKept removes a tool's directory after its run.
func (r *runner) removeUnlessKept(dir string) {
	if !r.opts.keep {
		if err := os.RemoveAll(dir); err != nil {
			r.logf("warning: remove %s: %v", dir, err)
		}
	}
}

// Report is the outcome of a benchmark run.
type Report struct {
	Corpus   *Corpus `json:"corpus"`
	Parallel int     `json:"parallel"`
	CPUs     int     `json:"cpus"`
	// LoadBefore and LoadAfter are the 1-minute load averages before the
	// first tool ran and after the last: other work on the machine skews
	// every figure.
	LoadBefore float64   `json:"load_before"`
	LoadAfter  float64   `json:"load_after"`
	Results    []*Result `json:"results"`
}

// Result is one tool's migration of the corpus.
type Result struct {
	Tool string `json:"tool"`
	// Messages and Bytes are the corpus: what the tool had to move.
	Messages       int     `json:"messages"`
	Bytes          int64   `json:"bytes"`
	Seconds        float64 `json:"seconds"`
	MessagesPerSec float64 `json:"messages_per_second"`
	MBPerSec       float64 `json:"mb_per_second"`
	// Peaks is the peak RSS per kind of process.
	Peaks []Peak `json:"peak_rss"`
	// CPU is the user and system time of the tool's processes; ServerCPU
	// that of both Dovecot servers during the run, SourceCPU and TargetCPU
	// its parts.
	CPU       float64 `json:"cpu_seconds"`
	ServerCPU float64 `json:"dovecot_cpu_seconds"`
	SourceCPU float64 `json:"dovecot_source_cpu_seconds"`
	TargetCPU float64 `json:"dovecot_target_cpu_seconds"`
	// TargetMessages and TargetBytes are what the target holds after it.
	TargetMessages int           `json:"target_messages"`
	TargetBytes    int64         `json:"target_bytes"`
	Verify         *Verification `json:"verification,omitempty"`
	Notes          []string      `json:"notes,omitempty"`
	Error          string        `json:"error,omitempty"`
}

func (res *Result) setTime(d time.Duration) {
	res.Seconds = d.Seconds()
	if res.Seconds > 0 {
		res.MessagesPerSec = float64(res.Messages) / res.Seconds
		res.MBPerSec = float64(res.Bytes) / 1e6 / res.Seconds
	}
}

// Peak is the largest peak RSS among Count processes of one kind.
type Peak struct {
	Process string `json:"process"`
	KiB     int64  `json:"kib"`
	Count   int    `json:"processes"`
}

// Verification is the outcome of mailferry's verification of a target.
type Verification struct {
	OK          bool           `json:"ok"`
	Mailboxes   int            `json:"mailboxes"`
	Messages    int            `json:"messages"`
	Seconds     float64        `json:"seconds"`
	Differences map[string]int `json:"differences,omitempty"`
	Errors      []string       `json:"errors,omitempty"`
}

// String says whether the verification passed and what differed.
func (v *Verification) String() string {
	if v == nil {
		return "not run"
	}
	if v.OK {
		return fmt.Sprintf("passed (%d mailboxes, %d messages, %.1f s)", v.Mailboxes, v.Messages, v.Seconds)
	}
	kinds := make([]string, 0, len(v.Differences))
	total := 0
	for k, n := range v.Differences {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
		total += n
	}
	sort.Strings(kinds)
	s := "FAILED"
	if total > 0 {
		s += fmt.Sprintf(": %d differences (%s)", total, strings.Join(kinds, ", "))
	}
	if len(v.Errors) > 0 {
		s += fmt.Sprintf("; %d mailboxes not compared, first: %s", len(v.Errors), v.Errors[0])
	}
	return s
}

// WriteText writes the report as a table with notes below it.
func (rep *Report) WriteText(w io.Writer) {
	c := rep.Corpus
	fmt.Fprintf(w, "corpus: %d mailboxes, %d folders, %d messages, %.1f MB (median %.1f kB, largest %.1f MB, %d over 1 MB), seed %d\n",
		c.Mailboxes, c.Folders, c.Messages, float64(c.Bytes)/1e6, float64(c.Median)/1e3, float64(c.Largest)/1e6, c.Over1MB, c.Seed)
	fmt.Fprintf(w, "each tool: fresh target Dovecot, %d mailboxes at once; MB = 10^6 bytes; wall time excludes verification\n", rep.Parallel)
	fmt.Fprintf(w, "machine: %d CPUs, load average %.1f before, %.1f after\n\n", rep.CPUs, rep.LoadBefore, rep.LoadAfter)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "tool\tmessages\tMB\tseconds\tmessages/s\tMB/s\ton target\ttool CPU s\tdovecot CPU s (source+target)\tpeak RSS")
	for _, res := range rep.Results {
		if res.Seconds == 0 {
			fmt.Fprintf(tw, "%s\t%d\t%.1f\t-\t-\t-\t-\t-\t-\t-\n", res.Tool, res.Messages, float64(res.Bytes)/1e6)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%.1f\t%.2f\t%d msgs, %.1f MB\t%.1f\t%.1f (%.1f+%.1f)\t%s\n",
			res.Tool, res.Messages, float64(res.Bytes)/1e6, res.Seconds, res.MessagesPerSec, res.MBPerSec,
			res.TargetMessages, float64(res.TargetBytes)/1e6, res.CPU, res.ServerCPU, res.SourceCPU, res.TargetCPU, peaks(res.Peaks))
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, res := range rep.Results {
		if res.Verify != nil || res.Tool == "mailferry" {
			fmt.Fprintf(w, "%s verification: %s\n", res.Tool, res.Verify)
		}
	}
	for _, res := range rep.Results {
		for _, n := range res.Notes {
			fmt.Fprintf(w, "note: %s: %s\n", res.Tool, n)
		}
	}
	for _, res := range rep.Results {
		if res.Error != "" {
			fmt.Fprintf(w, "error: %s: %s\n", res.Tool, res.Error)
		}
	}
}

// loadAverage returns the 1-minute load average, 0 when unknown.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

func peaks(ps []Peak) string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		s := fmt.Sprintf("%s %.1f MiB", p.Process, float64(p.KiB)/1024)
		if p.Count > 1 {
			s += fmt.Sprintf(" (largest of %d processes)", p.Count)
		}
		out = append(out, s)
	}
	return strings.Join(out, ", ")
}
