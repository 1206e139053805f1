package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/cmd/mailferry/migrate"
	"github.com/mailferry/mailferry/cmd/mailferry/verify"
	"github.com/mailferry/mailferry/services/loader"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/campaign"
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
	// resyncFlags sets the flags of every copy whose flags differ from
	// its source message's to the source's (verify.ResyncFlags).
	resyncFlags bool
}

// verifiable reads the inventory and checks the loader's section: verify
// maps folders as the loader does, with it.
func verifiable(cfg *config.Config) ([]job.Mailbox, error) {
	boxes, err := inventory(cfg)
	if err != nil {
		return nil, err
	}
	if err := loader.CheckConfig(cfg); err != nil {
		return nil, &command.ConfigError{Err: err}
	}
	return boxes, nil
}

func runVerify(ctx context.Context, s *session, a verifyArgs) error {
	cfg, log, stdout := s.cfg, s.log, s.stdout
	boxes, err := verifiable(cfg)
	if err != nil {
		return err
	}
	if a.mailbox != "" {
		i := slices.IndexFunc(boxes, func(mb job.Mailbox) bool { return mb.SourceUser == a.mailbox })
		if i < 0 {
			return command.Usagef("-mailbox %s is not a source mailbox of %s", a.mailbox, cfg.Mailboxes.File)
		}
		boxes = boxes[i : i+1]
	}
	var extra []verify.Option
	if a.resyncFlags {
		extra = append(extra, verify.ResyncFlags())
	}
	r, err := verifyBoxes(ctx, cfg, log, boxes, a.sinceSwitch, extra...)
	if err != nil {
		return err
	}
	resynced := 0
	for _, m := range r.Mailboxes {
		resynced += m.Resynced
	}
	if a.resyncFlags {
		log.Info().Int("messages", resynced).Int("mailboxes", len(r.Mailboxes)).Msg("flags resynced from the source")
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
		if a.resyncFlags {
			fmt.Fprintf(stdout, "resync-flags: set the flags of %d messages at the target to the source's\n", resynced)
		}
	}
	if !r.OK {
		return errDifferent
	}
	return nil
}

// verifyBoxes verifies boxes with what the loader recorded of copies the
// target altered, with the differences accepted before reported as
// accepted, and, with sinceSwitch, from the time each mailbox's
// domain was switched on (its latest dns.switched event): mail the target
// received after it is new at target. A domain never switched is
// verified as source = target, and its report says so. extra are passed
// on to every mailbox's verification. The broker is closed again before
// the caller opens its own: two embedded servers cannot share a data
// directory.
func verifyBoxes(ctx context.Context, cfg *config.Config, log zerolog.Logger, boxes []job.Mailbox, sinceSwitch bool, extra ...verify.Option) (*verify.Report, error) {
	opts := slices.Clip(extra)
	var events jetstream.Stream
	b, err := broker.Connect(ctx, cfg.NATS, "mailferry-verify", log)
	switch {
	case err != nil && sinceSwitch:
		return nil, fmt.Errorf("-since-switch reads dns.switched from the broker: %w", err)
	case err != nil && cfg.Target.Auth == config.AuthToken:
		return nil, fmt.Errorf("target auth token: the login tokens are in the broker: %w", err)
	case err != nil:
		log.Warn().Err(err).Msg("broker unreachable: verifying without the loader's ledger")
	default:
		defer b.Close()
		tokens, err := verify.TargetTokens(ctx, cfg, b, log)
		if err != nil {
			return nil, err
		}
		if tokens != nil {
			opts = append(opts, tokens)
		}
		// Mailboxes without a source password file log in with what
		// their users handed over at sign-in.
		opts = append(opts, verify.SourceCredentials(b.JS))
		if err := b.Use(ctx, broker.Needs{Reads: []string{broker.BucketLedger}}); err != nil {
			log.Warn().Err(err).Msg("no ledger: verifying without the loader's ledger")
		} else {
			opts = append(opts, verify.WithLedger(b.Ledger))
		}
		// Its source logins count with the extractor's: a wrong password
		// is not tried again within the hour.
		if err := b.Use(ctx, broker.Needs{Writes: []string{broker.BucketLoginFailures}}); err != nil {
			log.Warn().Err(err).Msg("refused source logins not shared: verifying without their limit")
		} else {
			opts = append(opts, verify.SourceLogins(b.LoginFailures, cfg))
		}
		// Differences accepted before are reported as accepted; a
		// bucket that cannot be read leaves them differences.
		if kv, err := verify.AcceptedBucket(ctx, b); err != nil {
			log.Warn().Err(err).Msg("accepted differences unreadable: reporting them as differences")
		} else if kv != nil {
			opts = append(opts, verify.WithAcceptedFrom(kv))
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

// verifyAccept is `verify accept`: it records known, explained
// differences of a mailbox so that its domain can close.
var verifyAccept = &command.Command{
	Name:      "verify accept",
	UsageLine: "[-c FILE] -mailbox M -reason TEXT [-folder F] [-all | -uid N...] [-since-switch]",
	Short:     "accept a mailbox's known, explained differences",
	Long: `Verify accept verifies mailbox M as verify does and records the differences
chosen as accepted, with the reason, who accepted them and when: every later
verification (verify, migrate, the cutover) reports them as ACCEPTED, with
the reason, and they no longer make the mailbox, or its domain, fail.
Choose them with -all (every difference), -folder F (those of folder F,
source or target name) and -uid N (those of source or target UID N; repeat
it or separate UIDs by commas; with -folder only in F). It prints what it
accepted, and "nothing to accept" when the mailbox has no difference.

An accepted difference is recognised again by its kind and folder and the
message's content hash or Message-ID, never by UID: it stays accepted when
the message is appended to the target again under another UID. Every copy
of the same message in that folder is accepted with it. The records are
kept in the campaign bucket (accepted.<domain>.<mailbox>). Run verify
-mailbox M afterwards to record the mailbox's new verification.`,
	Setup: func(fs *flag.FlagSet) command.Run {
		path := command.ConfigFlag(fs)
		var a acceptArgs
		fs.StringVar(&a.mailbox, "mailbox", "", "the source mailbox (required)")
		fs.StringVar(&a.reason, "reason", "", "why the differences may stand (required)")
		fs.StringVar(&a.folder, "folder", "", "only differences in this folder (source or target name)")
		fs.BoolVar(&a.all, "all", false, "every difference (of -folder, if given)")
		fs.Var(&a.uids, "uid", "only the difference of this source or target UID (repeatable, or comma-separated)")
		fs.BoolVar(&a.sinceSwitch, "since-switch", false, "verify as verify -since-switch does: mail new at the target is no difference")
		return func(ctx context.Context, stdout, stderr io.Writer) error {
			a.reason = strings.TrimSpace(a.reason)
			switch {
			case a.mailbox == "":
				return command.Usagef("-mailbox M is required: differences are accepted one mailbox at a time")
			case a.reason == "":
				return command.Usagef("-reason TEXT is required: say why the differences may stand")
			case a.all && len(a.uids) > 0:
				return command.Usagef("pass -all or -uid, not both")
			case !a.all && len(a.uids) == 0 && a.folder == "":
				return command.Usagef("choose the differences: -all, -folder F or -uid N")
			}
			s, err := load(*path, stdout, stderr)
			if err != nil {
				return err
			}
			return runVerifyAccept(ctx, s, a)
		}
	},
}

// acceptArgs is the verify accept command's command line.
type acceptArgs struct {
	mailbox, reason, folder string
	all, sinceSwitch        bool
	uids                    uidList
}

// uidList is -uid: repeatable, each a UID or several separated by commas.
type uidList []uint32

// String is the list as -uid takes it.
func (l *uidList) String() string {
	parts := make([]string, 0, len(*l))
	for _, u := range *l {
		parts = append(parts, strconv.FormatUint(uint64(u), 10))
	}
	return strings.Join(parts, ",")
}

// Set adds the UIDs of one -uid.
func (l *uidList) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		u, err := strconv.ParseUint(strings.TrimSpace(part), 10, 32)
		if err != nil || u == 0 {
			return fmt.Errorf("%q is not a UID", part)
		}
		*l = append(*l, uint32(u))
	}
	return nil
}

// selects reports whether a's -folder and -uid choose difference d of
// folder report f.
func (a acceptArgs) selects(f verify.FolderReport, d verify.Diff) bool {
	if a.folder != "" && a.folder != d.Folder && a.folder != f.Target && !slices.Contains(f.Sources, a.folder) {
		return false
	}
	return len(a.uids) == 0 || slices.Contains(a.uids, d.UID) || d.TargetUID != 0 && slices.Contains(a.uids, d.TargetUID)
}

func runVerifyAccept(ctx context.Context, s *session, a acceptArgs) error {
	cfg, log, stdout := s.cfg, s.log, s.stdout
	boxes, err := verifiable(cfg)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(boxes, func(mb job.Mailbox) bool { return mb.SourceUser == a.mailbox })
	if i < 0 {
		return command.Usagef("-mailbox %s is not a source mailbox of %s", a.mailbox, cfg.Mailboxes.File)
	}
	r, err := verifyBoxes(ctx, cfg, log, boxes[i:i+1], a.sinceSwitch)
	if err != nil {
		return err
	}
	m := r.Mailboxes[0]
	if m.Error != "" {
		return fmt.Errorf("verify %s: %s", a.mailbox, m.Error)
	}
	var found int
	var chosen []verify.Diff
	var before []verify.AcceptedDiff
	for _, f := range m.Folders {
		found += len(f.Differences)
		for _, d := range f.Differences {
			if a.selects(f, d) {
				chosen = append(chosen, d)
			}
		}
		for _, d := range f.Accepted {
			if a.selects(f, d.Diff) {
				before = append(before, d)
			}
		}
	}
	if found == 0 {
		fmt.Fprintf(stdout, "nothing to accept: %s verifies clean (%d differences accepted before)\n", a.mailbox, m.Accepted)
		return nil
	}
	if len(chosen) == 0 && len(before) == 0 {
		var sel []string
		if a.folder != "" {
			sel = append(sel, fmt.Sprintf("in folder %q", a.folder))
		}
		if len(a.uids) > 0 {
			sel = append(sel, "of uid "+a.uids.String())
		}
		return fmt.Errorf("none of the %d differences of %s is %s (verify -mailbox %s names them)",
			found, a.mailbox, strings.Join(sel, " and "), a.mailbox)
	}
	by, at := whoAccepts(), time.Now()
	as := make([]verify.Accepted, 0, len(chosen))
	for _, d := range chosen {
		as = append(as, verify.Accept(a.mailbox, d, a.reason, by, at))
	}
	added, err := storeAccepted(ctx, cfg, log, a.mailbox, as)
	if err != nil {
		return err
	}
	for _, d := range chosen {
		fmt.Fprintf(stdout, "accepted %s\n", describeDiff(d))
	}
	for _, d := range before {
		fmt.Fprintf(stdout, "already accepted %s (%s)\n", describeDiff(d.Diff), d.Reason)
	}
	log.Info().Str("mailbox", a.mailbox).Int("differences", len(chosen)).Int("records", len(added)).Str("by", by).Str("reason", a.reason).Msg("differences accepted")
	fmt.Fprintf(stdout, "accepted %d differences of %s (%d left): %s\n", len(chosen), a.mailbox, found-len(chosen), a.reason)
	if len(chosen) > 0 {
		fmt.Fprintf(stdout, "run mailferry verify -mailbox %s to record its verification\n", a.mailbox)
	}
	return nil
}

// describeDiff names a difference on one line, as a person would find
// its message.
func describeDiff(d verify.Diff) string {
	return fmt.Sprintf("%s %q uid %d sha256 %.16s subject %q message-id %q", d.Kind, d.Folder, d.UID, d.SHA256, d.Subject, d.MessageID)
}

// storeAccepted adds as to the mailbox's accepted differences in the
// campaign bucket, declaring the bucket as the campaign's writers do.
func storeAccepted(ctx context.Context, cfg *config.Config, log zerolog.Logger, mailbox string, as []verify.Accepted) ([]verify.Accepted, error) {
	if len(as) == 0 {
		return nil, nil
	}
	b, err := broker.Connect(ctx, cfg.NATS, "mailferry-verify-accept", log)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	if err := b.Use(ctx, campaign.Needs); err != nil {
		return nil, err
	}
	kv, err := b.JS.KeyValue(ctx, broker.BucketCampaign)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", broker.BucketCampaign, err)
	}
	return verify.StoreAccepted(ctx, kv, mailbox, as)
}

// whoAccepts is the operating-system user running the command.
func whoAccepts() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if name := os.Getenv("USER"); name != "" {
		return name
	}
	return "unknown"
}
