// Package chaos proves that a migration loses and duplicates nothing while
// its processes are killed, between two real Dovecot servers. It mixes two
// kinds of kill -9:
//
//   - whole-process: `mailferry migrate` (extractor, loader and, with an
//     empty nats.url, the embedded nats-server in one process) has its
//     process group killed at a random moment and a new migrate — a new
//     pass — is started, as an operator would; some of these runs attach to
//     a separate nats-server instead of embedding one;
//   - per-service: nats-server, the extractor and the loader run as
//     separate daemons (new passes come from `mailferry enqueue` or an
//     attached migrate) and one of them is killed and restarted.
//
// Both use one JetStream store, so every pass any of them started is still
// there at the end. New mail arrives in the source before every block and
// before the end. Then one more `migrate` runs without kills: it must
// finish within a deadline (a hang is reported with its goroutine dump and
// the broker's state) and the target must match the source: nothing lost,
// nothing duplicated.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/mailferry/mailferry/cmd/mailferry/verify"
)

// Kinds of kill, the keys of Report.Kills.
const (
	// KindMigrate is a whole `mailferry migrate` with its embedded broker.
	KindMigrate = "migrate"
	// KindAttached is a whole `mailferry migrate` using the separate
	// nats-server process.
	KindAttached = "migrate-attached"
	KindNATS     = "nats"
	KindExtract  = "extractor"
	KindLoad     = "loader"
)

// Options configure a chaos run.
type Options struct {
	// Bin is the mailferry binary the processes run.
	Bin string
	// Work is a directory for servers, data and logs (made 0755).
	Work string
	// Seed drives every random choice: the mail, what is killed, when.
	Seed uint64
	// Kills is the number of kill -9s, Whole of them of a whole migrate
	// process (at least 6 of those in a row just before the final run,
	// when there are 6), the rest of one service daemon.
	Kills, Whole int
	// Mailboxes and Messages size the generated mail (Messages over all
	// mailboxes); MaxSize is the largest message (long-tailed sizes,
	// default 25 MB). SharedCorpus adds ../shared/corpus when present.
	Mailboxes, Messages int
	MaxSize             int64
	SharedCorpus        bool
	// KillAfter bounds how long a migrate runs before it is killed
	// (default 1s to 5s).
	KillAfter [2]time.Duration
	// LeaseTTL and AckWait are loader.lease_ttl and nats.job_ack_wait;
	// zero keeps mailferry's defaults (30s, 1m).
	LeaseTTL, AckWait time.Duration
	// Baseline first migrates the same mail once without kills to a
	// second target, for the uninterrupted time.
	Baseline bool
	// FinalTimeout bounds the final migrate (default: from the baseline
	// or the mail's size, plus AckWait and LeaseTTL).
	FinalTimeout time.Duration
	// Out receives one line per kill and a summary.
	Out io.Writer
}

// Report is what a run found.
type Report struct {
	Seed uint64
	// Kills counts kill -9s by kind.
	Kills map[string]int
	// Passes is how many passes were started (migrate runs, enqueues).
	Passes int
	// SelfExits counts migrate runs that ended before their kill.
	SelfExits int
	// The mail; Late of the messages arrived during the run.
	Mailboxes, Messages, Late int
	Bytes, Largest            int64
	// Baseline is an uninterrupted migrate of the same mail (0: not run).
	Baseline time.Duration
	// Final is the last migrate, run without kills; FinalDeadline bounds
	// it; FinalAppended is what it still appended.
	Final, FinalDeadline time.Duration
	FinalAppended        int64
	// Hang, when set, says the final migrate did not finish in time and
	// names the file with its goroutine dump.
	Hang string
	// Took is the chaos and the final run (not the seeding).
	Took   time.Duration
	Verify *verify.Report
	// Lost and Duplicated count missing and extra target messages.
	Lost, Duplicated int
	// Problems lists every difference except target-altered line
	// endings, and every mailbox the final migrate did not load.
	Problems []string
}

// KillCount is the number of kills of any kind.
func (r *Report) KillCount() int {
	n := 0
	for _, k := range r.Kills {
		n += k
	}
	return n
}

// WholeKills is the number of whole-process kills.
func (r *Report) WholeKills() int { return r.Kills[KindMigrate] + r.Kills[KindAttached] }

// OK reports a run whose final migrate finished and whose target has no
// missing, duplicated or changed message.
func (r *Report) OK() bool { return r.Verify != nil && r.Hang == "" && len(r.Problems) == 0 }

// Summary is one line with the figures.
func (r *Report) Summary() string {
	var kinds []string
	for _, k := range []string{KindMigrate, KindAttached, KindNATS, KindExtract, KindLoad} {
		if r.Kills[k] > 0 {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, r.Kills[k]))
		}
	}
	base := "not measured"
	if r.Baseline > 0 {
		base = r.Baseline.Round(100 * time.Millisecond).String()
	}
	final := r.Final.Round(100 * time.Millisecond).String()
	if r.Hang != "" {
		final = "HUNG (over " + r.FinalDeadline.String() + ")"
	}
	return fmt.Sprintf("chaos: seed %d: %d kills (%s), %d passes; %d mailboxes, %d messages (%d arrived during the run), %.1f MB (largest %.1f MB); lost %d, duplicated %d, other problems %d; took %s; final migrate %s (appended %d), uninterrupted %s",
		r.Seed, r.KillCount(), strings.Join(kinds, ", "), r.Passes, r.Mailboxes, r.Messages, r.Late, float64(r.Bytes)/1e6, float64(r.Largest)/1e6,
		r.Lost, r.Duplicated, len(r.Problems)-r.Lost-r.Duplicated, r.Took.Round(time.Second), final, r.FinalAppended, base)
}

// ErrHang reports a final migrate that did not finish in time.
var ErrHang = errors.New("chaos: the final migrate did not finish")

// Run runs one chaos migration. The error is nil when the run got as far
// as verifying (see Report.OK), ErrHang (wrapped, naming the goroutine
// dump) when the final migrate hung, or what stopped the harness.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.MaxSize == 0 {
		o.MaxSize = 25_000_000
	}
	if o.KillAfter[1] == 0 {
		o.KillAfter = [2]time.Duration{time.Second, 5 * time.Second}
	}
	o.Whole = min(max(o.Whole, 0), o.Kills)
	rep := &Report{Seed: o.Seed, Kills: map[string]int{}}
	if err := os.MkdirAll(o.Work, 0o755); err != nil {
		return rep, err
	}
	if err := os.Chmod(o.Work, 0o755); err != nil {
		return rep, err
	}
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x5eed))
	e, err := setUp(ctx, o, rep)
	if err != nil {
		return rep, err
	}
	defer e.tearDown()
	if o.Baseline {
		if err := e.baseline(ctx, rep); err != nil {
			return rep, err
		}
	}
	blocks := schedule(rng, o.Kills, o.Whole)
	fmt.Fprintf(o.Out, "chaos: %d mailboxes, %d messages, %.1f MB (largest %.1f MB); %d kills planned in %d blocks: %s\n",
		rep.Mailboxes, rep.Messages, float64(rep.Bytes)/1e6, float64(rep.Largest)/1e6, o.Kills, len(blocks), describe(blocks))
	start := time.Now()
	defer e.stopAll()
	late := max(3, o.Messages/200)
	for i, b := range blocks {
		// New mail keeps arriving: each block's passes have some to move.
		if err := e.addMail(rng, late, rep); err != nil {
			return rep, err
		}
		var err error
		if b.embedded {
			err = e.embeddedBlock(ctx, rng, b.victims, rep)
		} else {
			err = e.externalBlock(ctx, rng, b.victims, rep)
		}
		if err != nil {
			return rep, fmt.Errorf("block %d: %w", i+1, err)
		}
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
	}
	e.stopAll()
	// And some more that only the final migrate can move.
	if err := e.addMail(rng, late, rep); err != nil {
		return rep, err
	}
	ferr := e.final(ctx, rep)
	rep.Took = time.Since(start)
	if ferr != nil && !errors.Is(ferr, ErrHang) {
		return rep, ferr
	}
	rep.Verify = verify.Mailboxes(ctx, e.direct, e.boxes)
	tally(rep)
	fmt.Fprintln(o.Out, rep.Summary())
	return rep, ferr
}

// tally counts lost and duplicated messages and lists every problem
// except messages the target stored with other line endings (reported as
// altered; not mailferry's doing).
func tally(rep *Report) {
	var out []string
	lost, dup := 0, 0
	for _, m := range rep.Verify.Mailboxes {
		if m.Error != "" {
			out = append(out, m.Source+": "+m.Error)
		}
		for _, f := range m.Folders {
			for _, d := range f.Differences {
				switch d.Kind {
				case "altered":
					continue
				case "missing":
					lost++
				case "extra":
					dup++
				}
				out = append(out, fmt.Sprintf("%s %s uid %d: %s", m.Source, d.Folder, d.UID, d.Kind))
			}
		}
	}
	rep.Lost, rep.Duplicated = lost, dup
	rep.Problems = append(out, rep.Problems...)
}
