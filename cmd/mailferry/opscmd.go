package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/cmd/mailferry/migrate"
	"github.com/mailferry/mailferry/cmd/mailferry/ops"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/job"
)

// opsFlags are the flags of the repair commands.
type opsFlags struct {
	mailbox, folder, since string
	fromSeq, seq           uint64
	all, wait              bool
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

func runDeadLetter(ctx context.Context, cfg *config.Config, log zerolog.Logger, sub string, o opsFlags, stdout io.Writer, asJSON bool) error {
	b, err := broker.Connect(ctx, cfg.NATS, "mailferry-deadletter", log)
	if err != nil {
		return err
	}
	defer b.Close()
	needs := broker.Needs{Reads: []string{broker.StreamDead}}
	if sub == "retry" {
		needs = broker.Needs{Writes: replayNeeds.Writes, Reads: append([]string{broker.StreamDead}, replayNeeds.Reads...)}
	}
	if err := b.Use(ctx, needs); err != nil {
		return err
	}
	switch sub {
	case "list":
		dead, err := ops.ListDead(ctx, b, o.mailbox)
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
	case "show":
		d, err := ops.ShowDead(ctx, b, o.seq)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(d)
	case "retry":
		return retryDead(ctx, cfg, b, log, o, stdout)
	}
	return fmt.Errorf("deadletter %q: want list, show or retry", sub)
}

func retryDead(ctx context.Context, cfg *config.Config, b *broker.Broker, log zerolog.Logger, o opsFlags, stdout io.Writer) error {
	boxes, err := job.ReadInventory(cfg.Mailboxes.File)
	if err != nil {
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
	case o.all || o.mailbox != "":
		if dead, err = ops.ListDead(ctx, b, o.mailbox); err != nil {
			return err
		}
	default:
		return errors.New("deadletter retry: give -seq N, -mailbox M or -all")
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

func runReplay(ctx context.Context, cfg *config.Config, log zerolog.Logger, o opsFlags, stdout io.Writer) error {
	if o.mailbox == "" {
		return errors.New("replay: -mailbox is required")
	}
	r := ops.ReplayRequest{Mailbox: o.mailbox, Folder: o.folder, FromSeq: o.fromSeq}
	if o.since != "" {
		t, err := time.Parse(time.RFC3339, o.since)
		if err != nil {
			return fmt.Errorf("replay -since: %w", err)
		}
		r.Since = t
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
	if !o.wait {
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
)

// openWithInventory reads the mailboxes file and connects to the broker,
// what every command about the migration's state needs first.
func openWithInventory(ctx context.Context, cfg *config.Config, log zerolog.Logger, name string, needs broker.Needs) (*broker.Broker, []job.Mailbox, error) {
	boxes, err := job.ReadInventory(cfg.Mailboxes.File)
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
