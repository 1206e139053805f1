package dnsctl

import (
	"time"

	"github.com/mailferry/mailferry/services/dnsctl/records"
)

// Outcome is what a run did with one domain.
type Outcome string

// Outcomes.
const (
	Switched    Outcome = "switched"     // the update was applied
	Unchanged   Outcome = "unchanged"    // already as planned: nothing sent or nothing changed
	Skipped     Outcome = "skipped"      // not eligible; Code says why
	Failed      Outcome = "failed"       // Error says why
	WouldSwitch Outcome = "would_switch" // dry run
	Verified    Outcome = "verified"     // every server serves the new records
	RolledBack  Outcome = "rolled_back"  // the journaled records are back
	Lowered     Outcome = "ttl_lowered"  // lower-ttl changed the TTLs
)

// Result is one domain's line of a report.
type Result struct {
	Domain  string  `json:"domain"`
	Outcome Outcome `json:"outcome"`
	Code    string  `json:"code,omitempty"`
	Reason  string  `json:"reason,omitempty"`
	Error   string  `json:"error,omitempty"`
	// Serial is the primary's SOA serial after the change.
	Serial uint32 `json:"serial,omitempty"`
	// OldTTLExpiresAt is when resolvers no longer send mail by the old
	// records (known once verified).
	OldTTLExpiresAt time.Time `json:"old_ttl_expires_at,omitzero"`
	// Changes are shown for dry runs.
	Changes []records.Change `json:"changes,omitempty"`
	// Servers are the servers checked by verification.
	Servers []string `json:"servers,omitempty"`
}

// Report is the result of one run over many domains.
type Report struct {
	Command string         `json:"command"`
	PlanID  string         `json:"plan_id,omitempty"`
	Results []Result       `json:"results"`
	Totals  map[string]int `json:"totals"`
	Took    time.Duration  `json:"took_ns"`
}

func newReport(cmd string, n int) *Report {
	return &Report{Command: cmd, Results: make([]Result, n), Totals: map[string]int{}}
}

// finish counts outcomes.
func (r *Report) finish(start time.Time) *Report {
	r.Totals = map[string]int{}
	for _, res := range r.Results {
		if res.Outcome != "" {
			r.Totals[string(res.Outcome)]++
		}
	}
	r.Took = time.Since(start)
	return r
}

// Failures counts failed domains.
func (r *Report) Failures() int { return r.Totals[string(Failed)] }

// Merge replaces each result of r by the one of other for the same domain,
// when other has one (verification after apply).
func (r *Report) Merge(other *Report) {
	byDomain := map[string]Result{}
	for _, res := range other.Results {
		byDomain[res.Domain] = res
	}
	for i, res := range r.Results {
		if o, ok := byDomain[res.Domain]; ok {
			r.Results[i] = o
		}
	}
}
