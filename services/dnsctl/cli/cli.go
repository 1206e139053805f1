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
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/logging"
)

// ErrFailures is returned (wrapped) when a command ran but some domains
// failed; the report says which. Callers exit non-zero without printing
// it again.
var ErrFailures = errors.New("some domains failed")

const usage = `usage: mailferry dns COMMAND [flags]

commands:
  plan      -c FILE [-json] [-domain D]           read every domain, print and store the plan
  apply     -c FILE [-dry-run] [-force] [-no-verify] [-replan] [-domain D] [-json]
                                                  carry out the stored plan, then verify
  verify    -c FILE [-domain D] [-json]           wait until every authoritative server serves the switch
  rollback  -c FILE (-domain D | -all) [-dry-run] [-json]
                                                  restore the journaled records
  lower-ttl -c FILE -ttl 300 [-dry-run] [-force] [-domain D] [-json]
                                                  lower the TTL of the mail records ahead of the cutover
  status    -c FILE [-domain D] [-json]           show the journal of each domain
  cutover   -c FILE -domain D                     ask the running dnsctl service to switch D now

-domain takes one domain or a comma-separated list; without it the
domains_file of the configuration is used.
`

// Main runs `mailferry dns ARGS...`.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	run, ok := lookup(cmd)
	if !ok {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("dns: unknown command %q", cmd)
	}
	fs := flag.NewFlagSet("dns "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{}
	o.register(fs, cmd)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("dns %s: unexpected argument %q", cmd, fs.Arg(0))
	}
	return run(ctx, o, stdout, stderr)
}

// options are the flags of every command; each registers those it takes.
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

func (o *options) register(fs *flag.FlagSet, cmd string) {
	fs.StringVar(&o.config, "c", "mailferry.yaml", "configuration file")
	fs.StringVar(&o.domains, "domain", "", "domain or comma-separated domains (default: dns.domains_file)")
	if cmd != "cutover" {
		fs.BoolVar(&o.json, "json", false, "print the report as JSON")
	}
	switch cmd {
	case "apply", "lower-ttl", "rollback":
		fs.BoolVar(&o.dryRun, "dry-run", false, "show what would change, change nothing")
	}
	switch cmd {
	case "apply", "lower-ttl":
		fs.BoolVar(&o.force, "force", false, "change more domains than dns.max_change_percent allows")
	}
	switch cmd {
	case "apply":
		fs.BoolVar(&o.noVerify, "no-verify", false, "do not wait for every server to serve the change")
		fs.BoolVar(&o.replan, "replan", false, "ignore the stored plan and plan every domain now")
	case "rollback":
		fs.BoolVar(&o.all, "all", false, "roll back every journaled domain")
	case "lower-ttl":
		fs.UintVar(&o.ttl, "ttl", 300, "TTL in seconds")
	}
}

type command func(ctx context.Context, o *options, stdout, stderr io.Writer) error

func lookup(cmd string) (command, bool) {
	switch cmd {
	case "plan":
		return runPlan, true
	case "apply":
		return runApply, true
	case "verify":
		return runVerify, true
	case "rollback":
		return runRollback, true
	case "lower-ttl":
		return runLowerTTL, true
	case "status":
		return runStatus, true
	case "cutover":
		return runCutover, true
	}
	return nil, false
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
		return nil, err
	}
	d, err := dnsconfig.Load(cfg)
	if err != nil {
		return nil, err
	}
	log, err := logging.New(stderr, cfg.Log.Level, cfg.Log.Format, "dnsctl")
	if err != nil {
		return nil, err
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
			return nil, errors.New("no domains: set dns.domains_file or pass -domain")
		}
		return dnsctl.ReadDomains(s.dns.DomainsFile)
	}
	var out []string
	for _, d := range strings.Split(o.domains, ",") {
		c, err := dnsctl.CanonicalDomain(strings.TrimSpace(d))
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}
