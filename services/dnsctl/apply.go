package dnsctl

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/services/dnsctl/journal"
	"github.com/mailferry/mailferry/services/dnsctl/plan"
	"github.com/mailferry/mailferry/services/dnsctl/records"
	"github.com/mailferry/mailferry/services/dnsctl/update"
	"github.com/mailferry/mailferry/shared/event"
)

// ErrThreshold is returned when a run would change more domains than the
// safety threshold allows without Force.
var ErrThreshold = errors.New("safety threshold exceeded")

// applyingLease is how long an entry in state applying belongs to the run
// that wrote it; an older one was left by a run that died.
const applyingLease = 2 * time.Minute

// ApplyOptions tune Apply, LowerTTL and RestoreTTLs.
type ApplyOptions struct {
	// DryRun reports what would change and changes nothing.
	DryRun bool
	// Force lifts the safety threshold.
	Force bool
	// Replan ignores stored plans and plans every domain anew.
	Replan bool
	// Verify waits, after applying, until every server serves the change.
	Verify bool
}

// planned is a plan with the id of the run that made it.
type planned struct {
	id string
	plan.Domain
}

// Apply carries out the plan of every domain: the stored one when fresh
// enough, else a new one.
func (e *Engine) Apply(ctx context.Context, domains []string, o ApplyOptions) (*Report, error) {
	start := time.Now()
	plans := e.plansFor(ctx, domains, o.Replan)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	if err := e.checkThreshold(plans, o.Force); err != nil {
		return nil, err
	}
	r := newReport("apply", len(plans))
	e.forEach(ctx, "apply", len(plans), func(ctx context.Context, i int) {
		r.Results[i] = e.applyPlanned(ctx, plans[i], o.DryRun)
	})
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	if o.Verify && !o.DryRun {
		var applied []string
		for _, res := range r.Results {
			if res.Outcome == Switched || res.Outcome == Unchanged {
				applied = append(applied, res.Domain)
			}
		}
		v, err := e.Verify(ctx, applied)
		if err != nil {
			return nil, err
		}
		r.Merge(v)
	}
	return r.finish(start), nil
}

func (e *Engine) plansFor(ctx context.Context, domains []string, replan bool) []planned {
	out := make([]planned, len(domains))
	fresh := newPlanID(e.now())
	e.forEach(ctx, "plan", len(domains), func(ctx context.Context, i int) {
		if !replan {
			s, err := e.Journal.Plan(ctx, domains[i])
			switch {
			case err != nil:
				e.Log.Warn().Err(err).Str("domain", domains[i]).Msg("stored plan unreadable, planning anew")
			case s != nil && e.now().Sub(s.PlannedAt) <= e.PlanMaxAge:
				out[i] = planned{id: s.ID, Domain: s.Domain}
				return
			case s != nil:
				e.Log.Info().Str("domain", domains[i]).Time("planned_at", s.PlannedAt).Msg("stored plan older than plan_max_age, planning anew")
			}
		}
		out[i] = planned{id: fresh, Domain: e.planOne(ctx, domains[i])}
	})
	return out
}

func (e *Engine) checkThreshold(plans []planned, force bool) error {
	n := 0
	for _, p := range plans {
		if p.Action == plan.Switch {
			n++
		}
	}
	if force || len(plans) < minThresholdDomains {
		return nil
	}
	if 100*n > e.MaxChangePercent*len(plans) {
		return fmt.Errorf("%w: the run would change %d of %d domains (%d%%), more than max_change_percent %d%%; review the plan, then pass --force",
			ErrThreshold, n, len(plans), 100*n/len(plans), e.MaxChangePercent)
	}
	return nil
}

func (e *Engine) applyPlanned(ctx context.Context, p planned, dryRun bool) Result {
	switch {
	case p.Action != plan.Switch:
		if !dryRun {
			if err := e.publish(ctx, event.SwitchSkipped(p.Domain.Domain, p.Serial, SkippedData{Code: p.Code, Reason: p.Reason})); err != nil {
				return e.failed(ctx, p.Domain.Domain, "plan", err)
			}
		}
		return Result{Domain: p.Domain.Domain, Outcome: Skipped, Code: p.Code, Reason: p.Reason}
	case dryRun:
		return Result{Domain: p.Domain.Domain, Outcome: WouldSwitch, Changes: p.Changes}
	}
	return e.applyOne(ctx, p)
}

// applyOne journals the old records, sends the update and reads back
// what the primary serves, which alone says what happened: an update that
// timed out may have been applied, one whose prerequisite failed may find
// the records already switched by an earlier run.
func (e *Engine) applyOne(ctx context.Context, p planned) Result {
	domain := p.Domain.Domain
	log := e.Log.With().Str("domain", domain).Str("plan_id", p.id).Logger()
	prev, err := e.journalApplying(ctx, p)
	if err != nil {
		return e.failed(ctx, domain, "apply", err)
	}
	sendErr := e.send(ctx, domain, p.Changes)
	match, detail, err := e.compare(ctx, p.Changes, false)
	if err != nil {
		// The records are unknown: leave the entry applying, so a later
		// run or a rollback looks at the records again.
		return e.failed(ctx, domain, "apply", fmt.Errorf("update %s sent (%v) but its result cannot be read: %w", domain, sendErr, err))
	}
	if match == matchNew {
		return e.applied(ctx, log, p, sendErr != nil)
	}
	e.restore(ctx, domain, prev, sendErr, detail)
	switch {
	case sendErr == nil:
		err = fmt.Errorf("update %s: the primary answered NOERROR but serves other records: %s", domain, detail)
	case errors.Is(sendErr, update.ErrPrerequisite) && match == matchOther:
		err = fmt.Errorf("%s changed since it was planned (%s), not overwritten: %s", domain, p.PlannedAt.Format(time.RFC3339), detail)
	default:
		err = sendErr
	}
	return e.failed(ctx, domain, "apply", err)
}

func (e *Engine) send(ctx context.Context, domain string, changes []records.Change) error {
	m, err := update.Message(domain, changes)
	if err != nil {
		return err
	}
	if e.Limiter != nil {
		if err := e.Limiter.Wait(ctx); err != nil {
			return fmt.Errorf("update %s: %w", domain, err)
		}
	}
	return e.Sender.Send(ctx, m)
}

// journalApplying records the old RRsets before the update and returns
// the entry as it was. An entry already switched to the same records is
// left as it is: it holds the records from before the first switch.
func (e *Engine) journalApplying(ctx context.Context, p planned) (journal.Entry, error) {
	var prev journal.Entry
	_, err := e.Journal.Modify(ctx, p.Domain.Domain, func(en *journal.Entry) error {
		prev = *en
		if en.State == journal.Applying && e.now().Sub(en.UpdatedAt) < applyingLease {
			return fmt.Errorf("journal %s: another dnsctl run is applying it since %s; retry after %s",
				p.Domain.Domain, en.UpdatedAt.Format(time.RFC3339), applyingLease)
		}
		if en.Switched() && sameNew(en.Changes, p.Changes) {
			return nil
		}
		lowered := en.Lowered
		*en = journal.Entry{Domain: p.Domain.Domain, State: journal.Applying, Changes: p.Changes, PlanID: p.id, OldTTL: p.OldTTL, Lowered: lowered}
		return nil
	})
	return prev, err
}

// restore puts back the entry a failed update found, noting the failure.
func (e *Engine) restore(ctx context.Context, domain string, prev journal.Entry, sendErr error, detail string) {
	_, err := e.Journal.Modify(ctx, domain, func(en *journal.Entry) error {
		lowered := en.Lowered
		*en = prev
		en.Domain, en.Lowered = domain, lowered
		en.Error = fmt.Sprintf("apply failed: %v; records: %s", sendErr, detail)
		return nil
	})
	if err != nil {
		e.Log.Error().Err(err).Str("domain", domain).Msg("restore journal entry")
	}
}

func (e *Engine) applied(ctx context.Context, log zerolog.Logger, p planned, already bool) Result {
	domain := p.Domain.Domain
	serial, err := e.Client.Serial(ctx, e.server(), domain)
	if err != nil {
		return e.failed(ctx, domain, "apply", fmt.Errorf("applied, but reading the serial failed: %w", err))
	}
	now := e.now()
	en, err := e.Journal.Modify(ctx, domain, func(en *journal.Entry) error {
		en.Error = ""
		if en.Switched() {
			return nil // an earlier run switched it; its times stand
		}
		en.State, en.AppliedAt, en.Serial = journal.Applied, now, serial
		if len(en.Changes) == 0 {
			en.Changes, en.PlanID, en.OldTTL = p.Changes, p.id, p.OldTTL
		}
		// Provisional until verification: the secondaries may lag.
		en.OldTTLExpiresAt = en.ExpiresAt(now)
		return nil
	})
	if err != nil {
		return e.failed(ctx, domain, "apply", err)
	}
	out := Result{Domain: domain, Outcome: Switched, Serial: en.Serial}
	if already {
		out.Outcome, out.Reason = Unchanged, "already applied: the records are the planned new ones"
	}
	log.Info().Str("outcome", string(out.Outcome)).Uint32("serial", en.Serial).Msg("domain applied")
	return out
}

// failed logs and publishes a failure and returns its result.
func (e *Engine) failed(ctx context.Context, domain, phase string, err error) Result {
	e.Log.Warn().Err(err).Str("domain", domain).Str("phase", phase).Msg("domain failed")
	res := Result{Domain: domain, Outcome: Failed, Error: err.Error()}
	if perr := e.publish(ctx, event.SwitchFailed(domain, e.now(), FailedData{Phase: phase, Reason: err.Error()})); perr != nil {
		e.Log.Error().Err(perr).Str("domain", domain).Msg("failure not announced")
		res.Error += " (" + perr.Error() + ")"
	}
	return res
}

func sameNew(a, b []records.Change) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].New.Equal(b[i].New) {
			return false
		}
	}
	return true
}
