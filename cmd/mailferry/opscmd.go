package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/cmd/mailferry/migrate"
	"github.com/mailferry/mailferry/cmd/mailferry/ops"
	"github.com/mailferry/mailferry/services/loader"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/command"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/job"
)

// The repair commands: dead letters and replays.
var (
	deadletterList = &command.Command{
		Name:      "deadletter list",
		UsageLine: "[-c FILE] [-mailbox M] [-json]",
		Short:     "list the messages the target refused for good",
		Long: `Deadletter list shows every dead letter (of -mailbox if given): its
sequence, time, mailbox, folder and UID, size and the target's answer.`,
		Setup: func(fs *flag.FlagSet) command.Run {
			path := command.ConfigFlag(fs)
			mailbox := fs.String("mailbox", "", "only this source mailbox")
			asJSON := jsonFlag(fs)
			return func(ctx context.Context, stdout, stderr io.Writer) error {
				return withDead(ctx, *path, deadNeeds, stdout, stderr, func(ctx context.Context, s *session, b *broker.Broker) error {
					return listDead(ctx, b, *mailbox, stdout, *asJSON)
				})
			}
		},
	}
	deadletterShow = &command.Command{
		Name:      "deadletter show",
		UsageLine: "[-c FILE] -seq N",
		Short:     "print one dead letter as JSON",
		Long:      `Deadletter show prints the dead letter of sequence N as JSON.`,
		Setup: func(fs *flag.FlagSet) command.Run {
			path := command.ConfigFlag(fs)
			seq := fs.Uint64("seq", 0, "the dead letter's sequence")
			return func(ctx context.Context, stdout, stderr io.Writer) error {
				if *seq == 0 {
					return command.Usagef("pass -seq N")
				}
				return withDead(ctx, *path, deadNeeds, stdout, stderr, func(ctx context.Context, s *session, b *broker.Broker) error {
					d, err := ops.ShowDead(ctx, b, *seq)
					if err != nil {
						return err
					}
					enc := json.NewEncoder(stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(d)
				})
			}
		},
	}
	deadletterRetry = &command.Command{
		Name:      "deadletter retry",
		UsageLine: "[-c FILE] (-seq N | -mailbox M | -all) [-wait]",
		Short:     "retry dead letters once the target accepts them",
		Long: `Deadletter retry enqueues a retry of one dead letter (-seq), of a mailbox's
(-mailbox) or of all (-all); the loader service appends them. With -wait a
loader runs here until they are done, and the exit status is 1 when a
mailbox did not load.`,
		Setup: func(fs *flag.FlagSet) command.Run {
			path := command.ConfigFlag(fs)
			var o retryFlags
			fs.Uint64Var(&o.seq, "seq", 0, "the dead letter's sequence")
			fs.StringVar(&o.mailbox, "mailbox", "", "every dead letter of this source mailbox")
			fs.BoolVar(&o.all, "all", false, "every dead letter")
			fs.BoolVar(&o.wait, "wait", false, "run a loader here until the retry is done")
			return func(ctx context.Context, stdout, stderr io.Writer) error {
				switch {
				case o.seq != 0 && (o.all || o.mailbox != ""):
					return command.Usagef("pass -seq N alone, or -mailbox M or -all")
				case o.seq == 0 && !o.all && o.mailbox == "":
					return command.Usagef("pass -seq N, -mailbox M or -all")
				}
				return withDead(ctx, *path, retryNeeds, stdout, stderr, func(ctx context.Context, s *session, b *broker.Broker) error {
					return retryDead(ctx, s.cfg, b, s.log, o, stdout)
				})
			}
		},
	}
	replay = &command.Command{
		Name:      "replay",
		UsageLine: "[-c FILE] -mailbox M [-folder F] [-from-seq N | -since RFC3339] [-wait]",
		Short:     "deliver a mailbox's records to the loader again",
		Long: `Replay delivers a mailbox's records from the mail stream to the loader
again, without the source: the loader appends what the target lacks. It
fails when records it needs have passed the stream's retention. With -wait
a loader runs here until the replay is done, and the exit status is 1 when
the mailbox did not load.`,
		Setup: func(fs *flag.FlagSet) command.Run {
			path := command.ConfigFlag(fs)
			var o replayFlags
			fs.StringVar(&o.mailbox, "mailbox", "", "the source mailbox (required)")
			fs.StringVar(&o.folder, "folder", "", "only this source folder")
			fs.Uint64Var(&o.fromSeq, "from-seq", 0, "first mail-stream sequence")
			fs.StringVar(&o.since, "since", "", "records stored since this RFC 3339 time")
			fs.BoolVar(&o.wait, "wait", false, "run a loader here until the replay is done")
			return func(ctx context.Context, stdout, stderr io.Writer) error {
				r, err := o.request()
				if err != nil {
					return err
				}
				s, err := load(*path, stdout, stderr)
				if err != nil {
					return err
				}
				return runReplay(ctx, s, r, o.wait)
			}
		},
	}
)

// retryFlags are the flags of deadletter retry.
type retryFlags struct {
	mailbox   string
	seq       uint64
	all, wait bool
}

// replayFlags are the flags of replay.
type replayFlags struct {
	mailbox, folder, since string
	fromSeq                uint64
	wait                   bool
}

// request checks the flags and makes the replay they ask for.
func (o replayFlags) request() (ops.ReplayRequest, error) {
	if o.mailbox == "" {
		return ops.ReplayRequest{}, command.Usagef("pass -mailbox M")
	}
	if o.fromSeq != 0 && o.since != "" {
		return ops.ReplayRequest{}, command.Usagef("pass -from-seq N or -since T, not both")
	}
	r := ops.ReplayRequest{Mailbox: o.mailbox, Folder: o.folder, FromSeq: o.fromSeq}
	if o.since != "" {
		t, err := time.Parse(time.RFC3339, o.since)
		if err != nil {
			return r, &command.UsageError{Err: fmt.Errorf("-since: %w", err)}
		}
		r.Since = t
	}
	return r, nil
}

// checkLoader refuses a bad loader section when -wait will run a loader
// here, before anything is enqueued.
func checkLoader(cfg *config.Config, wait bool) error {
	if !wait {
		return nil
	}
	if err := loader.CheckConfig(cfg); err != nil {
		return &command.ConfigError{Err: err}
	}
	return nil
}

// await runs a loader here until the pass's jobs are done, when asked to.
func await(ctx context.Context, cfg *config.Config, b *broker.Broker, log zerolog.Logger, boxes []job.Mailbox, pass string, since uint64, stdout io.Writer) error {
	res, err := migrate.Await(ctx, cfg, b, log, boxes, pass, since)
	if err != nil {
		return err
	}
	failed := 0
	for _, p := range res {
		fmt.Fprintf(stdout, "%s: %s, %d appended, %d already there, %d dead-lettered\n", p.Mailbox, p.Phase, p.Appended, p.Skipped, p.Dead)
		if p.Phase != migrate.PhaseLoaded {
			failed++
			fmt.Fprintf(stdout, "  %s\n", p.LastError)
		}
	}
	if failed > 0 {
		return errDifferent
	}
	return nil
}

// withDead runs f with the configuration at path loaded and the broker
// open with what f needs (the dead letters at least).
func withDead(ctx context.Context, path string, needs broker.Needs, stdout, stderr io.Writer, f func(context.Context, *session, *broker.Broker) error) error {
	s, err := load(path, stdout, stderr)
	if err != nil {
		return err
	}
	b, err := broker.Connect(ctx, s.cfg.NATS, "mailferry-deadletter", s.log)
	if err != nil {
		return err
	}
	defer b.Close()
	if err := b.Use(ctx, needs); err != nil {
		return err
	}
	return f(ctx, s, b)
}

func listDead(ctx context.Context, b *broker.Broker, mailbox string, stdout io.Writer, asJSON bool) error {
	dead, err := ops.ListDead(ctx, b, mailbox)
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(dead)
	}
	for _, d := range dead {
		fmt.Fprintf(stdout, "%6d  %s  %s  %q uid %d  %d bytes  %s\n", d.Seq, d.Time.Format(time.RFC3339), d.Mailbox, d.Folder, d.UID, d.Size, d.Response)
	}
	fmt.Fprintf(stdout, "%d dead letters\n", len(dead))
	return nil
}

func retryDead(ctx context.Context, cfg *config.Config, b *broker.Broker, log zerolog.Logger, o retryFlags, stdout io.Writer) error {
	boxes, err := inventory(cfg)
	if err != nil {
		return err
	}
	if err := checkLoader(cfg, o.wait); err != nil {
		return err
	}
	var dead []ops.Dead
	switch {
	case o.seq != 0:
		d, err := ops.ShowDead(ctx, b, o.seq)
		if err != nil {
			return err
		}
		dead = []ops.Dead{*d}
	default: // -all or -mailbox
		if dead, err = ops.ListDead(ctx, b, o.mailbox); err != nil {
			return err
		}
	}
	since, err := migrate.EventsEnd(ctx, b)
	if err != nil {
		return err
	}
	n, pass, err := ops.Retry(ctx, b, boxes, dead)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "enqueued a retry of %d dead letters; the loader service appends them\n", n)
	if !o.wait {
		return nil
	}
	return await(ctx, cfg, b, log, affected(boxes, dead), pass, since, stdout)
}

func runReplay(ctx context.Context, s *session, r ops.ReplayRequest, wait bool) error {
	cfg, log, stdout := s.cfg, s.log, s.stdout
	if err := checkLoader(cfg, wait); err != nil {
		return err
	}
	b, boxes, err := openWithInventory(ctx, cfg, log, "replay", replayNeeds)
	if err != nil {
		return err
	}
	defer b.Close()
	since, err := migrate.EventsEnd(ctx, b)
	if err != nil {
		return err
	}
	j, err := ops.Replay(ctx, b, boxes, r)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "enqueued replay %s of %s from sequence %d to %d; the loader service appends what the target lacks\n",
		j.Pass, j.SourceUser, j.Replay.FromSeq, j.Replay.UntilSeq)
	if !wait {
		return nil
	}
	return await(ctx, cfg, b, log, []job.Mailbox{j.Mailbox}, j.Pass, since, stdout)
}

// affected lists the mailboxes the dead letters belong to.
func affected(boxes []job.Mailbox, dead []ops.Dead) []job.Mailbox {
	var out []job.Mailbox
	for _, mb := range boxes {
		for _, d := range dead {
			if d.Mailbox == mb.SourceUser {
				out = append(out, mb)
				break
			}
		}
	}
	return out
}

// What the commands about the migration's state write and read.
var (
	// replayNeeds: replay and deadletter retry enqueue a job, read the
	// mail stream and follow events (and with -wait run a loader here).
	replayNeeds = broker.Needs{Writes: []string{broker.StreamJobs, broker.StreamEvents}, Reads: []string{broker.StreamMail}}
	// statusNeeds declares rather than binds: on a fresh broker "nothing
	// has happened yet" is the answer, not an error, and neither has a
	// setting a file could drift (only replicas and the dedup window).
	statusNeeds  = broker.Needs{Writes: []string{broker.StreamEvents, broker.BucketProgress}}
	enqueueNeeds = broker.Needs{Writes: []string{broker.StreamJobs, broker.StreamEvents}}
	// deadNeeds: listing and showing dead letters reads them.
	deadNeeds = broker.Needs{Reads: []string{broker.StreamDead}}
	// retryNeeds: a retry reads the dead letters and enqueues as replay.
	retryNeeds = broker.Needs{Writes: replayNeeds.Writes, Reads: append([]string{broker.StreamDead}, replayNeeds.Reads...)}
)

// inventory reads the mailboxes file the configuration names: a file
// missing or malformed is a configuration error (exit status 2).
func inventory(cfg *config.Config) ([]job.Mailbox, error) {
	boxes, err := job.ReadInventory(cfg.Mailboxes.File)
	if err != nil {
		return nil, &command.ConfigError{Err: err}
	}
	return boxes, nil
}

// openWithInventory reads the mailboxes file and connects to the broker,
// what every command about the migration's state needs first.
func openWithInventory(ctx context.Context, cfg *config.Config, log zerolog.Logger, name string, needs broker.Needs) (*broker.Broker, []job.Mailbox, error) {
	boxes, err := inventory(cfg)
	if err != nil {
		return nil, nil, err
	}
	b, err := broker.Connect(ctx, cfg.NATS, "mailferry-"+name, log)
	if err != nil {
		return nil, nil, err
	}
	if err := b.Use(ctx, needs); err != nil {
		b.Close()
		return nil, nil, err
	}
	return b, boxes, nil
}
