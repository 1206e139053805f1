package dnsctl

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mailferry/mailferry/services/dnsctl/journal"
	"github.com/mailferry/mailferry/services/dnsctl/plan"
	"github.com/mailferry/mailferry/services/dnsctl/records"
	"github.com/mailferry/mailferry/services/dnsctl/update"
	"github.com/mailferry/mailferry/shared/event"
)

// Outcomes of restore-ttl.
const (
	// TTLRestored: the update set the TTL.
	TTLRestored Outcome = "ttl_restored"
	// WouldRestore: dry run.
	WouldRestore Outcome = "would_restore"
	// Refused: the domain is not switched; nothing was read or sent.
	Refused Outcome = "refused"
)

// DefaultRestoreTTL is the TTL restore-ttl sets when neither the caller
// nor dns.restore_ttl says one.
const DefaultRestoreTTL = 3600

// restorePoll is how often a run waiting for a concurrent restore of the
// same domain looks at the journal again.
const restorePoll = 100 * time.Millisecond

var (
	// errKeep: the entry is already as it should be; nothing is written.
	errKeep = errors.New("journal entry kept")
	// errRetry: the entry changed since it was read; read it again.
	errRetry = errors.New("journal entry changed")
)

// RestoreTTL sets the TTL of a switched domain's mail records (MX and the
// mail hosts' A, AAAA, CNAME as dnsctl wrote them: the records lower-ttl
// lowers) to ttl after the cutover; ttl 0 means dns.restore_ttl. It is
// what a campaign calls once the domain is drained.
//
// The domain's journal must show it switched and verified, else the
// result is Refused. The update's prerequisites require the records to
// still hold what dnsctl wrote: a record edited since the switch fails the
// domain and is not touched. The change is journaled (Entry.Restored, and
// the TTL of the written records in Entry.Changes, so that a rollback
// puts back the records and TTLs from before the switch) and announced as
// dns.ttl_restored once every server serves it. Running it again changes
// nothing; concurrent runs for one domain send one update: the first to
// claim the journal entry (compare-and-set) sends it, the others wait for
// it and report the domain unchanged.
func (e *Engine) RestoreTTL(ctx context.Context, domain string, ttl uint32) Result {
	return e.restoreOne(ctx, domain, ttl, ApplyOptions{})
}

// RestoreTTLs runs RestoreTTL over domains, for `mailferry dns
// restore-ttl`. With o.DryRun it reports the changes and makes none; with
// o.Force it also sets the TTL of a domain that is not switched and
// verified: of the records dnsctl wrote when it is applied, else of the
// mail records a switch would replace (a cutover called off after
// lower-ttl).
func (e *Engine) RestoreTTLs(ctx context.Context, domains []string, ttl uint32, o ApplyOptions) (*Report, error) {
	start := time.Now()
	r := newReport("restore-ttl", len(domains))
	e.forEach(ctx, "restore-ttl", len(domains), func(ctx context.Context, i int) {
		r.Results[i] = e.restoreOne(ctx, domains[i], ttl, o)
	})
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("restore-ttl: %w", err)
	}
	return r.finish(start), nil
}

// restoreTargets are the RRsets whose TTL a restore sets, as they must be
// served.
type restoreTargets struct {
	sets []records.RRset
	// journaled: the sets are the entry's written records, whose TTL the
	// journal then records.
	journaled bool
}

func (e *Engine) restoreOne(ctx context.Context, domain string, ttl uint32, o ApplyOptions) Result {
	d, err := CanonicalDomain(domain)
	if err != nil {
		return Result{Domain: domain, Outcome: Failed, Error: "restore-ttl: " + err.Error()}
	}
	if ttl == 0 {
		ttl = e.DefaultRestoreTTL
	}
	if ttl == 0 {
		ttl = DefaultRestoreTTL
	}
	owner := newPlanID(e.now())
	for {
		en, err := e.Journal.Get(ctx, d)
		if err != nil {
			return Result{Domain: d, Outcome: Failed, Error: err.Error()}
		}
		targets, res, ok := e.restoreTargetsOf(ctx, d, en, o.Force)
		if !ok {
			return res
		}
		changes, from, err := e.ttlChangesLive(ctx, d, targets.sets, ttl)
		if err != nil {
			return e.failed(ctx, d, "restore-ttl", err)
		}
		var prev *journal.Restoring
		if en != nil {
			prev = en.Restored
		}
		switch {
		case o.DryRun && len(changes) == 0:
			return Result{Domain: d, Outcome: Unchanged, Reason: fmt.Sprintf("mail records already have a TTL of %d", ttl)}
		case o.DryRun:
			return Result{Domain: d, Outcome: WouldRestore, Changes: changes}
		case busy(prev, owner, e.now()):
			// Another run is sending the update: wait for its outcome.
			if err := sleep(ctx, restorePoll); err != nil {
				return Result{Domain: d, Outcome: Failed, Error: fmt.Sprintf("restore-ttl %s: %v", d, err)}
			}
			continue
		case len(changes) == 0:
			res, err := e.restoreSettled(ctx, d, prev, targets, ttl, from)
			if errors.Is(err, errRetry) {
				continue
			}
			return res
		}
		res, err = e.restoreClaimed(ctx, d, owner, prev, targets, changes, ttl, from)
		if errors.Is(err, errRetry) {
			continue
		}
		return res
	}
}

// restoreTargetsOf picks the RRsets to restore, or returns the result of
// a domain that has none.
func (e *Engine) restoreTargetsOf(ctx context.Context, domain string, en *journal.Entry, force bool) (restoreTargets, Result, bool) {
	if en != nil && (en.State == journal.Verified || force && en.Switched()) {
		var t restoreTargets
		for _, c := range en.Changes {
			if restorable(c) {
				t.sets = append(t.sets, c.New)
			}
		}
		t.journaled = true
		return t, Result{}, true
	}
	if !force {
		state := "no journal entry"
		if en != nil {
			state = "journal state " + string(en.State)
			if en.State == "" {
				state = "no switch journaled"
			}
			if en.State == journal.Applied {
				state += ", not verified: run dns verify"
			}
		}
		return restoreTargets{}, Result{Domain: domain, Outcome: Refused, Code: "not_switched",
			Reason: fmt.Sprintf("not switched and verified by dnsctl (%s): restore-ttl sets the TTL after the cutover; -force sets it anyway", state)}, false
	}
	p := e.planOne(ctx, domain)
	if p.Action != plan.Switch {
		return restoreTargets{}, Result{Domain: domain, Outcome: Skipped, Code: p.Code, Reason: p.Reason}, false
	}
	var t restoreTargets
	for _, c := range p.Changes {
		if mailRouting(c.Type()) && c.Old.Exists() {
			t.sets = append(t.sets, c.Old)
		}
	}
	return t, Result{}, true
}

// restorable reports whether a journaled change wrote mail-routing records
// whose TTL restore-ttl sets.
func restorable(c records.Change) bool { return mailRouting(c.Type()) && c.New.Exists() }

// mailRouting reports whether records of type t route mail to a domain:
// the ones whose TTL lower-ttl lowers and restore-ttl restores.
func mailRouting(t string) bool {
	switch t {
	case "MX", "A", "AAAA", "CNAME":
		return true
	}
	return false
}

// ttlChangesLive reads the targets from the primary and returns the
// changes that give them ttl, and the longest TTL they have. A target
// served with other records than expected fails: it was edited since.
func (e *Engine) ttlChangesLive(ctx context.Context, domain string, targets []records.RRset, ttl uint32) ([]records.Change, uint32, error) {
	var out []records.Change
	var from uint32
	for _, t := range targets {
		got, err := e.Client.RRset(ctx, e.server(), t.Name, t.TypeCode())
		if err != nil {
			return nil, 0, fmt.Errorf("restore-ttl %s: read %s %s: %w", domain, t.Name, t.Type, err)
		}
		if !got.Equal(t) {
			return nil, 0, fmt.Errorf("restore-ttl %s: %s %s is %s, not %s as dnsctl wrote it: changed since the switch, TTL not restored",
				domain, t.Name, t.Type, brief(got), brief(t))
		}
		from = max(from, got.TTL)
		if got.TTL != ttl {
			restored := got
			restored.TTL = ttl
			out = append(out, records.Change{Old: got, New: restored})
		}
	}
	return out, from, nil
}

// busy reports whether r is a fresh claim of another run.
func busy(r *journal.Restoring, owner string, now time.Time) bool {
	return r != nil && r.Pending && r.Owner != owner && now.Sub(r.At) < applyingLease
}

// restoreClaimed claims the journal entry, sends the update, reads it
// back and journals it. errRetry means another run got there first.
func (e *Engine) restoreClaimed(ctx context.Context, domain, owner string, prev *journal.Restoring, t restoreTargets,
	changes []records.Change, ttl, from uint32) (Result, error) {
	_, err := e.Journal.Modify(ctx, domain, func(x *journal.Entry) error {
		if !sameRestoring(x.Restored, prev) {
			return errRetry
		}
		x.Restored = &journal.Restoring{At: e.now(), From: from, To: ttl, Pending: true, Owner: owner}
		return nil
	})
	switch {
	case errors.Is(err, errRetry):
		return Result{}, err
	case err != nil:
		return e.failed(ctx, domain, "restore-ttl", err), nil
	}
	sendErr := e.send(ctx, domain, changes)
	m, detail, err := e.compare(ctx, changes, true)
	switch {
	case err != nil:
		err = fmt.Errorf("restore-ttl %s sent (%v) but its result cannot be read: %w", domain, sendErr, err)
	case m == matchNew:
	case sendErr == nil:
		err = fmt.Errorf("restore-ttl %s: the primary answered NOERROR but serves %s", domain, detail)
	case errors.Is(sendErr, update.ErrPrerequisite):
		err = fmt.Errorf("%s changed since dnsctl switched it, TTL not restored: %s", domain, detail)
	default:
		err = sendErr
	}
	if err != nil {
		e.release(ctx, domain, owner, prev, err)
		return e.failed(ctx, domain, "restore-ttl", err), nil
	}
	serial, err := e.Client.Serial(ctx, e.server(), domain)
	if err != nil {
		e.release(ctx, domain, owner, prev, err)
		return e.failed(ctx, domain, "restore-ttl", fmt.Errorf("TTL restored, but reading the serial failed: %w", err)), nil
	}
	r := &journal.Restoring{At: e.now(), From: from, To: ttl, Serial: serial}
	if _, err := e.Journal.Modify(ctx, domain, func(x *journal.Entry) error {
		if x.Restored == nil || x.Restored.Owner != owner {
			return fmt.Errorf("journal %s: the restore claim was taken over by another run", domain)
		}
		x.Restored, x.Error = r, ""
		if t.journaled {
			setTTL(x.Changes, ttl)
		}
		return nil
	}); err != nil {
		return e.failed(ctx, domain, "restore-ttl", fmt.Errorf("TTL restored (serial %d), but not journaled: %w", serial, err)), nil
	}
	return e.restored(ctx, domain, r, changes), nil
}

// restored waits until every server serves the restore, then announces it.
func (e *Engine) restored(ctx context.Context, domain string, r *journal.Restoring, changes []records.Change) Result {
	servers, err := e.serversOf(ctx, domain, &nsAddrs{e: e, byHost: map[string]nsResult{}})
	if err != nil {
		return e.failed(ctx, domain, "restore-ttl", fmt.Errorf("TTL restored (serial %d, journaled); servers to check: %w", r.Serial, err))
	}
	want := &journal.Entry{Domain: domain, Serial: r.Serial, Changes: changes}
	vctx, cancel := context.WithTimeout(ctx, e.VerifyTimeout)
	defer cancel()
	for _, s := range servers {
		if err := e.waitServer(vctx, s, want); err != nil {
			return e.failed(ctx, domain, "restore-ttl", fmt.Errorf("TTL restored on the primary (serial %d, journaled) but not yet everywhere: %w", r.Serial, err))
		}
	}
	if err := e.publish(ctx, event.TTLRestored(domain, TTLRestoredData{
		Serial: r.Serial, TTL: r.To, From: r.From, RestoredAt: r.At, Servers: servers,
	})); err != nil {
		return e.failed(ctx, domain, "restore-ttl", err)
	}
	e.Log.Info().Str("domain", domain).Uint32("from", r.From).Uint32("to", r.To).Uint32("serial", r.Serial).Msg("ttl restored")
	return Result{Domain: domain, Outcome: TTLRestored, Serial: r.Serial, Servers: servers,
		Reason: fmt.Sprintf("TTL %d -> %d", r.From, r.To)}
}

// restoreSettled handles a domain whose records already have ttl: it
// journals that (once) when the journal does not say so yet, e.g. after
// a run that died between the update and the journal.
func (e *Engine) restoreSettled(ctx context.Context, domain string, prev *journal.Restoring, t restoreTargets, ttl, from uint32) (Result, error) {
	res := Result{Domain: domain, Outcome: Unchanged, Reason: fmt.Sprintf("mail records already have a TTL of %d", ttl)}
	if prev != nil && !prev.Pending && prev.To == ttl && !t.journaled {
		return res, nil
	}
	serial, err := e.Client.Serial(ctx, e.server(), domain)
	if err != nil {
		return e.failed(ctx, domain, "restore-ttl", fmt.Errorf("restore-ttl %s: reading the serial: %w", domain, err)), nil
	}
	_, err = e.Journal.Modify(ctx, domain, func(x *journal.Entry) error {
		if !sameRestoring(x.Restored, prev) {
			return errRetry
		}
		if r := x.Restored; r != nil && !r.Pending && r.To == ttl && (!t.journaled || ttlIs(x.Changes, ttl)) {
			return errKeep
		}
		r := &journal.Restoring{At: e.now(), From: from, To: ttl, Serial: serial}
		if prev != nil && prev.To == ttl && prev.From != 0 {
			r.From = prev.From
		}
		if t.journaled {
			setTTL(x.Changes, ttl)
		}
		x.Restored = r
		return nil
	})
	switch {
	case errors.Is(err, errRetry):
		return Result{}, err
	case errors.Is(err, errKeep):
		return res, nil
	case err != nil:
		return e.failed(ctx, domain, "restore-ttl", err), nil
	}
	e.Log.Info().Str("domain", domain).Uint32("ttl", ttl).Uint32("serial", serial).Msg("mail records already had the restored TTL; journaled")
	res.Serial = serial
	return res, nil
}

// release gives up a claim after a failed update, putting back the
// restore it replaced.
func (e *Engine) release(ctx context.Context, domain, owner string, prev *journal.Restoring, cause error) {
	_, err := e.Journal.Modify(ctx, domain, func(x *journal.Entry) error {
		if x.Restored == nil || x.Restored.Owner != owner || !x.Restored.Pending {
			return errKeep
		}
		x.Restored = prev
		x.Error = "restore-ttl failed: " + cause.Error()
		return nil
	})
	if err != nil && !errors.Is(err, errKeep) {
		e.Log.Error().Err(err).Str("domain", domain).Msg("release the restore-ttl claim; it expires by itself")
	}
}

// setTTL gives the written mail-routing records of changes ttl.
func setTTL(changes []records.Change, ttl uint32) {
	for i, c := range changes {
		if restorable(c) {
			changes[i].New.TTL = ttl
		}
	}
}

// ttlIs reports whether every written mail-routing record of changes has
// ttl.
func ttlIs(changes []records.Change, ttl uint32) bool {
	for _, c := range changes {
		if restorable(c) && c.New.TTL != ttl {
			return false
		}
	}
	return true
}

func sameRestoring(a, b *journal.Restoring) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.At.Equal(b.At) && a.Owner == b.Owner && a.Pending == b.Pending && a.To == b.To && a.Serial == b.Serial
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
