// Package dnsctl switches the mail records of the domains whose mail the
// legacy provider hosts to the new provider: it reads each domain from its
// authoritative server, plans the change, applies it as one TSIG-signed
// RFC 2136 update with prerequisites, verifies that every authoritative
// server serves it, and can roll it back from a journal kept in JetStream.
//
// The Engine does the work for the CLI (`mailferry dns ...`) and for the
// Service, which switches domains as lifecycle events arrive.
package dnsctl

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/mailferry/mailferry/services/dnsctl/authdns"
	"github.com/mailferry/mailferry/services/dnsctl/bindkey"
	"github.com/mailferry/mailferry/services/dnsctl/dnsconfig"
	"github.com/mailferry/mailferry/services/dnsctl/journal"
	"github.com/mailferry/mailferry/services/dnsctl/plan"
	"github.com/mailferry/mailferry/services/dnsctl/update"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/event"
)

// ServiceName is the name dnsctl publishes events and logs under.
const ServiceName = "dnsctl"

// minThresholdDomains: runs over fewer domains are not held to
// MaxChangeShare, since one domain of one is 100%.
const minThresholdDomains = 10

// Publisher publishes lifecycle events; event.Publisher is one.
type Publisher interface {
	Publish(ctx context.Context, o event.Outgoing) error
}

// Engine plans, applies, verifies and rolls back switches.
type Engine struct {
	Policy  plan.Policy
	Reader  *authdns.Reader
	Client  *authdns.Client
	Sender  *update.Sender
	Journal *journal.Journal
	// Events receives dns.* events; nil publishes none.
	Events Publisher
	Log    zerolog.Logger

	// Concurrency bounds domains handled at once.
	Concurrency int
	// Limiter paces updates; nil means unbounded.
	Limiter *rate.Limiter
	// VerifyServers are checked besides the NS hosts (when VerifyNS) on
	// NSPort.
	VerifyServers []string
	VerifyNS      bool
	NSPort        int
	VerifyTimeout time.Duration
	// PlanMaxAge is how old a stored plan apply still carries out.
	PlanMaxAge time.Duration
	// MaxChangePercent is the share of a run's domains, in percent, it
	// may change without Force.
	MaxChangePercent int
	// DefaultRestoreTTL is the TTL RestoreTTL sets when given none
	// (dns.restore_ttl).
	DefaultRestoreTTL uint32
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// New builds an engine from the dns section of cfg, reading the TSIG key
// and opening the journal bucket on js.
func New(ctx context.Context, cfg *config.Config, js jetstream.JetStream, events Publisher, log zerolog.Logger) (*Engine, error) {
	d, err := dnsconfig.Load(cfg)
	if err != nil {
		return nil, err
	}
	return NewFromSection(ctx, d, cfg.NATS.Replicas, js, events, log)
}

// NewFromSection is New with the dns section already loaded, replicas
// being the journal bucket's.
func NewFromSection(ctx context.Context, d *dnsconfig.DNS, replicas int, js jetstream.JetStream, events Publisher, log zerolog.Logger) (*Engine, error) {
	e, err := NewPlanner(d, log)
	if err != nil {
		return nil, err
	}
	key, err := bindkey.ReadFile(d.TSIGKeyFile, d.TSIGKeyName)
	if err != nil {
		return nil, fmt.Errorf("dnsctl: %w", err)
	}
	j, err := journal.Open(ctx, js, replicas)
	if err != nil {
		return nil, fmt.Errorf("dnsctl: %w", err)
	}
	e.Sender = &update.Sender{Server: d.Server, Key: key, Timeout: 2 * d.Timeout.Std()}
	e.Journal = j
	e.Events = events
	e.VerifyServers = d.VerifyServers
	e.VerifyNS = *d.VerifyNS
	e.NSPort = d.NSPort
	e.VerifyTimeout = d.VerifyTimeout.Std()
	e.PlanMaxAge = d.PlanMaxAge.Std()
	e.MaxChangePercent = d.MaxChangePercent
	e.DefaultRestoreTTL = d.RestoreTTL
	if d.Rate > 0 {
		e.Limiter = rate.NewLimiter(rate.Limit(d.Rate), max(1, d.Rate/10))
	}
	return e, nil
}

// NewPlanner builds an engine that can only plan, without storing the
// plan (Plan with store false): it reads each domain from dns.server and
// decides under the section's policy, as NewFromSection's engine does, but
// needs neither the TSIG key, nor the journal, nor a broker, so a dry run
// such as `mailferry cutover plan` touches nothing.
func NewPlanner(d *dnsconfig.DNS, log zerolog.Logger) (*Engine, error) {
	if !d.Enabled() {
		return nil, fmt.Errorf("dnsctl: the configuration has no dns.server")
	}
	pol, err := plan.FromConfig(*d)
	if err != nil {
		return nil, fmt.Errorf("dnsctl: %w", err)
	}
	client := &authdns.Client{Timeout: d.Timeout.Std()}
	return &Engine{
		Policy:      pol,
		Client:      client,
		Reader:      &authdns.Reader{Client: client, Server: d.Server, HostLabels: d.MailHostLabels, SRVNames: srvNames(pol)},
		Log:         log,
		Concurrency: d.Concurrency,
	}, nil
}

func srvNames(p plan.Policy) []string {
	out := make([]string, 0, len(p.SRV))
	for _, s := range p.SRV {
		out = append(out, s.Service)
	}
	return out
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now().UTC()
	}
	return time.Now().UTC()
}

// server is the primary, where records are read and updates sent.
func (e *Engine) server() string { return e.Sender.Server }

// publish publishes o (nothing when Events is nil). The publisher has
// retried; an error left means the outcome happened but nobody heard of
// it, so the caller reports the domain failed: running the command again
// finds the outcome in place and publishes it again, with the same id.
func (e *Engine) publish(ctx context.Context, o event.Outgoing) error {
	if e.Events == nil {
		return nil
	}
	if err := e.Events.Publish(ctx, o); err != nil {
		return fmt.Errorf("%s not published: %w", o.Type, err)
	}
	return nil
}
