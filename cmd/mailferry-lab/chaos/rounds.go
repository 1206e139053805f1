package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mailferry/mailferry/cmd/mailferry/migrate"
)

// block is a run of kills in one topology: embedded (only `migrate` runs,
// with its own nats-server) or external (the nats, extractor and loader
// daemons, and now and then an attached migrate).
type block struct {
	embedded bool
	victims  []string
}

// lastWhole is how many whole-process kills in a row precede the final
// migrate (the reported failure: six kills, then one more migrate).
const lastWhole = 6

// schedule decides what is killed in which order: kills in all, whole of
// them whole migrate processes. A quarter of those (while at least
// lastWhole remain) run against the nats process, the rest embed their
// broker; the last block is lastWhole or more embedded migrates in a row.
// Service kills are spread evenly over nats, extractor and loader.
func schedule(rng *rand.Rand, kills, whole int) []block {
	attached := max(0, min(whole/4, whole-lastWhole))
	embedded := whole - attached
	var ext []string
	for i := range kills - whole {
		ext = append(ext, []string{KindNATS, KindExtract, KindLoad}[i%3])
	}
	for range attached {
		ext = append(ext, KindAttached)
	}
	rng.Shuffle(len(ext), func(i, j int) { ext[i], ext[j] = ext[j], ext[i] })

	var extBlocks, embBlocks []block
	for len(ext) > 0 {
		n := min(len(ext), 2+rng.IntN(7))
		extBlocks = append(extBlocks, block{victims: ext[:n]})
		ext = ext[n:]
	}
	last := min(embedded, lastWhole+rng.IntN(3))
	for rest := embedded - last; rest > 0; {
		n := min(rest, 1+rng.IntN(4))
		embBlocks = append(embBlocks, block{embedded: true, victims: repeat(KindMigrate, n)})
		rest -= n
	}
	// A random merge of both lists, then the final run of whole kills.
	var out []block
	for len(extBlocks)+len(embBlocks) > 0 {
		if rng.IntN(len(extBlocks)+len(embBlocks)) < len(extBlocks) {
			out, extBlocks = append(out, extBlocks[0]), extBlocks[1:]
		} else {
			out, embBlocks = append(out, embBlocks[0]), embBlocks[1:]
		}
	}
	if last > 0 {
		out = append(out, block{embedded: true, victims: repeat(KindMigrate, last)})
	}
	return out
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// describe lists the blocks briefly: "migrate×3 | nats,loader,... | …".
func describe(blocks []block) string {
	var parts []string
	for _, b := range blocks {
		if b.embedded {
			parts = append(parts, fmt.Sprintf("migrate×%d", len(b.victims)))
		} else {
			parts = append(parts, strings.Join(b.victims, ","))
		}
	}
	return strings.Join(parts, " | ")
}

// between draws a duration in [lo, hi].
func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// killLine is the one line printed per kill.
func (e *env) killLine(rep *Report, p *proc, note string) {
	rep.Kills[p.name]++
	fmt.Fprintf(e.o.Out, "chaos: kill -9 %-16s %6.2fs into run %d%s [%d/%d]\n", p.name, p.age().Seconds(), p.runs, note, rep.KillCount(), e.o.Kills)
}

// startMigrate starts a new migrate run, which enqueues a new pass.
func (e *env) startMigrate(p *proc, rep *Report) error {
	if err := p.start(); err != nil {
		return err
	}
	rep.Passes++
	return nil
}

// killMigrateWithin starts migrates until one is still running at its
// drawn moment, and kills it then. A run that ends earlier by itself
// (nothing left to do) makes the next moment earlier than its duration.
func (e *env) killMigrateWithin(ctx context.Context, rng *rand.Rand, p *proc, rep *Report, note string) error {
	lo, hi := e.o.KillAfter[0], e.o.KillAfter[1]
	for range 20 {
		if !p.running() {
			p.reap()
			if err := e.startMigrate(p, rep); err != nil {
				return err
			}
		}
		if !p.wait(ctx, between(rng, lo, hi)-p.age()) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			e.killLine(rep, p, note)
			p.kill9()
			return nil
		}
		took := p.age()
		p.reap()
		rep.SelfExits++
		fmt.Fprintf(e.o.Out, "chaos: %s run %d ended by itself after %.2fs (exit %d)\n", p.name, p.runs, took.Seconds(), p.exit)
		hi = max(took*9/10, 50*time.Millisecond)
		lo = min(lo, hi/2)
	}
	fmt.Fprintf(e.o.Out, "chaos: %s ended by itself 20 times in a row before its kill; kill skipped\n", p.name)
	return nil
}

// embeddedBlock runs migrate with its embedded broker and kills its
// process group, once per victim; nothing else runs.
func (e *env) embeddedBlock(ctx context.Context, rng *rand.Rand, victims []string, rep *Report) error {
	for range victims {
		if err := e.killMigrateWithin(ctx, rng, e.migrate, rep, " (embedded broker)"); err != nil {
			return err
		}
		sleep(ctx, between(rng, 50*time.Millisecond, 500*time.Millisecond))
	}
	return nil
}

// externalBlock runs the nats, extractor and loader daemons, starts a
// pass (enqueue or an attached migrate) and kills one victim after the
// other, restarting the daemons; then stops everything.
func (e *env) externalBlock(ctx context.Context, rng *rand.Rand, victims []string, rep *Report) error {
	defer e.stopAll()
	for _, p := range []*proc{e.nats, e.extractor, e.loader} {
		if err := p.start(); err != nil {
			return err
		}
	}
	if err := e.waitNATS(ctx); err != nil {
		return err
	}
	if rng.IntN(2) == 0 {
		if err := e.enqueue(ctx); err != nil {
			return err
		}
		rep.Passes++
	} else if err := e.startMigrate(e.attached, rep); err != nil {
		return err
	}
	for _, v := range victims {
		if v == KindAttached {
			if err := e.killMigrateWithin(ctx, rng, e.attached, rep, " (nats process)"); err != nil {
				return err
			}
		} else {
			sleep(ctx, between(rng, 200*time.Millisecond, 1500*time.Millisecond))
			p := map[string]*proc{KindNATS: e.nats, KindExtract: e.extractor, KindLoad: e.loader}[v]
			note := ""
			if e.attached.running() {
				note = " (an attached migrate runs)"
			}
			e.killLine(rep, p, note)
			p.kill9()
			sleep(ctx, between(rng, 50*time.Millisecond, 450*time.Millisecond))
			if err := p.start(); err != nil {
				return err
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := e.restartExited(rep); err != nil {
			return err
		}
		// Now and then the operator starts another pass.
		switch rng.IntN(6) {
		case 0:
			if err := e.enqueue(ctx); err != nil {
				return err
			}
			rep.Passes++
		case 1:
			if !e.attached.running() {
				if err := e.startMigrate(e.attached, rep); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// restartExited restarts daemons that ended by themselves and notes
// attached migrates that finished.
func (e *env) restartExited(rep *Report) error {
	for _, p := range []*proc{e.nats, e.extractor, e.loader} {
		if p.reap() {
			fmt.Fprintf(e.o.Out, "chaos: %s exited by itself (exit %d), restarting\n", p.name, p.exit)
			if err := p.start(); err != nil {
				return err
			}
		}
	}
	if e.attached.reap() {
		rep.SelfExits++
		fmt.Fprintf(e.o.Out, "chaos: %s run %d ended by itself after %.2fs (exit %d)\n", e.attached.name, e.attached.runs, e.attached.age().Seconds(), e.attached.exit)
	}
	return nil
}

// finalDeadline is how long the final migrate may take: three
// uninterrupted runs (or 2 MB/s plus a minute) and the time a killed
// holder keeps a job and a mailbox.
func (e *env) finalDeadline(rep *Report) time.Duration {
	if e.o.FinalTimeout > 0 {
		return e.o.FinalTimeout
	}
	ack, lease := e.o.AckWait, e.o.LeaseTTL
	if ack == 0 {
		ack = time.Minute
	}
	if lease == 0 {
		lease = 30 * time.Second
	}
	work := time.Minute + time.Duration(rep.Bytes/2e6)*time.Second
	if rep.Baseline > 0 {
		work = 3*rep.Baseline + 30*time.Second
	}
	return work + ack + lease
}

// final runs one more migrate (embedded broker) without kills, as the
// operator does to finish. When it does not end in time, its goroutines
// are dumped (SIGQUIT) and the broker's state is written next to it.
func (e *env) final(ctx context.Context, rep *Report) error {
	dir := e.o.Work
	p := &proc{name: "final-migrate", bin: e.o.Bin, args: []string{"migrate", "-json", "-c", e.embConf}, dir: dir, stdout: filepath.Join(dir, "final-migrate.json")}
	rep.FinalDeadline = e.finalDeadline(rep)
	fmt.Fprintf(e.o.Out, "chaos: final migrate (embedded broker, no kills, deadline %s) after %d passes\n", rep.FinalDeadline.Round(time.Second), rep.Passes)
	offset := fileSize(p.logPath())
	if err := e.startMigrate(p, rep); err != nil {
		return err
	}
	if !p.wait(ctx, rep.FinalDeadline) {
		rep.Final = p.age()
		if ctx.Err() != nil {
			p.kill9()
			return ctx.Err()
		}
		p.quit()
		dump := filepath.Join(dir, "final-goroutines.txt")
		text, _ := logSince(p.logPath(), offset)
		if i := strings.Index(text, "SIGQUIT"); i >= 0 {
			text = text[i:]
		}
		_ = os.WriteFile(dump, []byte(text), 0o644)
		rep.Hang = dump
		state := e.diagnose(ctx)
		fmt.Fprintf(e.o.Out, "chaos: final migrate HUNG: no end after %s; goroutines in %s, broker state in %s\n", rep.Final.Round(time.Second), dump, state)
		return fmt.Errorf("%w within %s (%d passes before it); goroutine dump %s, broker state %s, log %s",
			ErrHang, rep.FinalDeadline, rep.Passes-1, dump, state, p.logPath())
	}
	rep.Final = p.age()
	res, err := readResult(p.stdout)
	if err != nil {
		rep.Problems = append(rep.Problems, fmt.Sprintf("final migrate (exit %d, see %s): %v", p.exit, p.logPath(), err))
		return nil
	}
	for _, m := range res.Progress {
		rep.FinalAppended += m.Appended
	}
	for _, bad := range notLoaded(res) {
		rep.Problems = append(rep.Problems, "final migrate did not load "+bad)
	}
	fmt.Fprintf(e.o.Out, "chaos: final migrate took %s (exit %d), appended %d\n", rep.Final.Round(100*time.Millisecond), p.exit, rep.FinalAppended)
	return nil
}

// readResult reads `migrate -json` output.
func readResult(path string) (*migrate.Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	res := &migrate.Result{}
	if err := json.Unmarshal(b, res); err != nil {
		return nil, fmt.Errorf("no result: %w", err)
	}
	return res, nil
}

// notLoaded names the mailboxes a migrate did not load.
func notLoaded(res *migrate.Result) []string {
	var out []string
	for _, m := range res.Progress {
		if m.Phase != migrate.PhaseLoaded {
			out = append(out, fmt.Sprintf("%s (%s after %d failures: %s)", m.Mailbox, m.Phase, m.Failures, m.LastError))
		}
	}
	return out
}
