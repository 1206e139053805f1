package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/cmd/mailferry/migrate"
	"github.com/mailferry/mailferry/cmd/mailferry/verify"
	"github.com/mailferry/mailferry/services/loader"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/command"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/subject"
)

// verifyArgs is the verify command's command line.
type verifyArgs struct {
	asJSON bool
	// mailbox, when set, is the one source mailbox to verify.
	mailbox string
	// sinceSwitch makes mail that reached the target after its domain's
	// switch new at target rather than extra.
	sinceSwitch bool
}

func runVerify(ctx context.Context, s *session, a verifyArgs) error {
	cfg, log, stdout := s.cfg, s.log, s.stdout
	boxes, err := inventory(cfg)
	if err != nil {
		return err
	}
	// Verify maps folders as the loader does, with its section.
	if err := loader.CheckConfig(cfg); err != nil {
		return &command.ConfigError{Err: err}
	}
	if a.mailbox != "" {
		i := slices.IndexFunc(boxes, func(mb job.Mailbox) bool { return mb.SourceUser == a.mailbox })
		if i < 0 {
			return command.Usagef("-mailbox %s is not a source mailbox of %s", a.mailbox, cfg.Mailboxes.File)
		}
		boxes = boxes[i : i+1]
	}
	r, err := verifyBoxes(ctx, cfg, log, boxes, a.sinceSwitch)
	if err != nil {
		return err
	}
	if err := migrate.PublishVerified(ctx, cfg, log, r); err != nil {
		log.Warn().Err(err).Msg("verified events not published")
	}
	if a.asJSON {
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

// verifyBoxes verifies boxes with what the loader recorded of copies the
// target altered and, with sinceSwitch, from the time each mailbox's
// domain was switched on (its latest dns.switched event): mail the target
// received after it is new at target. A domain never switched is
// verified as source = target, and its report says so. The broker is
// closed again before the caller opens its own: two embedded servers
// cannot share a data directory.
func verifyBoxes(ctx context.Context, cfg *config.Config, log zerolog.Logger, boxes []job.Mailbox, sinceSwitch bool) (*verify.Report, error) {
	var opts []verify.Option
	var events jetstream.Stream
	b, err := broker.Connect(ctx, cfg.NATS, "mailferry-verify", log)
	switch {
	case err != nil && sinceSwitch:
		return nil, fmt.Errorf("-since-switch reads dns.switched from the broker: %w", err)
	case err != nil:
		log.Warn().Err(err).Msg("broker unreachable: verifying without the loader's ledger")
	default:
		defer b.Close()
		if err := b.Use(ctx, broker.Needs{Reads: []string{broker.BucketLedger}}); err != nil {
			log.Warn().Err(err).Msg("no ledger: verifying without the loader's ledger")
		} else {
			opts = append(opts, verify.WithLedger(b.Ledger))
		}
		if sinceSwitch {
			var missing *broker.MissingError
			err := b.Use(ctx, broker.Needs{Reads: []string{broker.StreamEvents}})
			switch {
			case errors.As(err, &missing):
				// Nothing was ever switched.
			case err != nil:
				return nil, fmt.Errorf("-since-switch: %w", err)
			default:
				if events, err = b.JS.Stream(ctx, broker.StreamEvents); err != nil {
					return nil, fmt.Errorf("-since-switch: %w", err)
				}
			}
		}
	}
	r := &verify.Report{OK: true}
	for _, mb := range boxes {
		o, note := opts, ""
		if sinceSwitch {
			at, domain, err := lastSwitch(ctx, events, mb)
			if err != nil {
				return nil, err
			}
			if at.IsZero() {
				note = fmt.Sprintf("no dns.switched event for %s: verified as source = target", domain)
				log.Info().Str("mailbox", mb.SourceUser).Str("domain", domain).Msg("domain not switched: verifying as source = target")
			} else {
				o = append(slices.Clip(opts), verify.NewAfter(at))
			}
		}
		mr := verify.Mailbox(ctx, cfg, mb, o...)
		mr.Note = note
		r.OK = r.OK && mr.OK
		r.Mailboxes = append(r.Mailboxes, mr)
	}
	return r, nil
}

// lastSwitch is when the latest dns.switched event of mb's domain (its
// source address's; its target address's when that domain is another)
// says the switch was verified, and the domain it looked for; zero when
// there is none. events may be nil: no event was ever published.
func lastSwitch(ctx context.Context, events jetstream.Stream, mb job.Mailbox) (time.Time, string, error) {
	domains := []string{domainOf(mb.SourceUser)}
	if d := domainOf(mb.TargetUser); d != "" && d != domains[0] {
		domains = append(domains, d)
	}
	var latest time.Time
	var seq uint64
	for _, d := range domains {
		if events == nil || d == "" {
			continue
		}
		// dnsctl keys the event with the domain as configured; the
		// inventory may spell it in another case.
		for _, key := range slices.Compact([]string{d, strings.ToLower(d)}) {
			raw, err := events.GetLastMsgForSubject(ctx, subject.Event(event.DNSSwitched, key))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				return time.Time{}, d, fmt.Errorf("read dns.switched of %s: %w", key, err)
			}
			if raw.Sequence < seq {
				continue
			}
			e, err := event.Decode(raw.Data)
			if err != nil {
				return time.Time{}, d, fmt.Errorf("read dns.switched of %s: %w", key, err)
			}
			var data event.DNSSwitchedData
			if err := e.DataAs(&data); err != nil {
				return time.Time{}, d, fmt.Errorf("read dns.switched of %s: %w", key, err)
			}
			// The switch took effect when every server served it:
			// VerifiedAt, which a repeat of the event keeps.
			seq, latest = raw.Sequence, data.VerifiedAt
			if latest.IsZero() {
				latest = e.Time
			}
		}
	}
	return latest, strings.Join(domains, " or "), nil
}

// domainOf is address's domain, without a trailing dot.
func domainOf(address string) string {
	at := strings.LastIndexByte(address, '@')
	if at < 0 {
		return ""
	}
	return strings.TrimSuffix(address[at+1:], ".")
}
