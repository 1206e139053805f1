package migrate

import (
	"context"
	"fmt"
	"maps"
	"sync"

	"github.com/mailferry/mailferry/cmd/mailferry/verify"
	"github.com/mailferry/mailferry/services/extractor"
	"github.com/mailferry/mailferry/services/loader"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/job"
)

// verifier verifies each mailbox as soon as it is loaded, while others are
// still copied, so that the verification adds to the run only what is left
// when the last mailbox is loaded. A mailbox's verification holds one
// connection to each server: while the copy runs only the connections the
// extractor and the loader leave free are used (during), all of them
// (after) once it has ended.
type verifier struct {
	ctx   context.Context
	cfg   *config.Config
	opts  []verify.Option
	queue chan queued
	slots chan struct{}
	grow  int // slots added when the copy ends
	wg    sync.WaitGroup
	once  sync.Once // closes queue
	// check is verify.Mailbox; tests count what runs at once.
	check func(context.Context, *config.Config, job.Mailbox, ...verify.Option) verify.MailboxReport

	mu      sync.Mutex
	queued  map[string]string // mailbox → pass handed to a worker
	reports map[string]passReport
}

type queued struct {
	mb   job.Mailbox
	pass string
}

type passReport struct {
	pass string
	r    verify.MailboxReport
}

// startVerifier starts after workers for at most capacity mailboxes; during
// of them may verify while the copy runs.
func startVerifier(ctx context.Context, cfg *config.Config, opts []verify.Option, during, after, capacity int) *verifier {
	return newVerifier(ctx, cfg, opts, during, after, capacity, verify.Mailbox)
}

func newVerifier(ctx context.Context, cfg *config.Config, opts []verify.Option, during, after, capacity int,
	check func(context.Context, *config.Config, job.Mailbox, ...verify.Option) verify.MailboxReport) *verifier {
	after = max(after, 1)
	during = min(max(during, 0), after)
	v := &verifier{ctx: ctx, cfg: cfg, opts: opts,
		queue: make(chan queued, capacity), slots: make(chan struct{}, after), grow: after - during,
		queued: map[string]string{}, reports: map[string]passReport{}, check: check}
	for range during {
		v.slots <- struct{}{}
	}
	for range after {
		v.wg.Add(1)
		go v.work()
	}
	return v
}

// add hands mb, loaded by pass, to a worker unless that was done already.
// While the copy runs it must not block the event loop: a mailbox that
// finds the queue full (loaded by more passes than it has room for) is
// verified when report hands every mailbox over again.
func (v *verifier) add(mb job.Mailbox, pass string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if p, ok := v.queued[mb.SourceUser]; ok && p == pass {
		return
	}
	select {
	case v.queue <- queued{mb, pass}:
		v.queued[mb.SourceUser] = pass
	default:
	}
}

// copyDone lets every worker verify: the extractor and the loader are
// stopped and their connections closed.
func (v *verifier) copyDone() {
	for range v.grow {
		v.slots <- struct{}{}
	}
	v.grow = 0
}

func (v *verifier) work() {
	defer v.wg.Done()
	for q := range v.queue {
		select {
		case <-v.slots:
		case <-v.ctx.Done():
			continue
		}
		r := v.check(v.ctx, v.cfg, q.mb, v.opts...)
		v.slots <- struct{}{}
		v.mu.Lock()
		v.reports[q.mb.SourceUser] = passReport{q.pass, r}
		v.mu.Unlock()
	}
}

// report waits for the workers and returns the report of boxes, each
// verified for the pass that loaded it last (passes), in their order.
func (v *verifier) report(boxes []job.Mailbox, passes map[string]string) *verify.Report {
	v.mu.Lock()
	handed := maps.Clone(v.queued)
	v.mu.Unlock()
	for _, mb := range boxes {
		if p, ok := handed[mb.SourceUser]; ok && p == passes[mb.SourceUser] {
			continue
		}
		// The workers drain the queue: waiting here is waiting for them.
		select {
		case v.queue <- queued{mb, passes[mb.SourceUser]}:
		case <-v.ctx.Done():
		}
	}
	v.once.Do(func() { close(v.queue) })
	v.wg.Wait()
	rep := &verify.Report{OK: true, Mailboxes: make([]verify.MailboxReport, 0, len(boxes))}
	for _, mb := range boxes {
		pr, ok := v.reports[mb.SourceUser]
		if !ok || pr.pass != passes[mb.SourceUser] {
			// Only a cancelled run leaves a mailbox unverified.
			pr.r = verify.MailboxReport{Source: mb.SourceUser, Target: mb.TargetUser, Error: fmt.Sprintf("not verified: %v", v.ctx.Err())}
		}
		rep.Mailboxes = append(rep.Mailboxes, pr.r)
		rep.OK = rep.OK && pr.r.OK
	}
	return rep
}

// verifySlots returns how many mailboxes may be verified at once while the
// extractor and the loader run (the connections they leave free: the
// extractor holds one source connection per mailbox, the loader two target
// connections) and once they are done (verify's default: half the smaller
// of source.connections and target.connections).
func verifySlots(cfg *config.Config) (during, after int) {
	after = max(1, min(cfg.Source.Connections, cfg.Target.Connections)/2)
	es, err := extractor.LoadSettings(cfg)
	if err != nil {
		return 0, after
	}
	ls, err := loader.LoadSettings(cfg)
	if err != nil {
		return 0, after
	}
	during = min(cfg.Source.Connections-es.AtOnce(cfg), cfg.Target.Connections-2*ls.AtOnce(cfg), after)
	return max(during, 0), after
}

// verified returns how many mailboxes have been verified so far.
func (v *verifier) verified() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.reports)
}

// stop ends the workers of a run that ends before report: a worker that
// is verifying stops when the run's context ends.
func (v *verifier) stop() {
	v.once.Do(func() { close(v.queue) })
	v.wg.Wait()
}
