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
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/cmd/mailferry/delta"
	"github.com/mailferry/mailferry/cmd/mailferry/migrate"
	"github.com/mailferry/mailferry/cmd/mailferry/status"
	"github.com/mailferry/mailferry/cmd/mailferry/verify"
	authcli "github.com/mailferry/mailferry/services/auth/cli"
	"github.com/mailferry/mailferry/services/dnsctl"
	dnscli "github.com/mailferry/mailferry/services/dnsctl/cli"
	"github.com/mailferry/mailferry/services/extractor"
	"github.com/mailferry/mailferry/services/loader"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/daemon"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/logging"
)

const usage = `usage: mailferry COMMAND [flags]

commands:
  migrate   -c FILE         run extractor and loader for every mailbox, then verify
  verify    -c FILE [-json] compare every mailbox's source and target
  status    -c FILE [-json] [-watch]  where every mailbox stands, from JetStream
  enqueue   -c FILE         put a pass over every mailbox on the jobs stream
  deadletter list|show|retry -c FILE [-mailbox M] [-seq N] [-all] [-json] [-wait]
                            messages the target refused for good, and retrying them
  replay    -c FILE -mailbox M [-folder F] [-from-seq N | -since RFC3339] [-wait]
                            deliver a mailbox's records to the loader again
  dns plan|apply|verify|rollback|lower-ttl|status|cutover -c FILE ...
                            switch MX and mail records of the domains we host (see services/dnsctl/README.md)
  nats      -c FILE         run a nats-server with JetStream on nats.listen and nats.data_dir
  extractor -c FILE         run the extractor service
  loader    -c FILE         run the loader service
  dnsctl    -c FILE         run the dnsctl service (switches DNS on domain.provisioned)
  delta     -c FILE         enqueue a domain's delta pass once dns.switched's old TTL has expired
`

// errDifferent makes the exit status non-zero without another message.
var errDifferent = errors.New("differences found")

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage+authcli.Usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1], os.Args[2:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, errDifferent), errors.Is(err, dnscli.ErrFailures):
		os.Exit(1)
	case errors.Is(err, flag.ErrHelp), errors.Is(err, authcli.ErrUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "mailferry:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	// Commands with flags of their own.
	switch cmd {
	case "dns":
		return dnscli.Main(ctx, args, stdout, stderr)
	case "users", "provision", "auth":
		return authcli.Main(ctx, cmd, args, stdout, stderr)
	}
	sub := ""
	if cmd == "deadletter" {
		if len(args) == 0 {
			return errors.New("deadletter: want list, show or retry")
		}
		sub, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "mailferry.yaml", "configuration file")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	watch := fs.Bool("watch", false, "status: redraw every two seconds until interrupted")
	var o opsFlags
	fs.StringVar(&o.mailbox, "mailbox", "", "deadletter, replay: the source mailbox")
	fs.StringVar(&o.folder, "folder", "", "replay: only this source folder")
	fs.Uint64Var(&o.fromSeq, "from-seq", 0, "replay: first mail-stream sequence")
	fs.StringVar(&o.since, "since", "", "replay: records stored since this RFC 3339 time")
	fs.Uint64Var(&o.seq, "seq", 0, "deadletter show, retry: the dead letter's sequence")
	fs.BoolVar(&o.all, "all", false, "deadletter retry: every dead letter (of -mailbox if given)")
	fs.BoolVar(&o.wait, "wait", false, "replay, deadletter retry: run a loader here until done")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch cmd {
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage+authcli.Usage)
		return nil
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	log, err := logging.New(stderr, cfg.Log.Level, cfg.Log.Format, "")
	if err != nil {
		return err
	}
	switch cmd {
	case "migrate":
		return runMigrate(ctx, cfg, log, stdout, stderr, *asJSON)
	case "verify":
		return runVerify(ctx, cfg, log, stdout, *asJSON)
	case "status":
		return runStatus(ctx, cfg, log, stdout, *asJSON, *watch)
	case "enqueue":
		return runEnqueue(ctx, cfg, log, stdout)
	case "deadletter":
		return runDeadLetter(ctx, cfg, log, sub, o, stdout, *asJSON)
	case "replay":
		return runReplay(ctx, cfg, log, o, stdout)
	case "nats":
		return runNATS(ctx, cfg, log)
	case "extractor":
		return daemon.Run(ctx, cmd, cfg, func(ctx context.Context, cfg *config.Config, b *broker.Broker, log zerolog.Logger) error {
			return (&extractor.Service{Config: cfg, Broker: b, Log: log}).Run(ctx)
		})
	case "loader":
		return daemon.Run(ctx, cmd, cfg, func(ctx context.Context, cfg *config.Config, b *broker.Broker, log zerolog.Logger) error {
			return (&loader.Service{Config: cfg, Broker: b, Log: log}).Run(ctx)
		})
	case "delta":
		boxes, err := job.ReadInventory(cfg.Mailboxes.File)
		if err != nil {
			return err
		}
		return daemon.Run(ctx, cmd, cfg, func(ctx context.Context, cfg *config.Config, b *broker.Broker, log zerolog.Logger) error {
			return (&delta.Scheduler{Broker: b, Mailboxes: boxes, Log: log}).Run(ctx)
		})
	case "dnsctl":
		return daemon.Run(ctx, cmd, cfg, func(ctx context.Context, cfg *config.Config, b *broker.Broker, log zerolog.Logger) error {
			return (&dnsctl.Service{Config: cfg, Broker: b, Log: log}).Run(ctx)
		})
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

func runMigrate(ctx context.Context, cfg *config.Config, log zerolog.Logger, stdout, stderr io.Writer, asJSON bool) error {
	o := migrate.Options{}
	if isTerminal(stderr) {
		o.Display = stderr
	}
	res, err := migrate.Run(ctx, cfg, log, o)
	if err != nil {
		return err
	}
	return printResult(stdout, res, asJSON)
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

func runVerify(ctx context.Context, cfg *config.Config, log zerolog.Logger, stdout io.Writer, asJSON bool) error {
	boxes, err := job.ReadInventory(cfg.Mailboxes.File)
	if err != nil {
		return err
	}
	r := verifyWithLedger(ctx, cfg, log, boxes)
	if err := migrate.PublishVerified(ctx, cfg, log, r); err != nil {
		log.Warn().Err(err).Msg("verified events not published")
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else {
		r.WriteText(stdout)
	}
	if !r.OK {
		return errDifferent
	}
	return nil
}

// verifyWithLedger verifies boxes with what the loader recorded of copies
// the target altered. The broker is closed again before the caller opens
// its own: two embedded servers cannot share a data directory.
func verifyWithLedger(ctx context.Context, cfg *config.Config, log zerolog.Logger, boxes []job.Mailbox) *verify.Report {
	b, err := broker.Connect(ctx, cfg.NATS, "mailferry-verify", log)
	if err != nil {
		log.Warn().Err(err).Msg("broker unreachable: verifying without the loader's ledger")
		return verify.Mailboxes(ctx, cfg, boxes)
	}
	defer b.Close()
	if err := b.Use(ctx, broker.Needs{Reads: []string{broker.BucketLedger}}); err != nil {
		log.Warn().Err(err).Msg("no ledger: verifying without the loader's ledger")
		return verify.Mailboxes(ctx, cfg, boxes)
	}
	return verify.Mailboxes(ctx, cfg, boxes, verify.WithLedger(b.Ledger))
}

// runNATS runs the same embedded nats-server as a process of its own, for
// daemons on other machines or for tests that kill it.
func runNATS(ctx context.Context, cfg *config.Config, log zerolog.Logger) error {
	if cfg.NATS.URL != "" || cfg.NATS.Listen == "" {
		return errors.New("nats: set nats.listen (and leave nats.url empty) to run a server")
	}
	b, err := broker.Open(ctx, cfg.NATS, "mailferry-nats", log)
	if err != nil {
		return err
	}
	defer b.Close()
	log.Info().Str("listen", cfg.NATS.Listen).Str("data_dir", cfg.NATS.DataDir).Msg("nats-server running")
	<-ctx.Done()
	return nil
}

func runStatus(ctx context.Context, cfg *config.Config, log zerolog.Logger, stdout io.Writer, asJSON, watch bool) error {
	b, boxes, err := openWithInventory(ctx, cfg, log, "status", statusNeeds)
	if err != nil {
		return err
	}
	defer b.Close()
	for {
		st, err := status.Read(ctx, b, boxes)
		if err != nil {
			return err
		}
		if watch && isTerminal(stdout) {
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

func runEnqueue(ctx context.Context, cfg *config.Config, log zerolog.Logger, stdout io.Writer) error {
	b, boxes, err := openWithInventory(ctx, cfg, log, "enqueue", enqueueNeeds)
	if err != nil {
		return err
	}
	defer b.Close()
	pass, err := migrate.Enqueue(ctx, b, boxes)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "enqueued %d mailboxes, pass %s\n", len(boxes), pass)
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
