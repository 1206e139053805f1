package cutover

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"time"

	"github.com/mailferry/mailferry/shared/campaign"
	"github.com/mailferry/mailferry/shared/job"
)

// Domains groups the inventory's mailboxes (their source addresses) by
// the domain of their target address, the mail domain: domain →
// addresses, sorted.
func Domains(boxes []job.Mailbox) map[string][]string {
	out := map[string][]string{}
	for _, mb := range boxes {
		d := campaign.MailDomainOf(mb)
		out[d] = append(out[d], mb.SourceUser)
	}
	for _, list := range out {
		sort.Strings(list)
	}
	return out
}

// Select is the domains named (normalized), or every domain of the
// inventory with all; a name the inventory does not have is an error.
func Select(domains map[string][]string, all bool, names []string) ([]string, error) {
	if all {
		out := make([]string, 0, len(domains))
		for d := range domains {
			out = append(out, d)
		}
		sort.Strings(out)
		return out, nil
	}
	var out []string
	for _, n := range names {
		d := campaign.NormalizeDomain(n)
		if _, ok := domains[d]; !ok {
			return nil, fmt.Errorf("domain %s has no mailbox in the mailboxes file", d)
		}
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out, nil
}

// Added is what Add did for one domain.
type Added struct {
	Domain string
	// New says the domain was queued now; otherwise it was in the
	// campaign already, in Phase.
	New   bool
	Phase campaign.Phase
}

// Add puts the selected domains in the campaign, queued, in the order of
// s; a domain already there keeps its record (starting a campaign again
// resumes it). Without a dns section every domain's DNS is skipped.
func Add(ctx context.Context, s Settings, store *campaign.Store, domains map[string][]string, selected []string) ([]Added, error) {
	var skip *campaign.DNS
	if !s.Switches() {
		skip = &campaign.DNS{SkipCode: campaign.CodeNotConfigured, SkipReason: "no dns section in the configuration"}
	}
	var out []Added
	for _, name := range selected {
		rec, err := campaign.NewDomain(name, domains[name], store.Domains, s.Order, time.Duration(s.DeltaGrace), skip, time.Now())
		if err != nil {
			return out, err
		}
		got, added, err := store.Add(ctx, rec)
		if err != nil {
			return out, err
		}
		out = append(out, Added{Domain: got.Domain, New: added, Phase: got.Phase})
	}
	return out, nil
}

// Settled says where the selected domains ended.
type Settled struct {
	Done, Failed, Paused []string
}

// OK reports whether every domain is done.
func (s Settled) OK() bool { return len(s.Failed) == 0 && len(s.Paused) == 0 }

// AwaitOptions say when Await returns.
type AwaitOptions struct {
	// PausedEnds counts a paused domain as ended: nothing moves it in a
	// process that runs the campaign alone.
	PausedEnds bool
	// FirstFailure returns as soon as a domain failed (the daemons go on
	// with the others).
	FirstFailure bool
	// Finished says a done or failed domain has nothing left to do (its
	// TTLs restored, its report written); nil: at once.
	Finished func(campaign.Domain) bool
}

// Await watches the selected domains until each is done or failed (see
// AwaitOptions). It writes a line to w at every phase change.
func Await(ctx context.Context, store *campaign.Store, selected []string, o AwaitOptions, w io.Writer) (Settled, error) {
	seen := map[string]campaign.Phase{}
	for {
		var st Settled
		pending := 0
		for _, name := range selected {
			d, ok, err := store.Get(ctx, name)
			if err != nil {
				if ctx.Err() != nil {
					return Settled{}, ctx.Err()
				}
				return Settled{}, err
			}
			if !ok {
				return Settled{}, fmt.Errorf("domain %s: %w", name, campaign.ErrNoDomain)
			}
			if seen[name] != d.Phase {
				seen[name] = d.Phase
				line := fmt.Sprintf("%s: %s", name, d.Phase)
				if d.Reason != "" {
					line += " (" + d.Reason + ")"
				}
				fmt.Fprintln(w, line)
			}
			ended := o.Finished == nil || o.Finished(d)
			switch {
			case (d.Phase == campaign.Done || d.Phase == campaign.Failed) && !ended:
				pending++
			case d.Phase == campaign.Done:
				st.Done = append(st.Done, name)
			case d.Phase == campaign.Failed:
				st.Failed = append(st.Failed, name)
			case d.Phase == campaign.Paused && o.PausedEnds:
				st.Paused = append(st.Paused, name)
			default:
				pending++
			}
		}
		if pending == 0 || o.FirstFailure && len(st.Failed) > 0 {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return Settled{}, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
