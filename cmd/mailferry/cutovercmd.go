package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/cmd/mailferry/cutover"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/campaign"
	"github.com/mailferry/mailferry/shared/command"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/daemon"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/metrics"
)

// domainList is a -domain flag: given several times or comma-separated.
type domainList []string

func (l *domainList) String() string { return strings.Join(*l, ",") }

func (l *domainList) Set(v string) error {
	for _, d := range strings.Split(v, ",") {
		if d = strings.TrimSpace(d); d != "" {
			*l = append(*l, d)
		}
	}
	return nil
}

const campaignNote = `
Without nats.url the campaign lives in the embedded broker's nats.data_dir,
which one process uses at a time: run pause, resume, abort, retry and close
while no cutover start runs, or set nats.listen there and nats.url here.`

// cutoverCommands are the campaign's commands.
var cutoverCommands = []*command.Command{
	{
		Name:      "cutover start",
		UsageLine: "[-c FILE] (-all | -domain D...) [-wait]",
		Short:     "put domains in the cutover campaign and run it",
		Long: `Start puts the selected domains in the campaign (a domain already there is
resumed, not reset) and runs it: each domain is provisioned, copied,
switched, drained, copied once more, verified and closed with a report, in
cutover.order.

Without nats.url it runs every service in this process on the embedded
broker (like migrate) and returns when every selected domain is done
(exit 0), or failed or paused (exit 1): a domain that fails does not stop
the others. Run again, it resumes. With nats.url it hands the domains to
the orchestrator daemon (cutover run) and returns at once, or with -wait
when every selected domain is done (exit 0) or any has failed (exit 1; the
daemons go on with the others).`,
		Setup: func(fs *flag.FlagSet) command.Run {
			path := command.ConfigFlag(fs)
			all := fs.Bool("all", false, "every domain of the mailboxes file")
			var domains domainList
			fs.Var(&domains, "domain", "a domain to cut over (repeat or comma-separate)")
			wait := fs.Bool("wait", false, "with nats.url: return when every selected domain is done or failed")
			return func(ctx context.Context, stdout, stderr io.Writer) error {
				if *all == (len(domains) > 0) {
					return command.Usagef("give -all or -domain (not both)")
				}
				s, err := load(*path, stdout, stderr)
				if err != nil {
					return err
				}
				return runCutoverStart(ctx, s, *all, domains, *wait)
			}
		},
	},
	{
		Name:      "cutover status",
		UsageLine: "[-c FILE] [-domain D...] [-json] [-watch]",
		Short:     "where every domain of the campaign stands",
		Long: `Status shows each domain of the campaign: its phase (and for a failed or
paused one the phase it stopped in and why), its DNS, its mailboxes with
the messages and bytes moved over every pass, and its report.` + campaignNote,
		Setup: func(fs *flag.FlagSet) command.Run {
			path := command.ConfigFlag(fs)
			var domains domainList
			fs.Var(&domains, "domain", "only this domain (repeat or comma-separate)")
			asJSON := jsonFlag(fs)
			watch := fs.Bool("watch", false, "redraw every two seconds until interrupted")
			return func(ctx context.Context, stdout, stderr io.Writer) error {
				s, err := load(*path, stdout, stderr)
				if err != nil {
					return err
				}
				return runCutoverStatus(ctx, s, domains, *asJSON, *watch)
			}
		},
	},
	operatorFact("pause", "stop a domain where it is; resume goes on", true, func(reason string) campaign.Fact { return campaign.Pause{Reason: reason} }),
	operatorFact("resume", "go on with a paused domain", false, func(string) campaign.Fact { return campaign.Resume{} }),
	operatorFact("abort", "fail a domain where it is", true, func(reason string) campaign.Fact { return campaign.Abort{Reason: reason} }),
	operatorFact("retry", "take a failed domain's phase again", false, func(string) campaign.Fact { return campaign.Retry{} }),
	operatorFact("close", "mark a done domain's old mailboxes closed", false, func(string) campaign.Fact { return campaign.Close{} }),
	cutoverRun(),
}

// operatorFact is `cutover NAME -domain D [-reason R]`: it applies the
// fact make returns to each domain named.
func operatorFact(name, short string, reason bool, fact func(reason string) campaign.Fact) *command.Command {
	usage := "[-c FILE] -domain D..."
	if reason {
		usage += " [-reason TEXT]"
	}
	return &command.Command{
		Name:      "cutover " + name,
		UsageLine: usage,
		Short:     short,
		Long:      strings.ToUpper(short[:1]) + short[1:] + ": the orchestrator acts on it at its next look." + campaignNote,
		Setup: func(fs *flag.FlagSet) command.Run {
			path := command.ConfigFlag(fs)
			var domains domainList
			fs.Var(&domains, "domain", "the domain (repeat or comma-separate)")
			why := new(string)
			if reason {
				why = fs.String("reason", "", "why, for status and the report")
			}
			return func(ctx context.Context, stdout, stderr io.Writer) error {
				if len(domains) == 0 {
					return command.Usagef("-domain is required")
				}
				s, err := load(*path, stdout, stderr)
				if err != nil {
					return err
				}
				return applyOperatorFact(ctx, s, domains, fact(*why))
			}
		},
	}
}

// cutoverRun is the orchestrator daemon.
func cutoverRun() *command.Command {
	c := daemon.Command("cutover", "run the cutover orchestrator (one instance acts, others stand by)", cutover.CheckConfig,
		func(ctx context.Context, cfg *config.Config, b *broker.Broker, log zerolog.Logger, _ *metrics.Metrics) error {
			o, err := newOrchestrator(cfg, log)
			if err != nil {
				return err
			}
			o.Broker = b
			return o.Run(ctx)
		})
	c.Name = "cutover run"
	return c
}

// newOrchestrator is an orchestrator with its settings and inventory from
// cfg, without a broker yet.
func newOrchestrator(cfg *config.Config, log zerolog.Logger) (*cutover.Orchestrator, error) {
	settings, err := cutover.LoadSettings(cfg)
	if err != nil {
		return nil, &command.ConfigError{Err: err}
	}
	boxes, err := inventory(cfg)
	if err != nil {
		return nil, err
	}
	return &cutover.Orchestrator{Config: cfg, Settings: settings, Log: log, Mailboxes: boxes}, nil
}

func runCutoverStart(ctx context.Context, s *session, all bool, names []string, wait bool) error {
	o, err := newOrchestrator(s.cfg, s.log)
	if err != nil {
		return err
	}
	domains := cutover.Domains(o.Mailboxes)
	selected, err := cutover.Select(domains, all, names)
	if err != nil {
		return command.Usagef("%v", err)
	}
	var settled cutover.Settled
	if s.cfg.NATS.URL == "" {
		settled, err = cutover.RunLocal(ctx, o, selected, s.stdout)
	} else {
		settled, err = handOver(ctx, s, o, domains, selected, wait)
	}
	if err != nil || (!wait && s.cfg.NATS.URL != "") {
		return err
	}
	return settledResult(s.stdout, settled)
}

// handOver puts the domains in the campaign on a shared broker, for the
// orchestrator daemon, and with wait follows them until they end.
func handOver(ctx context.Context, s *session, o *cutover.Orchestrator, domains map[string][]string, selected []string, wait bool) (cutover.Settled, error) {
	b, err := broker.Connect(ctx, s.cfg.NATS, "mailferry-cutover", s.log)
	if err != nil {
		return cutover.Settled{}, err
	}
	defer b.Close()
	if err := b.Use(ctx, campaign.Needs); err != nil {
		return cutover.Settled{}, err
	}
	store, err := campaign.Open(ctx, b)
	if err != nil {
		return cutover.Settled{}, err
	}
	store.Domains = campaign.NewDomains(o.Mailboxes)
	added, err := cutover.Add(ctx, o.Settings, store, domains, selected)
	if err != nil {
		return cutover.Settled{}, err
	}
	for _, a := range added {
		if a.New {
			fmt.Fprintf(s.stdout, "%s: queued\n", a.Domain)
		} else {
			fmt.Fprintf(s.stdout, "%s: in the campaign already (%s)\n", a.Domain, a.Phase)
		}
	}
	if err := cutover.CheckLeader(ctx, b); err != nil {
		s.log.Warn().Err(err).Msg("the domains wait for an orchestrator")
	}
	if !wait {
		return cutover.Settled{}, nil
	}
	return cutover.Await(ctx, store, selected, cutover.AwaitOptions{FirstFailure: true}, s.stdout)
}

// settledResult says how the selected domains ended; exit 1 unless every
// one is done.
func settledResult(w io.Writer, st cutover.Settled) error {
	fmt.Fprintf(w, "%d done, %d failed, %d paused\n", len(st.Done), len(st.Failed), len(st.Paused))
	if st.OK() {
		return nil
	}
	var parts []string
	if len(st.Failed) > 0 {
		parts = append(parts, "failed: "+strings.Join(st.Failed, ", "))
	}
	if len(st.Paused) > 0 {
		parts = append(parts, "paused: "+strings.Join(st.Paused, ", "))
	}
	return fmt.Errorf("%s (cutover status says why): %w", strings.Join(parts, "; "), command.ErrFailures)
}

// openCampaign connects to the broker (the embedded one without nats.url)
// and opens the campaign's records, which must exist.
func openCampaign(ctx context.Context, s *session, name string) (*broker.Broker, *campaign.Store, error) {
	b, err := broker.Connect(ctx, s.cfg.NATS, "mailferry-"+name, s.log)
	if err != nil {
		return nil, nil, err
	}
	if err := b.Use(ctx, broker.Needs{Reads: []string{broker.BucketCampaign}}); err != nil {
		b.Close()
		return nil, nil, err
	}
	store, err := campaign.Open(ctx, b)
	if err != nil {
		b.Close()
		return nil, nil, err
	}
	return b, store, nil
}

func runCutoverStatus(ctx context.Context, s *session, only []string, asJSON, watch bool) error {
	b, store, err := openCampaign(ctx, s, "cutover-status")
	if err != nil {
		return err
	}
	defer b.Close()
	// The mailboxes waiting for their user's sign-in are told from the
	// inventory; without one (a status read elsewhere) they are not.
	boxes, invErr := job.ReadInventory(s.cfg.Mailboxes.File)
	return show(ctx, s.stdout, asJSON, watch, func() (textWriter, error) {
		st, err := cutover.ReadStatus(ctx, store, only)
		if err == nil && invErr == nil {
			err = st.MarkWaiting(ctx, b.JS, s.cfg, boxes)
		}
		return st, err
	})
}

func applyOperatorFact(ctx context.Context, s *session, names []string, f campaign.Fact) error {
	b, store, err := openCampaign(ctx, s, "cutover-"+f.Name())
	if err != nil {
		return err
	}
	defer b.Close()
	var failed []string
	for _, name := range names {
		res, err := store.Apply(ctx, name, f)
		var refused *campaign.TransitionError
		switch {
		case errors.Is(err, campaign.ErrNoDomain):
			fmt.Fprintf(s.stderr, "%s: not in the campaign\n", campaign.NormalizeDomain(name))
			failed = append(failed, name)
		case errors.As(err, &refused) || errors.Is(err, campaign.ErrNotDone):
			fmt.Fprintf(s.stderr, "%s: %v\n", campaign.NormalizeDomain(name), err)
			failed = append(failed, name)
		case err != nil:
			return err
		case res.Changed:
			fmt.Fprintf(s.stdout, "%s: %s\n", res.Domain.Domain, res.Domain.Phase)
		default:
			fmt.Fprintf(s.stdout, "%s: %s (unchanged)\n", res.Domain.Domain, res.Domain.Phase)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%s %d of %d domains refused: %w", f.Name(), len(failed), len(names), command.ErrFailures)
	}
	return nil
}
