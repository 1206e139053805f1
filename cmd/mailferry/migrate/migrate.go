// Package migrate runs a whole migration in one process: it starts the
// extractor and loader services on the configured broker, enqueues a pass
// over every mailbox, follows the lifecycle events to the end, and verifies
// the result.
package migrate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/cmd/mailferry/verify"
	"github.com/mailferry/mailferry/services/auth/target/opensrs"
	"github.com/mailferry/mailferry/services/extractor"
	"github.com/mailferry/mailferry/services/loader"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/command"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/daemon"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/subject"
)

// Options tune Run.
type Options struct {
	// Mailboxes to migrate; nil reads the configured inventory.
	Mailboxes []job.Mailbox
	// Display receives the live progress table (a terminal); nil logs
	// progress lines instead.
	Display io.Writer
	// MaxFailures is how many failed attempts make Run give up on a
	// mailbox (default 5).
	MaxFailures int
	// External means the extractor and loader run as separate daemons:
	// Run only enqueues, follows and verifies.
	External bool
	// NoVerify skips the verification (Result.Report stays nil).
	NoVerify bool
}

// Result is what a migration did.
type Result struct {
	Pass string
	// Took is the whole run; CopyTook from the start until every mailbox
	// was loaded or had failed, VerifyTook what verification took after
	// that (mailboxes loaded early are verified while others still copy).
	Took       time.Duration
	CopyTook   time.Duration
	VerifyTook time.Duration
	Progress   []MailboxProgress
	Report     *verify.Report
}

// OK reports whether every mailbox was loaded and verified.
func (r *Result) OK() bool {
	if r.Report == nil || !r.Report.OK {
		return false
	}
	for _, p := range r.Progress {
		if p.Phase != PhaseLoaded {
			return false
		}
	}
	return true
}

// WriteText writes the verification report, a line per mailbox that was
// not loaded and the time the pass took.
func (r *Result) WriteText(w io.Writer) {
	if r.Report != nil {
		r.Report.WriteText(w)
	}
	for _, p := range r.Progress {
		switch {
		case p.Phase == PhaseLoaded:
		case p.WaitingForUser:
			fmt.Fprintf(w, "WAITING    %s: no source password yet: copied once its user signs in on the change page\n", p.Mailbox)
		default:
			fmt.Fprintf(w, "NOT LOADED %s: %s (%d attempts failed): %s\n", p.Mailbox, p.Phase, p.Failures, p.LastError)
		}
	}
	fmt.Fprintf(w, "pass %s took %s\n", r.Pass, r.Took.Round(time.Millisecond))
}

// Run migrates every mailbox once and verifies.
func Run(ctx context.Context, cfg *config.Config, log zerolog.Logger, o Options) (*Result, error) {
	start := time.Now()
	boxes := o.Mailboxes
	if boxes == nil {
		var err error
		if boxes, err = job.ReadInventory(cfg.Mailboxes.File); err != nil {
			return nil, err
		}
	}
	if o.MaxFailures == 0 {
		o.MaxFailures = 5
	}
	// The services' own sections are checked before the broker starts.
	var svcs Services
	if !o.External {
		var err error
		if svcs, err = LoadServices(cfg, log); err != nil {
			return nil, err
		}
	}
	b, err := daemon.OpenBroker(ctx, cfg, "migrate", log)
	if err != nil {
		return nil, err
	}
	defer b.Close()

	svcCtx, stopServices := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopServices(); wg.Wait() }()
	if b.Private() {
		// Leases left by an earlier run that was killed: nobody else can
		// reach this broker, so their holders are gone.
		if err := loader.BreakLeases(ctx, b.Ledger, log); err != nil {
			return nil, err
		}
	}
	if !o.External {
		svcs.Start(svcCtx, &wg, b, log)
	}

	during, after := verifySlots(cfg)
	if !o.NoVerify && during == 0 {
		log.Info().Int("source_connections", cfg.Source.Connections).Int("target_connections", cfg.Target.Connections).
			Msg("verification waits for the copy to end: the extractor and the loader use every connection")
	}
	pass := nuid.Next()
	tr := newTracker(boxes, pass, o.MaxFailures)
	sub, err := b.Conn.Subscribe(subject.ProgressPrefix+".>", tr.onProgress)
	if err != nil {
		return nil, fmt.Errorf("follow progress: %w", err)
	}
	defer sub.Unsubscribe()
	events, err := FollowEvents(ctx, b)
	if err != nil {
		return nil, err
	}
	var v *verifier
	if !o.NoVerify {
		v = startVerifier(ctx, cfg, verifyOptions(ctx, cfg, b, log), during, after, 2*len(boxes))
		defer v.stop()
	}
	if err := enqueue(ctx, b, boxes, pass); err != nil {
		return nil, err
	}
	log.Info().Int("mailboxes", len(boxes)).Str("pass", pass).Msg("migration started")
	byUser := make(map[string]job.Mailbox, len(boxes))
	for _, mb := range boxes {
		byUser[mb.SourceUser] = mb
	}
	onLoaded := func(p MailboxProgress) {
		if v != nil {
			v.add(byUser[p.Mailbox], p.Pass)
		}
	}
	if err := follow(ctx, events, tr, o.Display, log, onLoaded); err != nil {
		return nil, err
	}
	res := &Result{Pass: pass, Progress: tr.snapshot(), CopyTook: time.Since(start)}
	stopping := time.Now()
	stopServices()
	wg.Wait()
	log.Info().Dur("took", time.Since(stopping)).Msg("services stopped")
	if o.NoVerify {
		res.Took = res.CopyTook
		return res, nil
	}
	v.copyDone()
	loaded, passes := loadedPasses(boxes, res.Progress)
	log.Info().Int("mailboxes", len(loaded)).Int("verified_during_copy", v.verified()).Msg("verifying")
	res.Report = v.report(loaded, passes)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.VerifyTook = time.Since(start) - res.CopyTook
	res.Took = time.Since(start)
	if err := publishVerified(ctx, b, res.Report); err != nil {
		// The result stands; only its record on the events stream is
		// missing, which `mailferry verify` publishes again.
		return res, err
	}
	return res, nil
}

// loadedPasses returns the mailboxes of boxes that were loaded, in their
// order, and the pass that loaded each. A mailbox that failed is named by
// its phase and reason; verifying it would only list its messages again
// as missing.
func loadedPasses(boxes []job.Mailbox, progress []MailboxProgress) ([]job.Mailbox, map[string]string) {
	passes := map[string]string{}
	for _, p := range progress {
		if p.Phase == PhaseLoaded {
			passes[p.Mailbox] = p.Pass
		}
	}
	var loaded []job.Mailbox
	for _, mb := range boxes {
		if _, ok := passes[mb.SourceUser]; ok {
			loaded = append(loaded, mb)
		}
	}
	return loaded, passes
}

// verifyOptions are the verification's: the ledger pairs copies with
// their sources, and differences accepted before (`verify accept`) are
// reported as accepted; a bucket that cannot be read leaves them
// differences.
func verifyOptions(ctx context.Context, cfg *config.Config, b *broker.Broker, log zerolog.Logger) []verify.Option {
	opts := []verify.Option{verify.WithLedger(b.Ledger), verify.SourceLogins(b.LoginFailures, cfg), verify.SourceCredentials(b.JS)}
	// The target's tokens (target.auth: token), as the loader logs in.
	if tok, err := verify.TargetTokens(ctx, cfg, b, log); err != nil {
		log.Error().Err(err).Msg("no target login tokens: the target cannot be verified")
	} else if tok != nil {
		opts = append(opts, tok)
	}
	if kv, err := verify.AcceptedBucket(ctx, b); err != nil {
		log.Warn().Err(err).Msg("accepted differences unreadable: reporting them as differences")
	} else if kv != nil {
		opts = append(opts, verify.WithAcceptedFrom(kv))
	}
	return opts
}

// PublishVerified records on the events stream which mailboxes verified,
// for the pass each was last queued in.
func PublishVerified(ctx context.Context, cfg *config.Config, log zerolog.Logger, r *verify.Report) error {
	b, err := broker.Connect(ctx, cfg.NATS, "mailferry-verify", log)
	if err != nil {
		return err
	}
	defer b.Close()
	if err := b.Use(ctx, broker.Needs{Writes: []string{broker.StreamEvents}}); err != nil {
		return err
	}
	return publishVerified(ctx, b, r)
}

// publishVerified publishes mailbox.verified for every mailbox r
// compared, with the number of differences found (a mailbox that could
// not be compared, Error set, gets none); Run and PublishVerified return
// its error, since `mailferry status` shows a mailbox done, or failed by
// its verification, only by this event.
func publishVerified(ctx context.Context, b *broker.Broker, r *verify.Report) error {
	ev := event.Publisher{JS: b.JS, Service: "verify"}
	st, err := b.JS.Stream(ctx, broker.StreamEvents)
	if err != nil {
		return fmt.Errorf("record verification: %w", err)
	}
	for _, m := range r.Mailboxes {
		if m.Error != "" {
			continue
		}
		pass, err := lastQueuedPass(ctx, st, m.Source)
		if err != nil {
			return fmt.Errorf("record verification of %s: %w", m.Source, err)
		}
		d := event.VerifiedData{Pass: pass, Messages: int64(m.Messages), Digest: verifiedDigest(m)}
		if !m.OK {
			d.Differences, d.Missing = countDifferences(m)
		}
		if err := ev.Publish(ctx, event.Verified(m.Source, d)); err != nil {
			return fmt.Errorf("record verification of %s: %w", m.Source, err)
		}
	}
	return nil
}

// countDifferences counts m's differences, and the missing ones among
// them (a mailbox not OK without any named counts as one).
func countDifferences(m verify.MailboxReport) (all, missing int64) {
	for _, f := range m.Folders {
		for _, d := range f.Differences {
			all++
			if d.Kind == "missing" {
				missing++
			}
		}
	}
	return max(all, 1), missing
}

// lastQueuedPass is the pass mailbox was last queued in ("" when it never
// was).
func lastQueuedPass(ctx context.Context, st jetstream.Stream, mailbox string) (string, error) {
	raw, err := st.GetLastMsgForSubject(ctx, subject.Event(event.MailboxQueued, mailbox))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("last queued pass: %w", err)
	}
	e, err := event.Decode(raw.Data)
	if err != nil {
		return "", err
	}
	var d event.QueuedData
	if err := e.DataAs(&d); err != nil {
		return "", err
	}
	return d.Pass, nil
}

// verifiedDigest identifies what a verification found for a mailbox: the
// SHA-256 of its report (the target, every folder's counts and
// differences), so that verifying the same state twice yields the same
// mailbox.verified id and a different outcome another (see
// event.Verified).
func verifiedDigest(m verify.MailboxReport) string {
	b, err := json.Marshal(m)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// Services are the extractor and the loader Run (and `cutover start`)
// starts in this process, their settings loaded from the configuration;
// Start gives them the broker.
type Services struct {
	ex *extractor.Service
	ld *loader.Service
}

// LoadServices reads the extractor's and the loader's sections of cfg; a
// bad one is a command.ConfigError.
func LoadServices(cfg *config.Config, log zerolog.Logger) (Services, error) {
	es, err := extractor.LoadSettings(cfg)
	if err != nil {
		return Services{}, &command.ConfigError{Err: err}
	}
	ld, err := loaderService(cfg, log)
	if err != nil {
		return Services{}, err
	}
	return Services{ex: &extractor.Service{Config: cfg, Settings: es, Log: log.With().Str("service", "extractor").Logger()}, ld: ld}, nil
}

// loaderService is a loader with its settings from cfg, without a broker
// yet; a bad loader section is a command.ConfigError.
func loaderService(cfg *config.Config, log zerolog.Logger) (*loader.Service, error) {
	ls, err := loader.LoadSettings(cfg)
	if err != nil {
		return nil, &command.ConfigError{Err: err}
	}
	svc := &loader.Service{Config: cfg, Settings: ls, Log: log.With().Str("service", "loader").Logger()}
	if cfg.Target.Auth == config.AuthToken {
		if svc.Minter, err = opensrs.NewMinter(cfg); err != nil {
			return nil, err
		}
	}
	return svc, nil
}

// Start runs both services on b until ctx ends, each in a goroutine wg
// counts.
func (s Services) Start(ctx context.Context, wg *sync.WaitGroup, b *broker.Broker, log zerolog.Logger) {
	s.ex.Broker, s.ld.Broker = b, b
	for _, run := range []func(context.Context) error{s.ex.Run, s.ld.Run} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				log.Error().Err(err).Msg("service stopped")
			}
		}()
	}
}

// FollowEvents starts reading mailbox events from the current end of the
// events stream, before anything is enqueued, so none is missed.
func FollowEvents(ctx context.Context, b *broker.Broker) (jetstream.Consumer, error) {
	end, err := EventsEnd(ctx, b)
	if err != nil {
		return nil, err
	}
	return followEventsAfter(ctx, b, end)
}

// followEventsAfter reads mailbox events published after sequence seq.
func followEventsAfter(ctx context.Context, b *broker.Broker, seq uint64) (jetstream.Consumer, error) {
	cons, err := b.JS.OrderedConsumer(ctx, broker.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject.EventPrefix + ".mailbox.>"},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    seq + 1,
	})
	if err != nil {
		return nil, fmt.Errorf("follow events: %w", err)
	}
	return cons, nil
}

// Await runs a loader in this process until every job of pass for boxes
// is loaded or has failed for good (replays and retries, which only the
// loader handles), and returns how each ended.
func Await(ctx context.Context, cfg *config.Config, b *broker.Broker, log zerolog.Logger, boxes []job.Mailbox, pass string, since uint64) ([]MailboxProgress, error) {
	ld, err := loaderService(cfg, log)
	if err != nil {
		return nil, err
	}
	ld.Broker = b
	svcCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := ld.Run(svcCtx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error().Err(err).Msg("loader stopped")
		}
	}()
	tr := newTracker(boxes, pass, 1)
	cons, err := followEventsAfter(ctx, b, since)
	if err != nil {
		return nil, err
	}
	if err := follow(ctx, cons, tr, nil, log, nil); err != nil {
		return nil, err
	}
	return tr.snapshot(), nil
}

// EventsEnd returns the last sequence of the events stream, to Await
// events published after it.
func EventsEnd(ctx context.Context, b *broker.Broker) (uint64, error) {
	st, err := b.JS.Stream(ctx, broker.StreamEvents)
	if err != nil {
		return 0, fmt.Errorf("events stream: %w", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("events stream: %w", err)
	}
	return info.State.LastSeq, nil
}

// Enqueue puts a pass over every mailbox on the jobs stream.
func Enqueue(ctx context.Context, b *broker.Broker, boxes []job.Mailbox) (string, error) {
	pass := nuid.Next()
	return pass, enqueue(ctx, b, boxes, pass)
}

func enqueue(ctx context.Context, b *broker.Broker, boxes []job.Mailbox, pass string) error {
	ev := event.Publisher{JS: b.JS, Service: "migrate"}
	now := time.Now().UTC()
	for _, mb := range boxes {
		if err := job.Publish(ctx, b.JS, &job.Job{Mailbox: mb, Pass: pass, Enqueued: now}); err != nil {
			return err
		}
		if err := ev.Publish(ctx, event.Queued(mb.SourceUser, pass)); err != nil {
			return err
		}
	}
	return nil
}

// follow reads events until every mailbox's pass has ended, telling
// loaded (if not nil) each mailbox that reached loaded.
func follow(ctx context.Context, cons jetstream.Consumer, tr *tracker, display io.Writer, log zerolog.Logger, loaded func(MailboxProgress)) error {
	lastDraw, lastLog := time.Time{}, time.Now()
	// One pull subscription: Next on an ordered consumer re-creates the
	// server's consumer for every event.
	it, err := cons.Messages(jetstream.PullMaxMessages(64))
	if err != nil {
		return fmt.Errorf("read events: %w", err)
	}
	defer it.Stop()
	for !tr.finished() {
		// A cancelled wait reports a timeout, so ctx is asked first.
		if err := ctx.Err(); err != nil {
			return err
		}
		msg, err := it.Next(jetstream.NextMaxWait(250 * time.Millisecond))
		switch {
		case err == nil:
			e, derr := event.Decode(msg.Data())
			if derr != nil {
				log.Warn().Err(derr).Msg("undecodable event")
				break
			}
			if p, ok := tr.onEvent(e, log); ok && loaded != nil {
				loaded(p)
			}
		case errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages):
		case ctx.Err() != nil:
			return ctx.Err()
		default:
			return fmt.Errorf("read events: %w", err)
		}
		if display != nil && time.Since(lastDraw) > 300*time.Millisecond {
			tr.draw(display)
			lastDraw = time.Now()
		}
		if display == nil && time.Since(lastLog) > 10*time.Second {
			tr.logTotals(log)
			lastLog = time.Now()
		}
	}
	if display != nil {
		tr.draw(display)
	}
	tr.logTotals(log)
	return nil
}
