package dnsctl

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/mailferry/mailferry/services/dnsctl/authdns"
	"github.com/mailferry/mailferry/services/dnsctl/plan"
)

// PlanReport is the plan of a run over many domains.
type PlanReport struct {
	ID        string        `json:"id"`
	CreatedAt time.Time     `json:"created_at"`
	Domains   []plan.Domain `json:"domains"`
	// Totals counts "switch" and each skip code.
	Totals map[string]int `json:"totals"`
	Took   time.Duration  `json:"took_ns"`
}

// ToSwitch counts the domains the plan switches.
func (p *PlanReport) ToSwitch() int { return p.Totals[string(plan.Switch)] }

// Plan reads and plans every domain. With store, the plan is saved in the
// journal for apply to carry out with these very old values as
// prerequisites.
func (e *Engine) Plan(ctx context.Context, domains []string, store bool) (*PlanReport, error) {
	start := time.Now()
	r := &PlanReport{ID: newPlanID(e.now()), CreatedAt: e.now(), Domains: make([]plan.Domain, len(domains))}
	e.forEach(ctx, "plan", len(domains), func(ctx context.Context, i int) {
		r.Domains[i] = e.planOne(ctx, domains[i])
	})
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	if store {
		for _, d := range r.Domains {
			if err := e.Journal.SavePlan(ctx, r.ID, d); err != nil {
				return nil, err
			}
		}
	}
	r.Totals = planTotals(r.Domains)
	r.Took = time.Since(start)
	e.Log.Info().Str("plan_id", r.ID).Int("domains", len(domains)).Int("switch", r.ToSwitch()).Dur("took", r.Took).Msg("planned")
	return r, nil
}

func planTotals(ds []plan.Domain) map[string]int {
	t := map[string]int{}
	for _, d := range ds {
		if d.Action == plan.Switch {
			t[string(plan.Switch)]++
		} else {
			t[d.Code]++
		}
	}
	return t
}

// planOne reads a domain and plans it; read failures become skips with
// the reason.
func (e *Engine) planOne(ctx context.Context, domain string) plan.Domain {
	s, err := e.Reader.Snapshot(ctx, domain)
	if errors.Is(err, authdns.ErrNotAuthoritative) {
		return plan.Skipped(domain, plan.CodeNotServed, err.Error())
	}
	if err != nil {
		return plan.Skipped(domain, plan.CodeReadFailed, err.Error())
	}
	d := e.Policy.Decide(s)
	e.Log.Debug().Str("domain", d.Domain).Str("action", string(d.Action)).Str("code", d.Code).Msg("domain planned")
	return d
}

func newPlanID(now time.Time) string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return now.Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}
