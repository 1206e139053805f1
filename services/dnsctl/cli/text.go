package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mailferry/mailferry/services/dnsctl"
	"github.com/mailferry/mailferry/services/dnsctl/journal"
	"github.com/mailferry/mailferry/services/dnsctl/plan"
	"github.com/mailferry/mailferry/services/dnsctl/records"
)

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writePlan prints each domain's diff, then the totals.
func writePlan(w io.Writer, p *dnsctl.PlanReport) {
	fmt.Fprintf(w, "plan %s: %d domains, %d to switch, %d skipped (read in %s)\n\n",
		p.ID, len(p.Domains), p.ToSwitch(), len(p.Domains)-p.ToSwitch(), p.Took.Round(time.Millisecond))
	for _, d := range p.Domains {
		if d.Action == plan.Switch {
			fmt.Fprintf(w, "%s switch (serial %d, mail records cached up to %ds)\n", d.Domain, d.Serial, d.OldTTL)
			writeDiff(w, d.Changes)
			continue
		}
		fmt.Fprintf(w, "%s skip (%s): %s\n", d.Domain, d.Code, d.Reason)
	}
	fmt.Fprintf(w, "\ntotals: %s\n", totals(p.Totals))
}

// writeDiff prints the records each change removes (-) and adds (+);
// records an RRset keeps, such as TXT records beside SPF, are not shown.
func writeDiff(w io.Writer, changes []records.Change) {
	for _, c := range changes {
		oldLines, newLines := c.Old.Lines(), c.New.Lines()
		for _, l := range oldLines {
			if !slices.Contains(newLines, l) {
				fmt.Fprintf(w, "  - %s\n", l)
			}
		}
		for _, l := range newLines {
			if !slices.Contains(oldLines, l) {
				fmt.Fprintf(w, "  + %s\n", l)
			}
		}
	}
}

func totals(t map[string]int) string {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return t[keys[i]] > t[keys[j]] || t[keys[i]] == t[keys[j]] && keys[i] < keys[j] })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, t[k])
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// writeReport prints one line per domain (the diff for dry runs), then the
// totals.
func writeReport(w io.Writer, r *dnsctl.Report) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, res := range r.Results {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", res.Domain, strings.ToUpper(string(res.Outcome)), detail(res))
	}
	tw.Flush()
	for _, res := range r.Results {
		if len(res.Changes) > 0 {
			fmt.Fprintf(w, "\n%s would change:\n", res.Domain)
			writeDiff(w, res.Changes)
		}
	}
	fmt.Fprintf(w, "\n%s: %d domains: %s (took %s)\n", r.Command, len(r.Results), totals(r.Totals), r.Took.Round(time.Millisecond))
}

func detail(res dnsctl.Result) string {
	var parts []string
	if res.Code != "" {
		parts = append(parts, res.Code+":")
	}
	for _, s := range []string{res.Reason, res.Error} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	if res.Serial != 0 {
		parts = append(parts, fmt.Sprintf("serial %d", res.Serial))
	}
	if !res.OldTTLExpiresAt.IsZero() {
		parts = append(parts, "old records expire from caches at "+res.OldTTLExpiresAt.Format(time.RFC3339))
	}
	if len(res.Servers) > 0 {
		parts = append(parts, "on "+strings.Join(res.Servers, " "))
	}
	return strings.Join(parts, " ")
}

func writeStatus(w io.Writer, entries []*journal.Entry) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DOMAIN\tSTATE\tSERIAL\tAPPLIED\tVERIFIED\tOLD TTL EXPIRES\tTTL LOWERED\tTTL RESTORED\tERROR")
	for _, e := range entries {
		lowered := "-"
		if e.Lowered != nil {
			lowered = fmt.Sprintf("%d->%d until %s", e.Lowered.From, e.Lowered.To, stamp(e.Lowered.HeldUntil))
		}
		restored := "-"
		switch r := e.Restored; {
		case r == nil:
		case r.Pending:
			restored = fmt.Sprintf("to %d: running since %s", r.To, stamp(r.At))
		default:
			restored = fmt.Sprintf("%d->%d at %s (serial %d)", r.From, r.To, stamp(r.At), r.Serial)
		}
		state := string(e.State)
		if state == "" {
			state = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Domain, state, e.Serial,
			stamp(e.AppliedAt), stamp(e.VerifiedAt), stamp(e.OldTTLExpiresAt), lowered, restored, e.Error)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d domains in the journal\n", len(entries))
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
