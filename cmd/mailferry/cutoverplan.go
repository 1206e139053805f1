package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"

	"github.com/mailferry/mailferry/cmd/mailferry/cutover/plan"
	"github.com/mailferry/mailferry/services/dnsctl"
	"github.com/mailferry/mailferry/services/dnsctl/dnsconfig"
	"github.com/mailferry/mailferry/services/extractor"
	"github.com/mailferry/mailferry/shared/command"
	"github.com/mailferry/mailferry/shared/loginlimit"
)

// cutoverPlan is `mailferry cutover plan`: the campaign's dry run.
var cutoverPlan = &command.Command{
	Name:      "cutover plan",
	UsageLine: "[-c FILE] [-json]",
	Short:     "dry run: each domain's mailboxes, mail, estimated copy time and DNS change",
	Long: `Plan changes nothing. Per domain (the domain of each source mailbox of
mailboxes.file, lower case) it shows each mailbox's folders, messages and
bytes, read from the source with LIST and STATUS only (never SELECT or
FETCH), logged in as the extractor does, extractor.concurrency mailboxes
at once (bounded by source.connections). Bytes are the sum of STATUS SIZE
(RFC 8438); a server without STATUS=SIZE gets messages times a mean size,
marked "~" (bytes_estimated in -json).

The estimated copy time of a domain is the longer of its bytes /
bytes-per-second and its messages / messages-per-second, and at least
its largest mailbox at one mailbox's rates. The rates are measured from
the events stream when earlier passes moved at least 1 MiB: the bytes and
messages of every mailbox.loaded event, divided by the time during which
at least one of those passes ran (from its mailbox.extracting event, else
its mailbox.queued, to its mailbox.loaded), so passes run side by side
count at the concurrency they had; one mailbox's rates divide by the
passes' durations summed. Otherwise the default is 10 MB/s and 300
messages/s in all and a quarter of that per mailbox, about two fifths and
a third of what the README benchmark moved between two local Dovecots
(25.6 MB/s, 925 messages/s, 4 mailboxes at once). The mean size for
unknown bytes is the measured one, else 100 KiB.

The DNS line is dnsctl's plan (as dns plan, not stored): the records the
switch removes and adds, or why the domain is skipped (MX hosted
elsewhere, ...); without a dns section, "not switched: no dns section in
the configuration". The domain's campaign phase is shown when the
campaign has it: the broker at nats.url, or the embedded one on
nats.data_dir when that holds a store (a server answering on nats.listen
is used as it is; else it is started for the time of the plan, as status
does). Without a broker the plan still runs and says what it left out.

A mailbox that cannot be read is named with the error; the others are
planned and the exit status is 1.`,
	Setup: withConfig(func(fs *flag.FlagSet) func(context.Context, *session) error {
		asJSON := jsonFlag(fs)
		return func(ctx context.Context, s *session) error { return runCutoverPlan(ctx, s, *asJSON) }
	}),
}

func runCutoverPlan(ctx context.Context, s *session, asJSON bool) error {
	cfg, log := s.cfg, s.log
	boxes, err := inventory(cfg)
	if err != nil {
		return err
	}
	ext, err := extractor.LoadSettings(cfg)
	if err != nil {
		return &command.ConfigError{Err: err}
	}
	d, err := dnsconfig.Load(cfg)
	if err != nil {
		return &command.ConfigError{Err: err}
	}
	o := plan.Options{Config: cfg, Mailboxes: boxes, Concurrency: min(ext.Concurrency, cfg.Source.Connections), Log: log}
	if d.Enabled() {
		eng, err := dnsctl.NewPlanner(d, log)
		if err != nil {
			return &command.ConfigError{Err: err}
		}
		o.DNS = eng
	}
	st := plan.OpenState(ctx, cfg.NATS, log)
	defer st.Close()
	o.Phases, o.Notes, o.Throughput, o.Credentials = st.Phases, st.Notes, plan.Default(), st.JS
	if st.LoginFailures != nil {
		o.Logins = loginlimit.New(st.LoginFailures, "source", cfg.Source.MaxLoginFailures, nil)
	}
	if st.Events != nil {
		t, err := plan.Measure(ctx, st.Events)
		if err != nil {
			o.Notes = append(o.Notes, fmt.Sprintf("throughput not measured: %v", err))
		}
		o.Throughput = t
	}
	p, err := plan.Make(ctx, o)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(s.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(p); err != nil {
			return err
		}
	} else {
		p.WriteText(s.stdout)
	}
	if failed := p.Failed(); len(failed) > 0 {
		return fmt.Errorf("%d of %d mailboxes not read: %w", len(failed), len(boxes), command.ErrFailures)
	}
	return nil
}
