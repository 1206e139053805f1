// Package bench measures a whole mailferry migration between two real
// Dovecot servers and compares it, on the same machine and corpus and in
// one sitting, with Dovecot's own migration (doveadm backup -R imapc:) and
// with mbsync.
//
// It generates a deterministic corpus (lognormal sizes, median about 8 kB,
// with a tail of messages of several MB up to -max-size grown until the
// corpus totals -volume; nested and non-ASCII folders, random flags,
// keywords and dates) into a source Dovecot. Then, -rounds times, it runs
// every tool in turn, each on a fresh, empty target Dovecot:
//
//   - mailferry "services": the extractor and the loader as separate
//     processes of the mailferry binary, connected through an embedded NATS
//     server that the benchmark process hosts; the copy and mailferry's
//     verification (run by the benchmark) are timed separately;
//   - mailferry "migrate": the all-in-one `mailferry migrate -json` as
//     users run it, one process with its own embedded NATS; its wall time
//     is from start to exit, its copy and verification times are the ones
//     it reports (CopyTook, VerifyTook);
//   - doveadm and mbsync, one process per mailbox, at each of
//     -compare-parallel mailboxes at once.
//
// It reports per run the copy, verification and total wall time, messages/s,
// MB/s, peak RSS and CPU seconds per process and of both Dovecots, then the
// best run of each tool and the ratios of mailferry migrate to doveadm; as
// text, as one JSON document (-json) or with the summary as a Markdown table
// (-markdown). The comparison tools' targets are verified with mailferry's
// verification too, for information. With -pprof it writes CPU and heap
// profiles of the services run's extractor, loader (through
// daemon.PprofDirEnv) and of itself (the embedded NATS server), and the
// pass's timeline.
//
// It needs root and Debian's dovecot-imapd; mbsync comes from the Debian
// package isync; GNU time (Debian package time) measures the peak RSS of
// the other processes it starts.
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
	"slices"
	"strconv"
	"strings"
	"sync"
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
	// maxRounds bounds -rounds.
	maxRounds = 20
)

// The two ways mailferry runs (-modes).
const (
	modeServices = "services"
	modeMigrate  = "migrate"
)

// Sub-directories of the work directory: the source, and one directory
// per run below runsDir.
const (
	sourceDir = "source"
	runsDir   = "runs"
)

var workDirs = []string{sourceDir, runsDir}

// options are the parsed flags.
type options struct {
	mailboxes       int
	messages        int
	maxSize         int64
	volume          int64
	seed            uint64
	keep            bool
	modes           []string
	compare         []string
	compareParallel []int
	work            string
	bin             string
	parallel        int
	rounds          int
	timeout         time.Duration
	verifyOthers    bool
	json            bool
	markdown        bool
	pprof           string
}

// Main runs the benchmark with command-line args (without the command
// name), printing the report to stdout (with -json only the JSON document,
// the text going to stderr) and progress to stderr. It returns an error
// when a mailferry run failed or did not verify; a failing comparison tool
// is reported, not an error.
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
		fmt.Fprint(fs.Output(), `usage: mailferry-lab bench [flags]

Generates a corpus of -messages messages totalling -volume in a source
Dovecot, then -rounds times, each tool on a fresh empty target Dovecot:
migrates it with mailferry (-modes: "services" = extractor and loader as
separate processes with an embedded NATS in the bench; "migrate" = the
all-in-one mailferry migrate) at -parallel mailboxes at once, verifying, and
with doveadm backup -R imapc: and mbsync at each of -compare-parallel.
Reports copy, verification and total time, peak RSS and CPU per process,
the best run of each tool and the ratios to doveadm. Needs root.

flags:
`)
		fs.PrintDefaults()
	}
	o := &options{maxSize: 25_000_000, volume: defaultVolume}
	fs.IntVar(&o.mailboxes, "mailboxes", 20, "number of mailboxes")
	fs.IntVar(&o.messages, "messages", 10000, "number of messages over all mailboxes")
	fs.Var((*byteSize)(&o.maxSize), "max-size", "largest message (`SIZE`: bytes, or with kB, MB, GB, KiB, MiB, GiB)")
	fs.Var((*byteSize)(&o.volume), "volume", "total size of the corpus (`SIZE`, default 600MB): the tail of messages of several MB grows to reach it")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the generated corpus")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (servers' mail, NATS stores, logs)")
	modes := fs.String("modes", modeServices+","+modeMigrate, "how mailferry runs, comma-separated: services (extractor and loader processes, NATS in the bench), migrate (all-in-one)")
	compare := fs.String("compare", toolDoveadm+","+toolMbsync, "comparison tools, comma-separated (doveadm, mbsync), or none")
	compareParallel := fs.String("compare-parallel", "1,2", "mailboxes at once of the comparison tools: each value is a run of its own (`N,N...`)")
	fs.StringVar(&o.work, "work", "", "work `DIR` (default: a new directory under "+os.TempDir()+")")
	fs.StringVar(&o.bin, "bin", "", "mailferry binary that runs the services and migrate (default: next to this one, on PATH, or built from source)")
	fs.IntVar(&o.parallel, "parallel", 4, "mailboxes mailferry migrates at once (extractor and loader concurrency)")
	fs.IntVar(&o.rounds, "rounds", 2, "times every run is repeated, alternating, against the same source")
	fs.DurationVar(&o.timeout, "timeout", time.Hour, "bound of each tool's run and verification")
	fs.BoolVar(&o.verifyOthers, "verify-others", true, "verify the comparison tools' targets with mailferry's verification too")
	fs.BoolVar(&o.json, "json", false, "print the report as one JSON document on stdout (the text goes to stderr)")
	fs.BoolVar(&o.markdown, "markdown", false, "also print the summary as a Markdown table")
	fs.StringVar(&o.pprof, "pprof", "", "write CPU and heap profiles of mailferry's services run (extractor, loader, this process with the embedded NATS) and of its verification, and the pass's timeline, into `DIR` (a sub-directory per round with -rounds > 1)")
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
	case o.volume < minVolume(o.messages, o.maxSize) || o.volume > int64(o.messages)*o.maxSize/4:
		return nil, fmt.Errorf("bench: -volume %d: want %d to %d bytes for %d messages of at most %d bytes "+
			"(at least about the mean lognormal size each plus the largest, at most a quarter of the largest each)",
			o.volume, minVolume(o.messages, o.maxSize), int64(o.messages)*o.maxSize/4, o.messages, o.maxSize)
	case o.parallel < 1:
		return nil, fmt.Errorf("bench: -parallel %d: want at least 1", o.parallel)
	case o.rounds < 1 || o.rounds > maxRounds:
		return nil, fmt.Errorf("bench: -rounds %d: want 1 to %d", o.rounds, maxRounds)
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
	for _, m := range splitList(*modes) {
		switch m {
		case modeServices, modeMigrate:
			if !slices.Contains(o.modes, m) {
				o.modes = append(o.modes, m)
			}
		default:
			return nil, fmt.Errorf("bench: -modes: unknown mode %q (want services, migrate)", m)
		}
	}
	if len(o.modes) == 0 {
		return nil, errors.New("bench: -modes: want services, migrate or both")
	}
	for _, t := range splitList(*compare) {
		switch t {
		case "none":
		case toolDoveadm, toolMbsync:
			if !slices.Contains(o.compare, t) {
				o.compare = append(o.compare, t)
			}
		default:
			return nil, fmt.Errorf("bench: -compare: unknown tool %q (want doveadm, mbsync or none)", t)
		}
	}
	for _, v := range splitList(*compareParallel) {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > o.mailboxes {
			return nil, fmt.Errorf("bench: -compare-parallel: %q: want numbers from 1 to -mailboxes (%d)", v, o.mailboxes)
		}
		if !slices.Contains(o.compareParallel, n) {
			o.compareParallel = append(o.compareParallel, n)
		}
	}
	if len(o.compare) > 0 && len(o.compareParallel) == 0 {
		return nil, errors.New("bench: -compare-parallel: want at least one number")
	}
	return o, nil
}

// splitList splits a comma-separated flag value, without blanks.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
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
	// pprofDir is where this round's profiles go, "" without -pprof.
	pprofDir string
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
	r.src, err = dovecottest.Start(sctx, filepath.Join(r.work, sourceDir), r.serverOptions('/'))
	cancel()
	if err != nil {
		return fmt.Errorf("bench: source: %w", err)
	}
	defer r.stopServer(r.src)

	r.logf("seeding %d messages, about %.1f MB, into %d mailboxes (seed %d, max size %d bytes)",
		r.opts.messages, float64(r.opts.volume)/1e6, r.opts.mailboxes, r.opts.seed, r.opts.maxSize)
	rng := newRand(r.opts.seed)
	plans := planCorpus(r.users, r.opts.messages, r.opts.maxSize, r.opts.volume, rng)
	if r.corpus, err = seedCorpus(ctx, r.src, plans, rng, r.opts.seed); err != nil {
		return fmt.Errorf("bench: %w (source log: %s)", err, r.src.LogPath)
	}
	r.logf("seeded %d messages, %.1f MB in %d folders in %.1f s", r.corpus.Messages, float64(r.corpus.Bytes)/1e6, r.corpus.Folders, r.corpus.Seconds)
	if d := float64(r.corpus.Bytes)/float64(r.opts.volume) - 1; d < -0.1 || d > 0.1 {
		r.logf("warning: the corpus is %.1f MB, %+.0f %% off -volume", float64(r.corpus.Bytes)/1e6, 100*d)
	}

	rep := &Report{Corpus: r.corpus, Dovecot: dovecotVersion(ctx), Parallel: r.opts.parallel, CompareParallel: r.opts.compareParallel,
		Rounds: r.opts.rounds, CPUs: runtime.NumCPU(), LoadBefore: loadAverage()}
	var failed []string
	for round := 1; round <= r.opts.rounds && ctx.Err() == nil; round++ {
		r.pprofDir = r.opts.pprof
		if r.pprofDir != "" && r.opts.rounds > 1 {
			r.pprofDir = filepath.Join(r.opts.pprof, fmt.Sprintf("round%d", round))
		}
		for _, mode := range r.opts.modes {
			if ctx.Err() != nil {
				break
			}
			res := r.runMailferry(ctx, round, mode)
			rep.Results = append(rep.Results, res)
			switch {
			case res.Error != "":
				failed = append(failed, fmt.Sprintf("%s round %d: %s", res.Tool, round, res.Error))
			case res.Verify == nil || !res.Verify.OK:
				failed = append(failed, fmt.Sprintf("%s round %d: the migration did not pass verification", res.Tool, round))
			}
		}
		for _, tool := range r.opts.compare {
			for _, p := range r.opts.compareParallel {
				if ctx.Err() != nil {
					break
				}
				switch tool {
				case toolDoveadm:
					rep.Results = append(rep.Results, r.runDoveadm(ctx, round, p))
				case toolMbsync:
					rep.Results = append(rep.Results, r.runMbsync(ctx, round, p))
				}
			}
		}
	}
	rep.LoadAfter = loadAverage()
	rep.Summarize()

	text := stdout
	if r.opts.json {
		text = r.stderr
	}
	rep.WriteText(text)
	if r.opts.markdown {
		fmt.Fprintln(text)
		rep.WriteMarkdown(text)
	}
	if r.opts.keep {
		fmt.Fprintf(text, "work directory kept: %s\n", r.work)
	}
	if r.opts.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return fmt.Errorf("bench: write JSON: %w", err)
		}
	}
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("bench: %w", ctx.Err())
	case len(failed) > 0:
		return fmt.Errorf("bench: %s", strings.Join(failed, "; "))
	}
	return nil
}

// dovecotVersion is what `dovecot --version` says, "" when it fails.
func dovecotVersion(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "dovecot", "--version").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
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

// runDir is the directory of one run: runs/r<round>-<slug>.
func (r *runner) runDir(round int, slug string) string {
	return filepath.Join(r.work, runsDir, fmt.Sprintf("r%d-%s", round, slug))
}

// removeUnlessKept removes a tool's directory after its run.
func (r *runner) removeUnlessKept(dir string) {
	if !r.opts.keep {
		if err := os.RemoveAll(dir); err != nil {
			r.logf("warning: remove %s: %v", dir, err)
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
