// Package plan is `mailferry cutover plan`: a dry run of a cutover campaign
// that changes nothing anywhere. Per domain (the domain part of each source
// mailbox of the inventory, lower case, without a final dot) it shows the
// mailboxes with their folders, messages and bytes, read from the source
// server with LIST and STATUS only (no SELECT, no FETCH); an estimated copy
// time from the throughput measured on earlier passes (or a documented
// default); the DNS change dnsctl would make, or why it would skip the
// domain; and, when the campaign already has it, the domain's phase.
//
// Reading a mailbox is independent of the others: one that cannot be read
// (a refused login, a dead server) is named with the error in the plan and
// the rest is planned.
package plan

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/services/dnsctl"
	dnsplan "github.com/mailferry/mailferry/services/dnsctl/plan"
	"github.com/mailferry/mailferry/services/dnsctl/records"
	"github.com/mailferry/mailferry/shared/campaign"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/imapdial"
	"github.com/mailferry/mailferry/shared/job"
)

// NoDNSReason is the reason a domain's DNS is not switched when the
// configuration has no dns section.
const NoDNSReason = "no dns section in the configuration"

// DNS actions of a plan: dnsctl's switch and skip, and none when the
// configuration has no dns section.
const (
	ActionSwitch = string(dnsplan.Switch)
	ActionSkip   = string(dnsplan.Skip)
	ActionNone   = "none"
)

// CodeNoDNS is the skip code of a domain whose DNS is not switched because
// the configuration has no dns section.
const CodeNoDNS = "no_dns_section"

// DNSPlanner plans the DNS switch of domains without storing the plan;
// *dnsctl.Engine (dnsctl.NewPlanner) is one.
type DNSPlanner interface {
	Plan(ctx context.Context, domains []string, store bool) (*dnsctl.PlanReport, error)
}

// PhaseReader lists the campaign's domain records; *campaign.Store is one.
type PhaseReader interface {
	List(ctx context.Context, prefix string) ([]campaign.Domain, error)
}

// Options are what Make plans from.
type Options struct {
	// Config is the configuration: the source server and how to log in.
	Config *config.Config
	// Mailboxes is the inventory (mailboxes.file).
	Mailboxes []job.Mailbox
	// Concurrency bounds the mailboxes read at once (at least 1).
	Concurrency int
	// DNS plans the switch; nil when the configuration has no dns section.
	DNS DNSPlanner
	// Phases reads the campaign; nil when it cannot be read (Notes say why).
	Phases PhaseReader
	// Throughput is the measured throughput, or the default (Measure).
	Throughput Throughput
	// Notes are said in the plan as they are (why phases or measurements
	// are missing).
	Notes []string
	// Read reads one mailbox from the source; nil is ReadMailbox, its
	// login limited by Logins.
	Read func(ctx context.Context, cfg *config.Config, mb job.Mailbox) Mailbox
	// Logins, when set, counts and limits the source logins with the
	// extractors' (loginlimit.Store): a plan must not lock an account
	// whose password is wrong either.
	Logins imapdial.LoginGuard
	// Credentials, when set, reads the source passwords users handed
	// over at sign-in, for mailboxes without a password file
	// (shared/sourcecred).
	Credentials jetstream.JetStream
	Log         zerolog.Logger
}

// Plan is the dry run of a campaign.
type Plan struct {
	Domains    []Domain   `json:"domains"`
	Totals     Totals     `json:"totals"`
	Throughput Throughput `json:"throughput"`
	// Notes say what the plan could not know and why.
	Notes []string `json:"notes,omitempty"`
}

// Domain is one domain's part of the plan.
type Domain struct {
	// Domain is the name, lower case, without a final dot.
	Domain string `json:"domain"`
	// Phase is where the campaign has the domain ("draining", "failed in
	// prestaging: …"); empty when the campaign does not have it or could
	// not be read.
	Phase     string    `json:"phase,omitempty"`
	Mailboxes []Mailbox `json:"mailboxes"`
	// Folders, Messages and Bytes sum the mailboxes that could be read.
	Folders  int   `json:"folders"`
	Messages int64 `json:"messages"`
	Bytes    int64 `json:"bytes"`
	// BytesEstimated says some mailbox's bytes are an estimate (the
	// server does not advertise STATUS=SIZE).
	BytesEstimated bool `json:"bytes_estimated,omitempty"`
	// Failed counts the mailboxes that could not be read.
	Failed int `json:"failed,omitempty"`
	// EstimateSeconds is the estimated copy time of the domain's mail at
	// the plan's throughput (Throughput.Estimate), or of its largest
	// mailbox at one mailbox's (Throughput.MailboxEstimate) when longer.
	EstimateSeconds float64 `json:"estimate_seconds"`
	DNS             DNS     `json:"dns"`
}

// Mailbox is one source mailbox's part of the plan.
type Mailbox struct {
	Mailbox string `json:"mailbox"`
	// Folders counts the selectable folders (those the extractor copies).
	Folders int `json:"folders"`
	// Messages is the sum of STATUS MESSAGES over them.
	Messages int64 `json:"messages"`
	// Bytes is the sum of STATUS SIZE (RFC 8438) over them; when the
	// server does not advertise STATUS=SIZE it is Messages times the
	// mean message size and BytesEstimated is set.
	Bytes          int64 `json:"bytes"`
	BytesEstimated bool  `json:"bytes_estimated,omitempty"`
	// Error says why the mailbox could not be read; its counts are then 0.
	Error string `json:"error,omitempty"`
}

// DNS is what dnsctl would do with a domain.
type DNS struct {
	// Action is ActionSwitch, ActionSkip or ActionNone.
	Action string `json:"action"`
	// Changes are the records the switch removes ("- …") and adds
	// ("+ …"), in zone-file form.
	Changes []string `json:"changes,omitempty"`
	// Serial is the zone's SOA serial when it was read; OldTTL the
	// longest TTL of the mail-routing records replaced (how long the old
	// MX may still get mail after the switch).
	Serial uint32 `json:"serial,omitempty"`
	OldTTL uint32 `json:"old_ttl,omitempty"`
	// SkipCode and SkipReason say why the domain is not switched.
	SkipCode   string `json:"skip_code,omitempty"`
	SkipReason string `json:"skip_reason,omitempty"`
}

// Line says in a line what happens to the domain's DNS.
func (d DNS) Line() string {
	switch d.Action {
	case ActionSwitch:
		return fmt.Sprintf("switch (serial %d, mail records cached up to %ds)", d.Serial, d.OldTTL)
	case ActionNone:
		return "not switched: " + d.SkipReason
	}
	return fmt.Sprintf("skipped (%s): %s", d.SkipCode, d.SkipReason)
}

// CampaignSkip is the campaign's record of a domain whose DNS is not
// switched (campaign.NewDomain's skip); nil when it is switched.
func (d DNS) CampaignSkip() *campaign.DNS {
	if d.Action == ActionSwitch {
		return nil
	}
	return &campaign.DNS{Skipped: true, SkipCode: d.SkipCode, SkipReason: d.SkipReason}
}

// Totals sum the plan.
type Totals struct {
	Domains   int `json:"domains"`
	Mailboxes int `json:"mailboxes"`
	// Failed counts the mailboxes that could not be read.
	Failed          int     `json:"failed"`
	Folders         int     `json:"folders"`
	Messages        int64   `json:"messages"`
	Bytes           int64   `json:"bytes"`
	BytesEstimated  bool    `json:"bytes_estimated,omitempty"`
	EstimateSeconds float64 `json:"estimate_seconds"`
	// ToSwitch counts the domains whose DNS dnsctl would switch.
	ToSwitch int `json:"to_switch"`
}

// Make plans the campaign of o.Mailboxes. Only ctx ending is an error:
// what cannot be read is in the plan (a mailbox's Error, a domain's DNS
// skip, Notes).
func Make(ctx context.Context, o Options) (*Plan, error) {
	p := &Plan{Throughput: o.Throughput, Notes: slices.Clone(o.Notes)}
	if p.Throughput.BytesPerSecond <= 0 {
		p.Throughput = Default()
	}
	read := o.Read
	if read == nil {
		read = func(ctx context.Context, cfg *config.Config, mb job.Mailbox) Mailbox {
			return readMailboxGuarded(ctx, cfg, mb, o.Logins, o.Credentials)
		}
	}
	boxes := readAll(ctx, o, read)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("cutover plan: %w", err)
	}
	byDomain := map[string]*Domain{}
	for i, mb := range o.Mailboxes {
		name := campaign.MailDomainOf(mb)
		d := byDomain[name]
		if d == nil {
			d = &Domain{Domain: name}
			byDomain[name] = d
		}
		m := boxes[i]
		if m.Error != "" {
			o.Log.Warn().Str("mailbox", m.Mailbox).Str("error", m.Error).Msg("mailbox not read from the source")
		}
		if m.BytesEstimated {
			m.Bytes = m.Messages * p.Throughput.MeanMessageBytes
		}
		d.Mailboxes = append(d.Mailboxes, m)
	}
	for _, d := range byDomain {
		slices.SortFunc(d.Mailboxes, func(a, b Mailbox) int { return cmp.Compare(a.Mailbox, b.Mailbox) })
		p.Domains = append(p.Domains, *d)
	}
	slices.SortFunc(p.Domains, func(a, b Domain) int { return cmp.Compare(a.Domain, b.Domain) })

	dns, err := planDNS(ctx, o.DNS, p.Domains)
	if err != nil {
		return nil, err
	}
	phases := readPhases(ctx, o, p)
	for i := range p.Domains {
		d := &p.Domains[i]
		d.DNS = dns[d.Domain]
		d.Phase = phases[d.Domain]
		d.sum(p.Throughput)
		p.Totals.add(d)
	}
	p.Totals.EstimateSeconds = p.Throughput.Estimate(p.Totals.Bytes, p.Totals.Messages)
	for _, d := range p.Domains {
		// A domain is at least as long as its longest mailbox.
		p.Totals.EstimateSeconds = max(p.Totals.EstimateSeconds, d.EstimateSeconds)
	}
	o.Log.Info().Int("domains", p.Totals.Domains).Int("mailboxes", p.Totals.Mailboxes).Int("failed", p.Totals.Failed).
		Int64("messages", p.Totals.Messages).Int64("bytes", p.Totals.Bytes).Msg("cutover planned")
	return p, nil
}

// readAll reads every mailbox, o.Concurrency at once, into the result at
// its index. Mailboxes not started when ctx ends are left zero.
func readAll(ctx context.Context, o Options, read func(context.Context, *config.Config, job.Mailbox) Mailbox) []Mailbox {
	out := make([]Mailbox, len(o.Mailboxes))
	next := make(chan int)
	var wg sync.WaitGroup
	for range max(1, min(o.Concurrency, len(o.Mailboxes))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i] = read(ctx, o.Config, o.Mailboxes[i])
			}
		}()
	}
	for i := range o.Mailboxes {
		select {
		case next <- i:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(next)
	wg.Wait()
	return out
}

// planDNS asks dnsctl about every domain; without a planner every domain
// is not switched for want of a dns section.
func planDNS(ctx context.Context, planner DNSPlanner, domains []Domain) (map[string]DNS, error) {
	out := make(map[string]DNS, len(domains))
	if planner == nil {
		for _, d := range domains {
			out[d.Domain] = DNS{Action: ActionNone, SkipCode: CodeNoDNS, SkipReason: NoDNSReason}
		}
		return out, nil
	}
	names := make([]string, 0, len(domains))
	for _, d := range domains {
		c, err := dnsctl.CanonicalDomain(d.Domain)
		if err != nil {
			out[d.Domain] = DNS{Action: ActionSkip, SkipCode: dnsplan.CodeReadFailed, SkipReason: err.Error()}
			continue
		}
		names = append(names, c)
	}
	r, err := planner.Plan(ctx, names, false)
	if err != nil {
		return nil, fmt.Errorf("plan the dns switch: %w", err)
	}
	for _, pd := range r.Domains {
		d := DNS{Action: string(pd.Action), Serial: pd.Serial, SkipCode: pd.Code, SkipReason: pd.Reason}
		if pd.Action == dnsplan.Switch {
			d.Changes, d.OldTTL = diffLines(pd.Changes), pd.OldTTL
		}
		out[campaign.NormalizeDomain(pd.Domain)] = d
	}
	return out, nil
}

// diffLines are the records each change removes (-) and adds (+); records
// an RRset keeps (TXT records beside SPF) are left out, as `dns plan`
// shows them.
func diffLines(changes []records.Change) []string {
	var out []string
	for _, c := range changes {
		oldLines, newLines := c.Old.Lines(), c.New.Lines()
		for _, l := range oldLines {
			if !slices.Contains(newLines, l) {
				out = append(out, "- "+l)
			}
		}
		for _, l := range newLines {
			if !slices.Contains(oldLines, l) {
				out = append(out, "+ "+l)
			}
		}
	}
	return out
}

// readPhases is each domain's phase in the campaign, when it can be read;
// a failure to read it is a note.
func readPhases(ctx context.Context, o Options, p *Plan) map[string]string {
	out := map[string]string{}
	if o.Phases == nil {
		return out
	}
	ds, err := o.Phases.List(ctx, "")
	if err != nil {
		p.Notes = append(p.Notes, fmt.Sprintf("campaign phases not shown: %v", err))
		return out
	}
	for _, d := range ds {
		out[d.Domain] = phaseLine(d)
	}
	return out
}

// phaseLine is a domain record's phase, with the phase it stopped in and
// why for failed and paused domains.
func phaseLine(d campaign.Domain) string {
	s := string(d.Phase)
	if d.Stopped != "" {
		s += " in " + string(d.Stopped)
	}
	if d.Reason != "" {
		s += ": " + d.Reason
	}
	return s
}

// sum adds up the domain's mailboxes and estimates its copy time at t:
// its mail at the rates of the whole copy, or its largest mailbox at the
// rates of one mailbox, whichever is longer.
func (d *Domain) sum(t Throughput) {
	for _, m := range d.Mailboxes {
		if m.Error != "" {
			d.Failed++
			continue
		}
		d.Folders += m.Folders
		d.Messages += m.Messages
		d.Bytes += m.Bytes
		d.BytesEstimated = d.BytesEstimated || m.BytesEstimated
	}
	d.EstimateSeconds = t.Estimate(d.Bytes, d.Messages)
	for _, m := range d.Mailboxes {
		d.EstimateSeconds = max(d.EstimateSeconds, t.MailboxEstimate(m.Bytes, m.Messages))
	}
}

func (t *Totals) add(d *Domain) {
	t.Domains++
	t.Mailboxes += len(d.Mailboxes)
	t.Failed += d.Failed
	t.Folders += d.Folders
	t.Messages += d.Messages
	t.Bytes += d.Bytes
	t.BytesEstimated = t.BytesEstimated || d.BytesEstimated
	if d.DNS.Action == ActionSwitch {
		t.ToSwitch++
	}
}

// Failed lists the mailboxes that could not be read, by address.
func (p *Plan) Failed() []Mailbox {
	var out []Mailbox
	for _, d := range p.Domains {
		for _, m := range d.Mailboxes {
			if m.Error != "" {
				out = append(out, m)
			}
		}
	}
	return out
}
