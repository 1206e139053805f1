// Package loader consumes a mailbox's records from the mail stream and
// appends them to the new provider: folders mapped, flags and dates kept,
// bytes exact, each message exactly once however often it is stopped.
package loader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/services/loader/imapappend"
	"github.com/mailferry/mailferry/shared/backoff"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/imapdial"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/metrics"
	"github.com/mailferry/mailferry/shared/record"
	"github.com/mailferry/mailferry/shared/subject"
)

// Service is the loader.
type Service struct {
	// Config gives the shared sections the loader reads: target and
	// nats.
	Config *config.Config
	// Settings are the loader's own section (LoadSettings).
	Settings Settings
	Broker   *broker.Broker
	Log      zerolog.Logger
	// Metrics counts what the loader does (nil: nothing is counted).
	Metrics *metrics.Metrics
	// IdleFlush is how long a partial batch waits for more records.
	IdleFlush time.Duration
	// Minter mints the target login tokens when target.auth is token
	// (an OpenSRS adapter: opensrs.NewMinter).
	Minter TokenMinter

	// tokensMu guards tokens, the token store made on first use.
	tokensMu sync.Mutex
	tokens   *Tokens

	// crashAt, set by tests, makes a session fail at a named point as if
	// the process died there.
	crashAt func(point string) error
	// unsound tallies the large bodies found unsound (deadUnsound).
	unsound unsoundBodies
	// unsoundGrace, set by tests, replaces the constant bodyGrace, and
	// a single unsound read suffices.
	unsoundGrace *time.Duration
}

// Points where tests simulate a crash.
const (
	pointIntentSaved = "intent-saved"
	pointAppended    = "appended"
)

func (s *Service) crash(point string) error {
	if s.crashAt == nil {
		return nil
	}
	return s.crashAt(point)
}

// Needs are the loader's resources: it owns the ledger and the dead
// letters, re-enqueues jobs, and reads the mail stream and bodies store
// the extractor owns.
var Needs = broker.Needs{
	Writes: []string{broker.BucketLedger, broker.BucketProgress, broker.StreamDead, broker.StreamJobs, broker.StreamEvents},
	Reads:  []string{broker.StreamMail, broker.StoreBodies},
}

// Run consumes mailbox jobs until ctx ends. It first declares what it
// writes and waits for what the extractor owns.
func (s *Service) Run(ctx context.Context) error {
	if !s.Settings.loaded() {
		return errNoSettings
	}
	needs := Needs
	if s.Config.Target.Auth == config.AuthToken {
		needs.Writes = append(slices.Clip(needs.Writes), broker.BucketTargetTokens)
	}
	if err := s.Broker.Await(ctx, s.Log, needs); err != nil {
		return err
	}
	if _, err := s.tokenStore(ctx); err != nil {
		return err
	}
	s.Metrics.WatchConsumer(s.Broker.JS, broker.StreamJobs, "loader")
	return job.Consume(ctx, s.Broker.JS, job.ConsumeOptions{
		Durable: "loader",
		AckWait: s.Config.NATS.JobAckWait.Std(),
		// Two target connections per mailbox being loaded: one for
		// folders and reconciliation, one for appends.
		Concurrency: s.Settings.AtOnce(s.Config),
	}, s.Log, s.handle)
}

func (s *Service) handle(ctx context.Context, j *job.Job) error {
	ev := event.Publisher{JS: s.Broker.JS, Service: "loader"}
	log := s.Log.With().Str("mailbox", j.SourceUser).Str("pass", j.Pass).Logger()
	if err := job.Superseded(ctx, s.Broker.JS, j); err != nil {
		return job.ReportSuperseded(ctx, ev, j, event.PhaseLoading, err)
	}
	// A retry opens a new session, which resumes where the ledger says.
	var unannounced error
	err := job.Retry(ctx, backoff.Default(), log, func() error {
		var res *event.LoadedData
		var err error
		if len(j.Retry) > 0 {
			res, err = s.RetryDead(ctx, j)
		} else {
			res, err = s.Load(ctx, j)
		}
		if errors.Is(err, job.ErrSuperseded) {
			return job.ReportSuperseded(ctx, ev, j, event.PhaseLoading, err)
		}
		if errors.Is(err, imapdial.ErrLoginRefused) {
			return errors.Join(err, job.ErrPermanent)
		}
		if err != nil {
			return err
		}
		return ev.Publish(ctx, event.Loaded(j.SourceUser, *res))
	}, func(err error, retried bool) {
		attempt, _ := job.Delivery(ctx)
		if retried {
			s.Metrics.Retried("loader")
		}
		unannounced = ev.Publish(ctx, event.Failed(j.SourceUser, attempt,
			event.FailedData{Pass: j.Pass, Phase: event.PhaseLoading, Reason: err.Error(), Retried: retried}))
	})
	return job.Unannounced(err, unannounced)
}

// Load loads one pass of a mailbox: it follows the mailbox's records from
// where the ledger says it stopped until the end record of j's pass.
func (s *Service) Load(ctx context.Context, j *job.Job) (*event.LoadedData, error) {
	ss, err := s.open(ctx, j)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", j.SourceUser, err)
	}
	defer ss.close()
	if err := ss.run(ctx); err != nil {
		return nil, fmt.Errorf("load %s: %w", j.SourceUser, err)
	}
	ss.stats.Pass, ss.stats.TargetUser = j.Pass, j.TargetUser
	ss.progress(ctx, true)
	ss.log.Info().Int64("appended", ss.stats.Appended).Int64("skipped", ss.stats.Skipped).
		Int64("dead", ss.stats.Dead).Int64("bytes", ss.stats.Bytes).Msg("mailbox loaded")
	return &ss.stats, nil
}

// session is the loading of one mailbox by one loader.
type session struct {
	svc *Service
	j   *job.Job
	log zerolog.Logger
	ev  event.Publisher

	lease *lease
	cred  imapdial.Credentials
	c     *imapclient.Client
	app   *imapappend.Client
	mbx   *casEntry[MailboxState]
	tgt   targetInfo
	// tokens, when set (target.auth token), gives the login a token of
	// the mailbox's user instead of cred.
	tokens *Tokens
	// special is the target's folder by role where its LIST does not say
	// (specialFor), read once per session.
	special map[imap.MailboxAttr]string

	// replay, when set, delivers records again: the target's content,
	// not the ledger's watermark, decides what is appended.
	replay *job.Replay
	// again names the source messages this session delivers again (a
	// retry's dead letters, a replay's records): their own earlier copies
	// in the target count as present, other messages' copies do not.
	again map[string]bool
	// matching names (by ledger key) the folders this session matched
	// by content (FolderState.Matching), until an end record ends it.
	matching map[string]bool

	cur *folderRun
	// next is, per target folder, the UIDNEXT this session accounts for:
	// every message below it is known to the ledger or was scanned.
	next    map[string]uint32
	batch   []pending
	bBytes  int64
	lastSeq uint64
	stats   event.LoadedData
	prog    *event.Reporter
	// check tells when a newer pass took over this session's work.
	check *job.PassCheck
	// waitingSince is when the session last ran out of records.
	waitingSince, lastWaitCheck time.Time
	waitLogged                  bool
}

// pending is a message record waiting in the current batch.
type pending struct {
	rec  *record.Message
	body []byte
	seq  uint64
}

func (s *Service) open(ctx context.Context, j *job.Job) (*session, error) {
	if !s.Settings.loaded() {
		return nil, errNoSettings
	}
	ss := &session{svc: s, j: j, replay: j.Replay, ev: event.Publisher{JS: s.Broker.JS, Service: "loader"},
		prog: event.NewReporter(s.Broker.Conn, s.Broker.Progress, "loader", j.SourceUser, j.Pass),
		log:  s.Log.With().Str("mailbox", j.SourceUser).Str("pass", j.Pass).Logger()}
	tokens, err := s.tokenStore(ctx)
	if err != nil {
		return nil, err
	}
	ss.tokens = tokens
	if tokens == nil {
		cred, err := imapdial.CredentialsFor(s.Config, "target", j.TargetUser, j.TargetPasswordFile)
		if err != nil {
			return nil, errors.Join(err, job.ErrPermanent)
		}
		ss.cred = cred
	}
	ss.check = &job.PassCheck{JS: s.Broker.JS, Job: j}
	// Counters first: a wait for the lease reports progress too.
	ss.prog.Resume(ctx)
	p := ss.prog.Current
	ss.stats.Appended, ss.stats.Skipped, ss.stats.Dead, ss.stats.Bytes = p.Appended, p.Skipped, p.Dead, p.Bytes
	if ss.lease, err = ss.waitLease(ctx); err != nil {
		return nil, err
	}
	err = ss.login(ctx, func(cred imapdial.Credentials) (err error) {
		ss.c, err = imapdial.DialObserved(ctx, s.Config.Target, cred, nil, s.Metrics.IMAP("target"))
		return err
	})
	if err != nil {
		ss.close()
		return nil, err
	}
	if ss.app, err = ss.dialAppend(ctx); err != nil {
		ss.close()
		return nil, err
	}
	if ss.mbx, err = loadEntry[MailboxState](ctx, s.Broker.Ledger, MailboxKey(j.SourceUser)); err != nil {
		ss.close()
		return nil, err
	}
	if err := ss.listTarget(ctx); err != nil {
		ss.close()
		return nil, err
	}
	return ss, nil
}

// tokenStore is the store of target login tokens when target.auth is
// token (nil otherwise), made on first use: it declares the bucket.
func (s *Service) tokenStore(ctx context.Context) (*Tokens, error) {
	if s.Config.Target.Auth != config.AuthToken {
		return nil, nil
	}
	s.tokensMu.Lock()
	defer s.tokensMu.Unlock()
	if s.tokens != nil {
		return s.tokens, nil
	}
	if s.Minter == nil {
		return nil, errors.New("target auth token: no token minter (target.opensrs) configured")
	}
	if err := s.Broker.Use(ctx, broker.Needs{Writes: []string{broker.BucketTargetTokens}}); err != nil {
		return nil, err
	}
	kv, err := s.Broker.JS.KeyValue(ctx, broker.BucketTargetTokens)
	if err != nil {
		return nil, fmt.Errorf("bind bucket %s: %w", broker.BucketTargetTokens, err)
	}
	s.tokens = &Tokens{Minter: s.Minter, KV: kv, RenewBefore: s.Config.Target.OpenSRS.RenewBefore.Std(), Log: s.Log}
	return s.tokens, nil
}

func (ss *session) close() {
	// Connections first: nothing of this session may reach the target
	// once another session can take the mailbox.
	if ss.app != nil {
		ss.app.Close()
	}
	if ss.c != nil {
		ss.c.Close()
	}
	if ss.lease != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ss.lease.release(ctx)
		cancel()
	}
}

func (ss *session) idle() time.Duration {
	if ss.svc.IdleFlush > 0 {
		return ss.svc.IdleFlush
	}
	return 500 * time.Millisecond
}

func (ss *session) run(ctx context.Context) error {
	var err error
	cc := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject.Mailbox(ss.j.SourceUser)}}
	if seq := ss.mbx.V.Seq; seq > 0 {
		cc.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cc.OptStartSeq = seq + 1
	}
	if r := ss.replay; r != nil {
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, r.FromSeq
		if r.Folder != "" {
			cc.FilterSubjects = []string{subject.MessagesOfFolder(ss.j.SourceUser, r.Folder)}
		}
	}
	if ss.replay == nil && ss.mbx.V.LoadedPass == ss.j.Pass {
		// This pass's end record was reached before (the job came
		// back after its outcome was recorded): nothing left to do.
		return nil
	}
	if ss.replay == nil {
		if ended, err := ss.passEnded(ctx); err != nil || ended {
			return err
		}
	}
	if ss.replay != nil {
		if ss.again, err = ss.replayed(ctx, cc); err != nil {
			return err
		}
	}
	f, err := ss.follow(ctx, cc)
	if err != nil {
		return err
	}
	defer func() { f.it.Stop() }()
	for {
		if job.IsStopping(ctx) {
			// Settle the batch in hand; the rest waits in the stream.
			if err := ss.flush(ctx); err != nil {
				return err
			}
			return job.ErrStopping
		}
		if err := ss.check.Superseded(ctx); err != nil {
			// The newer pass's session goes on from what is settled.
			return errors.Join(err, ss.flush(ctx))
		}
		if err := ss.lease.renew(ctx); err != nil {
			return err
		}
		msg, err := f.it.Next(jetstream.NextMaxWait(ss.idle()))
		if errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err := ss.flush(ctx); err != nil {
				return err
			}
			if err := ss.unstick(ctx, &f, cc); err != nil {
				return err
			}
			if ss.replay != nil {
				drained, err := ss.replayDrained(ctx, f.cons)
				if err != nil || drained {
					return err
				}
			}
			if ss.replay == nil {
				if err := ss.outOfRecords(ctx); err != nil {
					return err
				}
			}
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("read mail stream: %w", err)
		}
		ss.gotRecord(ctx)
		done, err := ss.handle(ctx, msg)
		if err != nil || done {
			return err
		}
		if r := ss.replay; r != nil && ss.lastSeq >= r.UntilSeq {
			return ss.flush(ctx)
		}
	}
}

func (ss *session) handle(ctx context.Context, msg jetstream.Msg) (done bool, err error) {
	meta, err := msg.Metadata()
	if err != nil {
		return false, fmt.Errorf("record metadata: %w", err)
	}
	seq := meta.Sequence.Stream
	d, err := record.Decode(msg.Headers(), msg.Data())
	if err != nil {
		if err := ss.flush(ctx); err != nil {
			return false, err
		}
		if err := ss.deadRecord(ctx, msg.Subject(), seq, err); err != nil {
			return false, err
		}
		return false, ss.advance(ctx, seq)
	}
	switch {
	case d.Listing != nil:
		if err := ss.flush(ctx); err != nil {
			return false, err
		}
		if err := ss.applyListing(ctx, d.Listing); err != nil {
			return false, err
		}
		return false, ss.advance(ctx, seq)
	case d.Folder != nil:
		if err := ss.flush(ctx); err != nil {
			return false, err
		}
		if err := ss.startFolder(ctx, d.Folder.Name, d.Folder.Delim, d.Folder.UIDValidity, d.Folder.Epoch); err != nil {
			return false, err
		}
		ss.lastSeq = seq
		return false, nil
	case d.Message != nil:
		return false, ss.add(ctx, d.Message, d.Body, seq)
	case d.End != nil:
		if err := ss.flush(ctx); err != nil {
			return false, err
		}
		if ss.replay == nil {
			if err := ss.matchedWholly(ctx, d.End); err != nil {
				return false, err
			}
		}
		if d.End.Pass == ss.j.Pass {
			ss.mbx.V.LoadedPass = d.End.Pass
		}
		if err := ss.advance(ctx, seq); err != nil {
			return false, err
		}
		return d.End.Pass == ss.j.Pass && ss.replay == nil, nil
	}
	return false, nil
}

// advance commits that every record up to seq is dealt with.
func (ss *session) advance(ctx context.Context, seq uint64) error {
	ss.lastSeq = seq
	if ss.replay != nil {
		// A replay leaves the mailbox's own position alone.
		return nil
	}
	if seq <= ss.mbx.V.Seq && ss.mbx.exists() {
		return nil
	}
	ss.mbx.V.Seq = seq
	ss.mbx.V.Updated = time.Now().UTC()
	return ss.mbx.save(ctx, ss.svc.Broker.Ledger)
}

// extractionGaveUp fails a load waiting for an end record that will never
// come: the extractor's job for this pass failed for good.
func (ss *session) extractionGaveUp(ctx context.Context) error {
	st, err := ss.svc.Broker.JS.Stream(ctx, broker.StreamEvents)
	if err != nil {
		return nil
	}
	raw, err := st.GetLastMsgForSubject(ctx, subject.Event(event.MailboxFailed, ss.j.SourceUser))
	if err != nil {
		return nil
	}
	e, err := event.Decode(raw.Data)
	if err != nil {
		return nil
	}
	var f event.FailedData
	if e.DataAs(&f) != nil || f.Pass != ss.j.Pass || f.Phase != event.PhaseExtracting || f.Retried {
		return nil
	}
	return fmt.Errorf("extraction of this pass failed for good (%s): %w", f.Reason, job.ErrPermanent)
}

// replayDrained reports whether a replay has delivered everything it
// asked for: its last sequence reached, or nothing left for the consumer
// (everything replayed was in the stream when it was asked for).
func (ss *session) replayDrained(ctx context.Context, cons jetstream.Consumer) (bool, error) {
	if ss.lastSeq >= ss.replay.UntilSeq {
		return true, nil
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return false, fmt.Errorf("replay: read the consumer's state: %w", err)
	}
	return info.NumPending == 0, nil
}

// replayed reads the headers of the records a replay will deliver and
// names the source messages among them.
func (ss *session) replayed(ctx context.Context, cc jetstream.OrderedConsumerConfig) (map[string]bool, error) {
	cc.HeadersOnly = true
	cons, err := ss.svc.Broker.JS.OrderedConsumer(ctx, broker.StreamMail, cc)
	if err != nil {
		return nil, fmt.Errorf("read replay range: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(256))
	if err != nil {
		return nil, fmt.Errorf("read replay range: %w", err)
	}
	defer it.Stop()
	out := map[string]bool{}
	for {
		m, err := it.Next(jetstream.NextMaxWait(time.Second))
		if errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read replay range: %w", err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return nil, err
		}
		if meta.Sequence.Stream > ss.replay.UntilSeq {
			return out, nil
		}
		var rec record.Message
		if m.Headers().Get(record.HeaderKind) == record.KindMessage && json.Unmarshal([]byte(m.Headers().Get(record.HeaderMeta)), &rec) == nil {
			out[againKey(rec.Folder, rec.UID)] = true
		}
		if meta.NumPending == 0 || meta.Sequence.Stream == ss.replay.UntilSeq {
			return out, nil
		}
	}
}
