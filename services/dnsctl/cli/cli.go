// Package cli is `mailferry dns`: the operator's commands to plan, apply,
// verify and roll back the switch of mail records, lower TTLs ahead of the
// cutover, inspect the journal and request a cutover from the running service.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/services/dnsctl"
	"github.com/mailferry/mailferry/services/dnsctl/dnsconfig"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/command"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/logging"
)

// ErrFailures is returned (wrapped) when a command ran but some domains
// failed; the report says which. It wraps command.ErrFailures: the exit
// status is 1 and the error is not printed again.
var ErrFailures = fmt.Errorf("some domains failed: %w", command.ErrFailures)

// domainNote ends the help of every command taking -domain.
const domainNote = `
-domain takes one domain or a comma-separated list; without it the
domains_file of the configuration is used. services/dnsctl/README.md
explains the switch, the journal and the configuration.`

// Commands are `mailferry dns ...`, for the mailferry binary's table.
var Commands = []*command.Command{
	{
		Name:      "dns plan",
		UsageLine: "[-c FILE] [-domain D] [-json]",
		Short:     "read every domain, print and store the plan",
		Long: `Plan reads every domain's mail records from its authoritative servers,
prints the change each one needs (or why it is skipped) and stores the plan
for dns apply.
` + domainNote,
		Setup: setup(runPlan, jsonOut),
	},
	{
		Name:      "dns apply",
		UsageLine: "[-c FILE] [-domain D] [-dry-run] [-force] [-no-verify] [-replan] [-json]",
		Short:     "carry out the stored plan, then verify",
		Long: `Apply sends one TSIG-signed update per domain of the stored plan, with
prerequisites that fail a domain edited by hand since the plan, journals the
old records first and then waits until every server serves the change.
` + domainNote,
		Setup: setup(runApply, jsonOut, dryRun, force, noVerify, replan),
	},
	{
		Name:      "dns verify",
		UsageLine: "[-c FILE] [-domain D] [-json]",
		Short:     "wait until every authoritative server serves the switch",
		Long: `Verify waits until every authoritative server serves the switched records.
` + domainNote,
		Setup: setup(runVerify, jsonOut),
	},
	{
		Name:      "dns rollback",
		UsageLine: "[-c FILE] (-domain D | -all) [-dry-run] [-json]",
		Short:     "restore the journaled records",
		Long: `Rollback restores the records journaled before the switch, of the domains
given or of every journaled domain.
` + domainNote,
		Setup: setup(runRollback, jsonOut, dryRun, all),
	},
	{
		Name:      "dns lower-ttl",
		UsageLine: "[-c FILE] [-ttl 300] [-domain D] [-dry-run] [-force] [-json]",
		Short:     "lower the TTL of the mail records ahead of the cutover",
		Long: `Lower-ttl lowers the TTL of the mail records ahead of the cutover, so that
resolvers forget the old records soon after the switch.
` + domainNote,
		Setup: setup(runLowerTTL, jsonOut, dryRun, force, ttl),
	},
	{
		Name:      "dns restore-ttl",
		UsageLine: "[-c FILE] [-ttl N] [-domain D] [-dry-run] [-force] [-json]",
		Short:     "set the TTL of the mail records back after the cutover",
		Long: `Restore-ttl sets the TTL of the mail records dnsctl wrote (MX and the mail
hosts' A, AAAA, CNAME) to -ttl, default dns.restore_ttl (3600), once the
domain is switched and verified and the old MX has drained. A domain not
switched is refused (-force sets the TTL anyway). The update requires the
records to still be what dnsctl wrote, is journaled (dns status shows it;
dns rollback still puts back the records and TTLs from before the switch)
and changes nothing when run again.
` + domainNote,
		Setup: setup(runRestoreTTL, jsonOut, dryRun, forceUnswitched, restoreTTL),
	},
	{
		Name:      "dns status",
		UsageLine: "[-c FILE] [-domain D] [-json]",
		Short:     "show the journal of each domain",
		Long: `Status shows each journaled domain's state, serial, times and error; with
-domain, only those domains.`,
		Setup: setup(runStatus, jsonOut),
	},
	{
		Name:      "dns cutover",
		UsageLine: "[-c FILE] -domain D",
		Short:     "ask the running dnsctl service to switch -domain D now",
		Long: `Cutover asks the running dnsctl service to switch the given domains now,
without waiting for domain.provisioned. -domain takes one domain or a
comma-separated list.`,
		Setup: setup(runCutover),
	},
}

// Main runs `mailferry dns ARGS...` from Commands, as the mailferry binary
// does.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	p := &command.Program{Name: "mailferry", Commands: Commands}
	return p.Run(ctx, append([]string{"dns"}, args...), stdout, stderr)
}

// options are the flags of the dns commands; each command declares the
// ones it takes.
type options struct {
	config   string
	json     bool
	domains  string
	dryRun   bool
	force    bool
	noVerify bool
	replan   bool
	all      bool
	ttl      uint
}

// flagDecl declares one flag of a command.
type flagDecl func(fs *flag.FlagSet, o *options)

func dryRun(fs *flag.FlagSet, o *options) {
	fs.BoolVar(&o.dryRun, "dry-run", false, "show what would change, change nothing")
}

func force(fs *flag.FlagSet, o *options) {
	fs.BoolVar(&o.force, "force", false, "change more domains than dns.max_change_percent allows")
}

// forceUnswitched is restore-ttl's -force: it is about the domain's state,
// not about how many domains change.
func forceUnswitched(fs *flag.FlagSet, o *options) {
	fs.BoolVar(&o.force, "force", false, "set the TTL of a domain that is not switched too")
}

func noVerify(fs *flag.FlagSet, o *options) {
	fs.BoolVar(&o.noVerify, "no-verify", false, "do not wait for every server to serve the change")
}

func replan(fs *flag.FlagSet, o *options) {
	fs.BoolVar(&o.replan, "replan", false, "ignore the stored plan and plan every domain now")
}

func all(fs *flag.FlagSet, o *options) {
	fs.BoolVar(&o.all, "all", false, "roll back every journaled domain")
}

func ttl(fs *flag.FlagSet, o *options) {
	fs.UintVar(&o.ttl, "ttl", 300, "TTL in seconds")
}

func restoreTTL(fs *flag.FlagSet, o *options) {
	fs.UintVar(&o.ttl, "ttl", 0, "TTL in seconds (default dns.restore_ttl, 3600 unless set)")
}

func jsonOut(fs *flag.FlagSet, o *options) {
	fs.BoolVar(&o.json, "json", false, "print the report as JSON")
}

// setup declares -c, -domain and decls, and returns run bound to their
// values.
func setup(run func(context.Context, *options, io.Writer, io.Writer) error, decls ...flagDecl) func(*flag.FlagSet) command.Run {
	return func(fs *flag.FlagSet) command.Run {
		o := &options{}
		path := command.ConfigFlag(fs)
		fs.StringVar(&o.domains, "domain", "", "domain or comma-separated domains (default: dns.domains_file)")
		for _, d := range decls {
			d(fs, o)
		}
		return func(ctx context.Context, stdout, stderr io.Writer) error {
			o.config = *path
			return run(ctx, o, stdout, stderr)
		}
	}
}

// session is an open configuration, broker and engine.
type session struct {
	cfg    *config.Config
	dns    *dnsconfig.DNS
	broker *broker.Broker
	eng    *dnsctl.Engine
	log    zerolog.Logger
}

func open(ctx context.Context, o *options, stderr io.Writer) (*session, error) {
	cfg, err := config.Load(o.config)
	if err != nil {
		return nil, &command.ConfigError{Err: err}
	}
	d, err := dnsconfig.Load(cfg)
	if err != nil {
		return nil, &command.ConfigError{Err: err}
	}
	log, err := logging.New(stderr, cfg.Log.Level, cfg.Log.Format, "dnsctl")
	if err != nil {
		return nil, &command.ConfigError{Err: err}
	}
	b, err := broker.Connect(ctx, cfg.NATS, "mailferry-dns", log)
	if err != nil {
		return nil, err
	}
	if err := b.Use(ctx, dnsctl.Needs); err != nil {
		b.Close()
		return nil, err
	}
	eng, err := dnsctl.NewFromSection(ctx, d, cfg.NATS.Replicas, b.JS, event.Publisher{JS: b.JS, Service: dnsctl.ServiceName}, log)
	if err != nil {
		b.Close()
		return nil, err
	}
	return &session{cfg: cfg, dns: d, broker: b, eng: eng, log: log}, nil
}

func (s *session) close() { s.broker.Close() }

// domains returns the -domain list or the domains file.
func (s *session) domains(o *options) ([]string, error) {
	if o.domains == "" {
		if s.dns.DomainsFile == "" {
			return nil, &command.ConfigError{Err: errors.New("no domains: set dns.domains_file or pass -domain")}
		}
		return dnsctl.ReadDomains(s.dns.DomainsFile)
	}
	var out []string
	for _, d := range strings.Split(o.domains, ",") {
		c, err := dnsctl.CanonicalDomain(strings.TrimSpace(d))
		if err != nil {
			return nil, &command.UsageError{Err: fmt.Errorf("-domain: %w", err)}
		}
		out = append(out, c)
	}
	return out, nil
}
