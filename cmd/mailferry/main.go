// Command mailferry is the operator CLI: it runs the whole migration in one
// process (migrate), runs one service as a daemon (extractor, loader),
// enqueues work for daemons started elsewhere (enqueue) and verifies.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/cmd/mailferry/dashboard"
	"github.com/mailferry/mailferry/cmd/mailferry/delta"
	"github.com/mailferry/mailferry/cmd/mailferry/demo"
	"github.com/mailferry/mailferry/cmd/mailferry/migrate"
	"github.com/mailferry/mailferry/cmd/mailferry/status"
	authcli "github.com/mailferry/mailferry/services/auth/cli"
	"github.com/mailferry/mailferry/services/auth/target/opensrs"
	"github.com/mailferry/mailferry/services/dnsctl"
	dnscli "github.com/mailferry/mailferry/services/dnsctl/cli"
	"github.com/mailferry/mailferry/services/extractor"
	"github.com/mailferry/mailferry/services/loader"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/command"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/daemon"
	"github.com/mailferry/mailferry/shared/logging"
	"github.com/mailferry/mailferry/shared/metrics"
)

// program is mailferry's command table: its own commands, then those of
// the dnsctl and auth services.
var program = &command.Program{
	Name: "mailferry",
	Doc: `mailferry migrates mail from a legacy IMAP server to a new provider: it runs
the whole migration in one process (migrate) or one service as a daemon,
verifies, repairs, provisions the new mailboxes and switches DNS.`,
	Commands: slices.Concat(commands, cutoverCommands, dnscli.Commands, authcli.Commands),
}

// errDifferent makes the exit status 1 without another message: the
// report already names what differs.
var errDifferent = fmt.Errorf("differences found: %w", command.ErrFailures)

func main() { program.Main() }

// run runs the command cmd names (its first word; the rest are in args),
// as the mailferry binary does.
func run(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	return program.Run(ctx, append([]string{cmd}, args...), stdout, stderr)
}

// commands are mailferry's own commands.
var commands = []*command.Command{
	{
		Name:      "demo",
		UsageLine: "[-mailboxes N] [-seed N]",
		Short:     "migrate generated mail between two in-process IMAP servers, then verify",
		Long: `Demo needs no configuration and no servers: it fills an in-memory source
IMAP server with generated mail (nested and non-ASCII folders, flags,
keywords, dates), migrates it to an in-memory target through an embedded
nats-server with the code migrate runs, and verifies. It exits 0 when every
mailbox arrived intact.`,
		Setup: func(fs *flag.FlagSet) command.Run {
			mailboxes := fs.Int("mailboxes", 3, "generated mailboxes")
			seed := fs.Uint64("seed", 1, "seed of the generated mail")
			return func(ctx context.Context, stdout, stderr io.Writer) error {
				if *mailboxes < 1 {
					return command.Usagef("-mailboxes must be at least 1")
				}
				return runDemo(ctx, *mailboxes, *seed, stdout, stderr)
			}
		},
	},
	{
		Name:      "migrate",
		UsageLine: "[-c FILE] [-json]",
		Short:     "run extractor and loader for every mailbox, then verify",
		Long: `Migrate runs the extractor and the loader in this process for every mailbox
of mailboxes.file, then verifies. It starts an embedded nats-server unless
nats.url names one. On a terminal it redraws a progress table. It exits 0
only when every mailbox was loaded and verified, 1 otherwise.`,
		Setup: withConfig(func(fs *flag.FlagSet) func(context.Context, *session) error {
			asJSON := jsonFlag(fs)
			return func(ctx context.Context, s *session) error { return runMigrate(ctx, s, *asJSON) }
		}),
	},
	{
		Name:      "verify",
		UsageLine: "[-c FILE] [-mailbox M] [-since-switch] [-resync-flags] [-json]",
		Short:     "compare every mailbox's source and target",
		Long: `Verify compares every mailbox's source and target (of -mailbox if given),
folder by folder and message by message, and names each difference with
the message's folder, UID, size, Date, From, Subject and Message-ID. It
exits 1 when any is found. With -since-switch, mail that reached the target
after its domain's latest dns.switched event is new at target, not a
difference; a domain not switched is verified as without it. Differences
accepted with verify accept are listed as ACCEPTED, with their reason, and
do not count. With -resync-flags, every copy whose flags differ from its
source message's gets the source's flags (source flags win, as imapsync
does on a re-run; changes made at the target since are undone) and is
counted as resynced, not as a difference; it says how many it changed.`,
		Setup: withConfig(func(fs *flag.FlagSet) func(context.Context, *session) error {
			var a verifyArgs
			fs.BoolVar(&a.asJSON, "json", false, "print the report as JSON")
			fs.StringVar(&a.mailbox, "mailbox", "", "only this source mailbox of the mailboxes file")
			fs.BoolVar(&a.sinceSwitch, "since-switch", false, "count mail that reached the target after the domain's switch as new, not extra")
			fs.BoolVar(&a.resyncFlags, "resync-flags", false, "set the target copies' flags to the source's where they differ")
			return func(ctx context.Context, s *session) error { return runVerify(ctx, s, a) }
		}),
	},
	verifyAccept,
	{
		Name:      "status",
		UsageLine: "[-c FILE] [-json] [-watch]",
		Short:     "where every mailbox stands, from JetStream",
		Long: `Status folds the events in JetStream into where every mailbox stands: its
phase and counts, and the totals.`,
		Setup: withConfig(func(fs *flag.FlagSet) func(context.Context, *session) error {
			asJSON := jsonFlag(fs)
			watch := fs.Bool("watch", false, "redraw every two seconds until interrupted")
			return func(ctx context.Context, s *session) error { return runStatus(ctx, s, *asJSON, *watch) }
		}),
	},
	{
		Name:      "dashboard",
		UsageLine: "[-c FILE]",
		Short:     "serve a live page of the migration to ops",
		Long: `Dashboard serves one page (dashboard.listen, 127.0.0.1:9180 by default) that
shows the migration as it runs: per domain and mailbox the phase, messages
and bytes moved, rate, ETA, the dead letters with their reasons and the
recent failures, updated live. Every request needs basic auth (user
dashboard.user, default ops; password in dashboard.password_file, made in
nats.data_dir on first start if unset); beyond loopback it needs
dashboard.cert_file and dashboard.key_file.`,
		Setup: withConfig(func(*flag.FlagSet) func(context.Context, *session) error { return runDashboard }),
	},
	{
		Name:      "enqueue",
		UsageLine: "[-c FILE]",
		Short:     "put a pass over every mailbox on the jobs stream",
		Long: `Enqueue puts a pass over every mailbox on the jobs stream, for extractor and
loader daemons started elsewhere.`,
		Setup: withConfig(func(*flag.FlagSet) func(context.Context, *session) error { return runEnqueue }),
	},
	cutoverPlan,
	deadletterList,
	deadletterShow,
	deadletterRetry,
	replay,
	{
		Name:      "nats",
		UsageLine: "[-c FILE] [-config NATS-SERVER.CONF]",
		Short:     "run a nats-server with JetStream on nats.listen and nats.data_dir",
		Long: `Nats runs the same embedded nats-server migrate starts, as a process of its
own, for daemons on other machines; nats.listen must be set and nats.url
empty.

With -config it runs the server a nats-server configuration file describes
instead (the format of nats-server -c, read by the server's own parser: a
node of a JetStream cluster, see deploy/nats), and declares no streams: the
services declare theirs. A file under which a listener would take a
connection without authentication is refused. -c is then read only when
given (for its log section).`,
		Setup: func(fs *flag.FlagSet) command.Run {
			path := command.ConfigFlag(fs)
			serverConf := fs.String("config", "", "run the server this nats-server configuration file describes")
			return func(ctx context.Context, stdout, stderr io.Writer) error {
				if *serverConf == "" {
					s, err := load(*path, stdout, stderr)
					if err != nil {
						return err
					}
					return runNATS(ctx, s)
				}
				s := &session{cfg: &config.Config{}, stdout: stdout, stderr: stderr}
				if flagSet(fs, "c") {
					var err error
					if s, err = load(*path, stdout, stderr); err != nil {
						return err
					}
				} else {
					s.log, _ = logging.New(stderr, "info", "json", "") // valid constants
				}
				return runNATSConfig(ctx, s, *serverConf)
			}
		},
	},
	daemon.Command("extractor", "run the extractor service", extractor.CheckConfig, func(ctx context.Context, cfg *config.Config, b *broker.Broker, log zerolog.Logger, m *metrics.Metrics) error {
		s, err := extractor.LoadSettings(cfg)
		if err != nil {
			return err
		}
		return (&extractor.Service{Config: cfg, Settings: s, Broker: b, Log: log, Metrics: m}).Run(ctx)
	}),
	daemon.Command("loader", "run the loader service", loader.CheckConfig, func(ctx context.Context, cfg *config.Config, b *broker.Broker, log zerolog.Logger, m *metrics.Metrics) error {
		s, err := loader.LoadSettings(cfg)
		if err != nil {
			return err
		}
		svc := &loader.Service{Config: cfg, Settings: s, Broker: b, Log: log, Metrics: m}
		if cfg.Target.Auth == config.AuthToken {
			if svc.Minter, err = opensrs.NewMinter(cfg); err != nil {
				return err
			}
		}
		return svc.Run(ctx)
	}),
	daemon.Command("dnsctl", "run the dnsctl service (switches DNS on dns cutover requests)", dnsctl.CheckConfig, func(ctx context.Context, cfg *config.Config, b *broker.Broker, log zerolog.Logger, m *metrics.Metrics) error {
		return (&dnsctl.Service{Config: cfg, Broker: b, Log: log, Metrics: m}).Run(ctx)
	}),
	{
		Name:      "delta",
		UsageLine: "[-c FILE]",
		Short:     "enqueue a domain's delta pass once dns.switched's old TTL has expired",
		Long: `Delta runs until SIGINT or SIGTERM: on dns.switched it waits until the old
records' TTL has expired (the broker holds the event back, so the wait
survives restarts) and then enqueues one more pass over that domain's
mailboxes.`,
		Setup: withConfig(func(*flag.FlagSet) func(context.Context, *session) error { return runDelta }),
	},
}

// session is what a command has once its configuration is loaded.
type session struct {
	cfg            *config.Config
	log            zerolog.Logger
	stdout, stderr io.Writer
}

// load reads the configuration at path and makes the logger it asks for;
// a configuration that cannot be used is a ConfigError.
func load(path string, stdout, stderr io.Writer) (*session, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, &command.ConfigError{Err: err}
	}
	log, err := logging.New(stderr, cfg.Log.Level, cfg.Log.Format, "")
	if err != nil {
		return nil, &command.ConfigError{Err: err}
	}
	return &session{cfg: cfg, log: log, stdout: stdout, stderr: stderr}, nil
}

// withConfig declares -c besides the flags setup declares, and runs the
// command setup returns with the configuration loaded. Commands that check
// their flags first, so that a bad command line is refused whatever the
// file holds, call load themselves.
func withConfig(setup func(fs *flag.FlagSet) func(context.Context, *session) error) func(*flag.FlagSet) command.Run {
	return func(fs *flag.FlagSet) command.Run {
		path := command.ConfigFlag(fs)
		run := setup(fs)
		return func(ctx context.Context, stdout, stderr io.Writer) error {
			s, err := load(*path, stdout, stderr)
			if err != nil {
				return err
			}
			return run(ctx, s)
		}
	}
}

func jsonFlag(fs *flag.FlagSet) *bool {
	return fs.Bool("json", false, "print the report as JSON")
}

func runDelta(ctx context.Context, s *session) error {
	boxes, err := inventory(s.cfg)
	if err != nil {
		return err
	}
	return daemon.Run(ctx, "delta", s.cfg, nil, func(ctx context.Context, cfg *config.Config, b *broker.Broker, log zerolog.Logger, _ *metrics.Metrics) error {
		return (&delta.Scheduler{Broker: b, Mailboxes: boxes, Log: log}).Run(ctx)
	})
}

func runMigrate(ctx context.Context, s *session, asJSON bool) error {
	o := migrate.Options{}
	if logging.IsTerminal(s.stderr) {
		o.Display = s.stderr
	}
	res, err := migrate.Run(ctx, s.cfg, s.log, o)
	if res == nil {
		return err
	}
	// A result comes with an error when only recording the verification
	// failed: the operator still sees what was copied and verified.
	perr := printResult(s.stdout, res, asJSON)
	if err != nil {
		return err
	}
	return perr
}

func printResult(w io.Writer, res *migrate.Result, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		res.WriteText(w)
	}
	if !res.OK() {
		return errDifferent
	}
	return nil
}

// runNATS runs the same embedded nats-server as a process of its own, for
// daemons on other machines or for tests that kill it.
func runNATS(ctx context.Context, s *session) error {
	cfg, log := s.cfg, s.log
	if cfg.NATS.URL != "" || cfg.NATS.Listen == "" {
		return &command.ConfigError{Err: errors.New("set nats.listen (and leave nats.url empty) to run a server")}
	}
	daemon.LimitMemory(cfg, daemon.EmbeddedServerMemory, log)
	b, err := broker.Open(ctx, cfg.NATS, "mailferry-nats", log)
	if err != nil {
		return err
	}
	defer b.Close()
	log.Info().Str("listen", cfg.NATS.Listen).Str("data_dir", cfg.NATS.DataDir).Msg("nats-server running")
	<-ctx.Done()
	return nil
}

// runNATSConfig runs the nats-server the configuration file at path
// describes (mailferry nats -config).
func runNATSConfig(ctx context.Context, s *session, path string) error {
	opts, err := broker.ServerOptions(path)
	if err != nil {
		return &command.ConfigError{Err: err}
	}
	// A node of its own: no default heap limit (it holds replicas of
	// every stream); memory_limit of -c's file or GOMEMLIMIT set one.
	daemon.LimitMemory(s.cfg, 0, s.log)
	return broker.RunServer(ctx, opts, s.log)
}

// flagSet reports whether the command line gave the flag name.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func runStatus(ctx context.Context, s *session, asJSON, watch bool) error {
	b, boxes, err := openWithInventory(ctx, s.cfg, s.log, "status", statusNeeds)
	if err != nil {
		return err
	}
	defer b.Close()
	return show(ctx, s.stdout, asJSON, watch, func() (textWriter, error) {
		st, err := status.Read(ctx, b, boxes)
		if err == nil {
			err = st.MarkWaiting(ctx, b.JS, s.cfg, boxes)
		}
		return st, err
	})
}

func runDashboard(ctx context.Context, s *session) error {
	ds, err := dashboard.LoadSettings(s.cfg)
	if err != nil {
		return &command.ConfigError{Err: err}
	}
	b, boxes, err := openWithInventory(ctx, s.cfg, s.log, "dashboard", statusNeeds)
	if err != nil {
		return err
	}
	defer b.Close()
	srv := &dashboard.Server{Settings: ds, Log: s.log,
		Read: func(ctx context.Context) (*dashboard.View, error) { return dashboard.Read(ctx, b, boxes) }}
	return srv.Run(ctx)
}

// textWriter is a report that prints itself as text (and as JSON by its
// fields).
type textWriter interface{ WriteText(w io.Writer) }

// show prints what read returns, as text or JSON; with watch it does so
// again every two seconds, clearing a terminal first, until ctx ends.
func show(ctx context.Context, stdout io.Writer, asJSON, watch bool, read func() (textWriter, error)) error {
	for {
		st, err := read()
		if err != nil {
			return err
		}
		if watch && logging.IsTerminal(stdout) {
			fmt.Fprint(stdout, "\033[H\033[2J")
		}
		if asJSON {
			if err := json.NewEncoder(stdout).Encode(st); err != nil {
				return err
			}
		} else {
			st.WriteText(stdout)
		}
		if !watch {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
}

func runEnqueue(ctx context.Context, s *session) error {
	b, boxes, err := openWithInventory(ctx, s.cfg, s.log, "enqueue", enqueueNeeds)
	if err != nil {
		return err
	}
	defer b.Close()
	pass, err := migrate.Enqueue(ctx, b, boxes)
	if err != nil {
		return err
	}
	fmt.Fprintf(s.stdout, "enqueued %d mailboxes, pass %s\n", len(boxes), pass)
	return nil
}

// runDemo migrates generated mail between two in-process IMAP servers
// through an embedded NATS server, with the code `mailferry migrate` runs,
// and verifies.
func runDemo(ctx context.Context, mailboxes int, seed uint64, stdout, stderr io.Writer) error {
	dir, err := os.MkdirTemp("", "mailferry-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	env, err := demo.Start(ctx, dir, mailboxes, seed)
	if err != nil {
		return fmt.Errorf("start the demo servers: %w", err)
	}
	defer env.Close()
	cfg, err := env.Config()
	if err != nil {
		return err
	}
	log, err := logging.New(stderr, cfg.Log.Level, cfg.Log.Format, "")
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "demo: %d messages (%.1f MiB) in %d mailboxes, embedded NATS in %s\n",
		env.Messages, float64(env.Bytes)/(1<<20), mailboxes, dir)
	return runMigrate(ctx, &session{cfg: cfg, log: log, stdout: stdout, stderr: stderr}, false)
}
