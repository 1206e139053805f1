package dnsctl

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mailferry/mailferry/services/dnsctl/journal"
	"github.com/mailferry/mailferry/services/dnsctl/records"
	"github.com/mailferry/mailferry/services/dnsctl/update"
	"github.com/mailferry/mailferry/shared/event"
)

// WouldRollBack is the outcome of a rollback dry run.
const WouldRollBack Outcome = "would_roll_back"

// Rollback restores the journaled records of the given domains, or of
// every journaled domain when domains is nil. Each update requires the
// records dnsctl wrote to still be there, so a later manual edit is never
// overwritten.
func (e *Engine) Rollback(ctx context.Context, domains []string, dryRun bool) (*Report, error) {
	start := time.Now()
	entries, err := e.entries(ctx, domains)
	if err != nil {
		return nil, err
	}
	r := newReport("rollback", len(entries))
	e.forEach(ctx, "rollback", len(entries), func(ctx context.Context, i int) {
		r.Results[i] = e.rollbackOne(ctx, entries[i], dryRun)
	})
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("rollback: %w", err)
	}
	return r.finish(start), nil
}

// entryOf pairs a domain with its journal entry (nil when it has none).
type entryOf struct {
	domain string
	entry  *journal.Entry
}

func (e *Engine) entries(ctx context.Context, domains []string) ([]entryOf, error) {
	var out []entryOf
	if domains == nil {
		all, err := e.Journal.Entries(ctx)
		if err != nil {
			return nil, err
		}
		for _, en := range all {
			out = append(out, entryOf{en.Domain, en})
		}
		return out, nil
	}
	for _, d := range domains {
		en, err := e.Journal.Get(ctx, d)
		if err != nil {
			return nil, err
		}
		out = append(out, entryOf{d, en})
	}
	return out, nil
}

func (e *Engine) rollbackOne(ctx context.Context, x entryOf, dryRun bool) Result {
	en := x.entry
	if en == nil || (!en.Switched() && en.State != journal.Applying) {
		state := "no journal entry"
		if en != nil && en.State != "" {
			state = "journal state " + string(en.State)
		}
		return Result{Domain: x.domain, Outcome: Unchanged, Reason: "nothing to roll back (" + state + ")"}
	}
	back := reverse(en.Changes)
	if dryRun {
		return Result{Domain: x.domain, Outcome: WouldRollBack, Changes: back}
	}
	sendErr := e.send(ctx, x.domain, back)
	m, detail, err := e.compare(ctx, back, false)
	switch {
	case err != nil:
		return e.failed(ctx, x.domain, "rollback", fmt.Errorf("rollback %s sent (%v) but its result cannot be read: %w", x.domain, sendErr, err))
	case m == matchNew:
		return e.rolledBack(ctx, x.domain, sendErr != nil)
	case sendErr == nil:
		err = fmt.Errorf("rollback %s: the primary answered NOERROR but serves other records: %s", x.domain, detail)
	case errors.Is(sendErr, update.ErrPrerequisite):
		err = fmt.Errorf("%s changed since dnsctl switched it, not rolled back: %s", x.domain, detail)
	default:
		err = sendErr
	}
	return e.failed(ctx, x.domain, "rollback", err)
}

func (e *Engine) rolledBack(ctx context.Context, domain string, already bool) Result {
	serial, err := e.Client.Serial(ctx, e.server(), domain)
	if err != nil {
		return e.failed(ctx, domain, "rollback", fmt.Errorf("rolled back, but reading the serial failed: %w", err))
	}
	now := e.now()
	if _, err := e.Journal.Modify(ctx, domain, func(en *journal.Entry) error {
		en.State, en.RolledBackAt, en.Error = journal.RolledBack, now, ""
		return nil
	}); err != nil {
		return e.failed(ctx, domain, "rollback", err)
	}
	if err := e.publish(ctx, event.RolledBack(domain, RolledBackData{Serial: serial, RolledBackAt: now})); err != nil {
		return e.failed(ctx, domain, "rollback", err)
	}
	e.Log.Info().Str("domain", domain).Uint32("serial", serial).Bool("already", already).Msg("domain rolled back")
	res := Result{Domain: domain, Outcome: RolledBack, Serial: serial}
	if already {
		res.Outcome, res.Reason = Unchanged, "already rolled back: the journaled records are in place"
	}
	return res
}

func reverse(changes []records.Change) []records.Change {
	out := make([]records.Change, len(changes))
	for i, c := range changes {
		out[i] = c.Reverse()
	}
	return out
}
