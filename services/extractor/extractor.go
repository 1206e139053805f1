// Package extractor reads every folder and message of a mailbox from the
// legacy IMAP server (bytes, flags, INTERNALDATE) and publishes them to the
// mail stream in UID order, checkpointing per folder so that a restart
// resumes where the broker last acknowledged.
package extractor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/backoff"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/imapdial"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/loginlimit"
	"github.com/mailferry/mailferry/shared/metrics"
	"github.com/mailferry/mailferry/shared/record"
	"github.com/mailferry/mailferry/shared/sourcecred"
)

// Service is the extractor.
type Service struct {
	// Config gives the shared sections the extractor reads: source and
	// nats.
	Config *config.Config
	// Settings are the extractor's own section (LoadSettings).
	Settings Settings
	Broker   *broker.Broker
	Log      zerolog.Logger
	// Metrics counts what the extractor does (nil: nothing is counted).
	Metrics *metrics.Metrics
}

// Needs are the extractor's resources: it owns the mail stream, the
// bodies store and the checkpoints (the mail stream's limits come from
// its file), and reads the jobs others enqueue.
var Needs = broker.Needs{
	Writes: []string{broker.StreamMail, broker.StoreBodies, broker.BucketCheckpoints, broker.BucketProgress, broker.StreamEvents, broker.BucketLoginFailures},
	Reads:  []string{broker.StreamJobs},
}

// Run consumes mailbox jobs until ctx ends. It first declares what it
// writes and waits for the jobs stream.
func (s *Service) Run(ctx context.Context) error {
	if !s.Settings.loaded() {
		return errNoSettings
	}
	if err := s.Broker.Await(ctx, s.Log, Needs); err != nil {
		return err
	}
	s.Metrics.WatchConsumer(s.Broker.JS, broker.StreamJobs, "extractor")
	return job.Consume(ctx, s.Broker.JS, job.ConsumeOptions{
		Durable: "extractor",
		AckWait: s.Config.NATS.JobAckWait.Std(),
		// One source connection per mailbox being extracted.
		Concurrency: s.Settings.AtOnce(s.Config),
	}, s.Log, s.handle)
}

// pendingPerMailbox is one extraction's share of nats.max_pending_bytes,
// which bounds the process's unacknowledged publishes: each of the
// mailboxes extracted at once gets an equal share, at least one inline
// record's worth.
func (s *Service) pendingPerMailbox() int64 {
	n := int64(max(1, s.Settings.AtOnce(s.Config)))
	return max(s.Config.NATS.MaxPendingBytes/n, maxInlineBytes+512)
}

func (s *Service) handle(ctx context.Context, j *job.Job) error {
	if j.LoaderOnly() {
		return nil
	}
	ev := event.Publisher{JS: s.Broker.JS, Service: "extractor"}
	log := s.Log.With().Str("mailbox", j.SourceUser).Str("pass", j.Pass).Logger()
	if err := job.Superseded(ctx, s.Broker.JS, j); err != nil {
		return job.ReportSuperseded(ctx, ev, j, event.PhaseExtracting, err)
	}
	if err := ev.Publish(ctx, event.Extracting(j.SourceUser, j.Pass)); err != nil {
		return err
	}
	// The heartbeat tells a loader waiting for this pass's records that
	// someone still works on them, through long FETCHes and back-offs.
	bctx, stopBeat := context.WithCancel(ctx)
	beating := make(chan struct{})
	go func() {
		defer close(beating)
		event.Beat(bctx, s.Broker.Progress, "extractor", j.SourceUser, j.Pass, event.HeartbeatPeriod)
	}()
	defer func() { stopBeat(); <-beating }()
	// A retry resumes from the checkpoints on a new connection.
	var unannounced error
	err := job.Retry(ctx, backoff.Default(), log, func() error {
		end, err := s.Extract(ctx, j)
		if errors.Is(err, job.ErrSuperseded) {
			return job.ReportSuperseded(ctx, ev, j, event.PhaseExtracting, err)
		}
		if errors.Is(err, imapdial.ErrLoginRefused) {
			return errors.Join(err, job.ErrPermanent)
		}
		if err != nil {
			return err
		}
		return ev.Publish(ctx, event.Extracted(j.SourceUser, end))
	}, func(err error, retried bool) {
		attempt, _ := job.Delivery(ctx)
		if retried {
			s.Metrics.Retried("extractor")
		}
		unannounced = ev.Publish(ctx, event.Failed(j.SourceUser, attempt,
			event.FailedData{Pass: j.Pass, Phase: event.PhaseExtracting, Reason: err.Error(), Retried: retried,
				WaitingForUser: errors.Is(err, sourcecred.ErrWaiting)}))
	})
	err = job.Unannounced(err, unannounced)
	if err == nil && j.LastExtraction && sourcecred.NeedsCredential(s.Config, j.SourcePasswordFile) {
		s.forgetCredential(ctx, j, log)
	}
	stopBeat()
	<-beating
	s.finalBeat(ctx, j, err, log)
	return err
}

// forgetCredential deletes the source password the mailbox's user handed
// over at sign-in, once its last extraction has run.
func (s *Service) forgetCredential(ctx context.Context, j *job.Job, log zerolog.Logger) {
	kv, err := sourcecred.Bind(ctx, s.Broker.JS)
	if err == nil && kv != nil {
		var n int
		if n, err = sourcecred.Forget(ctx, kv, j.SourceUser); err == nil && n > 0 {
			log.Info().Msg("source credential from the user's sign-in deleted: the mailbox's last extraction has run")
		}
	}
	if err != nil {
		log.Error().Err(err).Msg("source credential from the user's sign-in not deleted after the last extraction: it expires with nats.source_credential_ttl")
	}
}

// finalBeat tells a loader waiting for this pass's records how the job
// ended, when it will not be tried again.
func (s *Service) finalBeat(ctx context.Context, j *job.Job, err error, log zerolog.Logger) {
	_, last := job.Delivery(ctx)
	ended, reason := "", ""
	switch {
	case err == nil:
		ended = event.EndedDone
	case errors.Is(err, job.ErrSuperseded):
		ended = event.EndedSuperseded
	case errors.Is(err, job.ErrPermanent) || (last && ctx.Err() == nil && !job.IsStopping(ctx)):
		ended, reason = event.EndedFailed, err.Error()
	default:
		return // tried again later; the heartbeat resumes then
	}
	if berr := event.FinalBeat(ctx, s.Broker.Progress, "extractor", j.SourceUser, j.Pass, ended, reason); berr != nil {
		log.Warn().Err(berr).Msg("write last heartbeat")
	}
}

// Extract runs one pass over a mailbox: every selectable folder from its
// checkpoint on, then the end record (the manifest).
func (s *Service) Extract(ctx context.Context, j *job.Job) (*record.End, error) {
	if !s.Settings.loaded() {
		return nil, errNoSettings
	}
	log := s.Log.With().Str("mailbox", j.SourceUser).Str("pass", j.Pass).Logger()
	cred, err := sourcecred.CredentialsFor(ctx, s.Broker.JS, s.Config, j.SourceUser, j.SourcePasswordFile)
	if errors.Is(err, sourcecred.ErrUnavailable) {
		return nil, fmt.Errorf("extract %s: %w", j.SourceUser, err)
	}
	if err != nil {
		return nil, fmt.Errorf("extract %s: %w", j.SourceUser, errors.Join(err, job.ErrPermanent))
	}
	guard := loginlimit.New(s.Broker.LoginFailures, "source", s.Config.Source.MaxLoginFailures, nil)
	c, roles, err := imapdial.DialRoles(ctx, s.Config.Source, cred, s.Metrics.IMAP("source"), guard)
	if err != nil {
		return nil, fmt.Errorf("extract %s: %w", j.SourceUser, err)
	}
	defer c.Close()
	if roles == nil && c.Caps().Has("XLIST") && !c.Caps().Has(imap.CapSpecialUse) {
		// DialRoles gives nil roles only when the XLIST it asked was
		// refused: roles then come from the folders' names.
		log.Warn().Msg("source advertises XLIST but refused it: folder roles (Sent, Trash...) come from the folder names")
	}
	folders, err := listFolders(ctx, c, s.Config.Source.CommandTimeout.Std(), roles)
	if err != nil {
		return nil, fmt.Errorf("extract %s: %w", j.SourceUser, err)
	}
	if err := s.publishListing(ctx, j, folders); err != nil {
		return nil, fmt.Errorf("extract %s: %w", j.SourceUser, err)
	}
	end := &record.End{Mailbox: j.SourceUser, TargetUser: j.TargetUser, Pass: j.Pass, Started: time.Now().UTC()}
	pub := newPublisher(s.Broker, s.pendingPerMailbox())
	pub.m = s.Metrics
	prog := event.NewReporter(s.Broker.Conn, s.Broker.Progress, "extractor", j.SourceUser, j.Pass)
	check := &job.PassCheck{JS: s.Broker.JS, Job: j}
	for _, f := range folders {
		if f.noSelect {
			continue
		}
		if err := check.Superseded(ctx); err != nil {
			return nil, err
		}
		fx := &folderExtraction{svc: s, c: c, j: j, f: f, pub: pub, prog: prog, check: check, log: log.With().Str("folder", f.Name).Logger()}
		sum, err := fx.run(ctx)
		if errors.Is(err, job.ErrSuperseded) {
			return nil, err
		}
		if errors.Is(err, errFolderGone) {
			// Deleted or renamed since LIST: the rest goes on, the
			// manifest names it, the next pass sees the new name.
			end.Problems = append(end.Problems, fmt.Sprintf("folder %q: %v", f.Name, err))
			log.Warn().Err(err).Str("folder", f.Name).Msg("folder vanished from the source during the pass")
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("extract %s folder %q: %w", j.SourceUser, f.Name, err)
		}
		end.NotMail = append(end.NotMail, fx.notMail...)
		end.Folders = append(end.Folders, sum)
		end.Messages += sum.Messages
		end.Bytes += sum.Bytes
	}
	end.Finished = time.Now().UTC()
	prog.Send(ctx, true)
	m, err := record.EndMsg(end)
	if err != nil {
		return nil, err
	}
	if _, err := s.Broker.JS.PublishMsg(ctx, m); err != nil {
		return nil, fmt.Errorf("extract %s: publish end record: %w", j.SourceUser, err)
	}
	_ = c.Logout().Wait()
	log.Info().Int("folders", len(end.Folders)).Int64("messages", end.Messages).Int64("bytes", end.Bytes).
		Dur("took", end.Finished.Sub(end.Started)).Msg("mailbox extracted")
	return end, nil
}

func (s *Service) publishListing(ctx context.Context, j *job.Job, folders []folderInfo) error {
	l := &record.Listing{Mailbox: j.SourceUser, TargetUser: j.TargetUser, Pass: j.Pass}
	for _, f := range folders {
		l.Folders = append(l.Folders, f.Folder)
	}
	m, err := record.ListingMsg(l)
	if err != nil {
		return err
	}
	if _, err := s.Broker.JS.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("publish listing: %w", err)
	}
	return nil
}

// folderInfo is one LISTed folder.
type folderInfo struct {
	record.Folder
	noSelect bool
}

// listFolders LISTs every folder, each with its role from roles (XLIST's,
// nil: none) among its attributes, and with the personal namespace prefix
// NAMESPACE gives (asked only where advertised).
func listFolders(ctx context.Context, c *imapclient.Client, timeout time.Duration, roles imapdial.Roles) ([]folderInfo, error) {
	prefix, err := imapdial.PersonalPrefix(ctx, c, timeout)
	if err != nil {
		return nil, fmt.Errorf("list folders: %w", err)
	}
	opts := &imap.ListOptions{}
	caps := c.Caps()
	ext := caps.Has(imap.CapListExtended) || caps.Has(imap.CapIMAP4rev2)
	if ext {
		opts.ReturnSubscribed = true
	}
	if caps.Has(imap.CapSpecialUse) || caps.Has(imap.CapIMAP4rev2) {
		opts.ReturnSpecialUse = ext
	}
	defer imapdial.Watch(ctx, c, timeout).Stop()
	list, err := c.List("", "*", opts).Collect()
	if err != nil {
		return nil, fmt.Errorf("list folders: %w", err)
	}
	subscribed := map[string]bool{}
	if !ext {
		// Without LIST-EXTENDED the subscription state is unknown: keep
		// every folder subscribed rather than hide mail from the user.
		for _, l := range list {
			subscribed[l.Mailbox] = true
		}
	}
	out := make([]folderInfo, 0, len(list))
	for _, l := range list {
		fi := folderInfo{Folder: record.Folder{Name: l.Mailbox, Subscribed: subscribed[l.Mailbox]}}
		if l.Delim != 0 {
			fi.Delim = string(l.Delim)
		}
		fi.Prefix = prefix
		for _, a := range roles.Add(l.Mailbox, l.Attrs) {
			switch a {
			case imap.MailboxAttrSubscribed:
				fi.Subscribed = true
			case imap.MailboxAttrNoSelect, imap.MailboxAttrNonExistent:
				fi.noSelect = true
			}
			fi.Attrs = append(fi.Attrs, string(a))
		}
		out = append(out, fi)
	}
	return out, nil
}
