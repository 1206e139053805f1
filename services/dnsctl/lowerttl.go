package dnsctl

import (
	"context"
	"fmt"
	"time"

	"github.com/mailferry/mailferry/services/dnsctl/journal"
	"github.com/mailferry/mailferry/services/dnsctl/plan"
	"github.com/mailferry/mailferry/services/dnsctl/records"
)

// LowerTTL sets the TTL of the mail-routing RRsets (MX and the mail hosts'
// A, AAAA, CNAME) of every domain a switch would change to at most ttl,
// ahead of the cutover, so that the switch reaches resolvers within ttl.
// The journal records when the previous TTL runs out.
func (e *Engine) LowerTTL(ctx context.Context, domains []string, ttl uint32, o ApplyOptions) (*Report, error) {
	start := time.Now()
	plans := e.plansFor(ctx, domains, true)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("lower-ttl: %w", err)
	}
	if err := e.checkThreshold(plans, o.Force); err != nil {
		return nil, err
	}
	r := newReport("lower-ttl", len(plans))
	e.forEach(ctx, "lower-ttl", len(plans), func(ctx context.Context, i int) {
		r.Results[i] = e.lowerOne(ctx, plans[i].Domain, ttl, o.DryRun)
	})
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("lower-ttl: %w", err)
	}
	return r.finish(start), nil
}

func (e *Engine) lowerOne(ctx context.Context, d plan.Domain, ttl uint32, dryRun bool) Result {
	if d.Action != plan.Switch {
		return Result{Domain: d.Domain, Outcome: Skipped, Code: d.Code, Reason: d.Reason}
	}
	changes, from := ttlChanges(d.Changes, ttl)
	switch {
	case len(changes) == 0:
		return Result{Domain: d.Domain, Outcome: Unchanged, Reason: fmt.Sprintf("mail records already have a TTL of at most %d", ttl)}
	case dryRun:
		return Result{Domain: d.Domain, Outcome: WouldSwitch, Changes: changes}
	}
	sendErr := e.send(ctx, d.Domain, changes)
	m, detail, err := e.compare(ctx, changes, true)
	switch {
	case err != nil:
		return e.failed(ctx, d.Domain, "lower-ttl", err)
	case m != matchNew && sendErr != nil:
		return e.failed(ctx, d.Domain, "lower-ttl", fmt.Errorf("%w (%s)", sendErr, detail))
	case m != matchNew:
		return e.failed(ctx, d.Domain, "lower-ttl", fmt.Errorf("lower-ttl %s: NOERROR but the primary serves %s", d.Domain, detail))
	}
	now := e.now()
	_, err = e.Journal.Modify(ctx, d.Domain, func(en *journal.Entry) error {
		held := now.Add(time.Duration(from) * time.Second)
		if en.Lowered != nil && en.Lowered.HeldUntil.After(held) {
			held = en.Lowered.HeldUntil
		}
		en.Lowered = &journal.Lowering{At: now, From: from, To: ttl, HeldUntil: held}
		return nil
	})
	if err != nil {
		return e.failed(ctx, d.Domain, "lower-ttl", err)
	}
	e.Log.Info().Str("domain", d.Domain).Uint32("from", from).Uint32("to", ttl).Msg("ttl lowered")
	return Result{Domain: d.Domain, Outcome: Lowered, Reason: fmt.Sprintf("TTL %d -> %d; old TTL runs out at %s", from, ttl, now.Add(time.Duration(from)*time.Second).Format(time.RFC3339))}
}

// ttlChanges rewrites the existing mail-routing RRsets of a switch with
// the lower TTL and returns the longest TTL they had.
func ttlChanges(changes []records.Change, ttl uint32) ([]records.Change, uint32) {
	var out []records.Change
	var from uint32
	for _, c := range changes {
		if !mailRouting(c.Type()) || !c.Old.Exists() || c.Old.TTL <= ttl {
			continue
		}
		lower := c.Old
		lower.TTL = ttl
		out = append(out, records.Change{Old: c.Old, New: lower})
		from = max(from, c.Old.TTL)
	}
	return out, from
}
