package job

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/backoff"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/subject"
)

// Handler runs one job. It returns nil when the job is done, an error
// wrapping ErrPermanent when retrying cannot help, any other error to have
// the job retried later.
type Handler func(ctx context.Context, j *Job) error

// ErrPermanent marks errors that must not be retried.
var ErrPermanent = errors.New("permanent")

// MaxDeliver is how often a job is tried before it is given up; giving up
// is reported (see Delivery), never silent.
const MaxDeliver = 20

// retryDelay spaces out the attempts at a failed job.
func retryDelay(attempt uint64, first time.Duration) time.Duration {
	d := first
	for i := uint64(1); i < attempt && d < 5*time.Minute; i++ {
		d *= 2
	}
	return min(d, 5*time.Minute)
}

type deliveryKey struct{}

type stoppingKey struct{}

// Stopping returns a channel closed when the service is asked to stop: a
// handler should then finish the unit of work in hand (a batch, a folder's
// checkpoint) and return; its context ends for good a grace period later.
func Stopping(ctx context.Context) <-chan struct{} {
	if ch, ok := ctx.Value(stoppingKey{}).(<-chan struct{}); ok {
		return ch
	}
	return nil
}

// Delivery returns which attempt at its job a handler's ctx belongs to and
// whether it is the last one.
func Delivery(ctx context.Context) (attempt uint64, last bool) {
	n, _ := ctx.Value(deliveryKey{}).(uint64)
	return n, n >= MaxDeliver
}

// ErrStopping is returned by a handler that stopped early because the
// service is shutting down.
var ErrStopping = errors.New("stopping: service shutting down")

// IsStopping reports whether the service asked ctx's job to stop.
func IsStopping(ctx context.Context) bool {
	select {
	case <-Stopping(ctx):
		return Stopping(ctx) != nil
	default:
		return false
	}
}

// MaxInFlight bounds the jobs handed out and not yet acknowledged, over
// every instance of a service. Each instance bounds its own work (Pull
// fetches only into a free slot), so this is no concurrency limit: it is
// high so that jobs held by a process that died (until their AckWait runs
// out) and other instances' jobs never keep a live instance idle.
const MaxInFlight = 10000

// ConsumeOptions tunes Consume.
type ConsumeOptions struct {
	// Durable names the consumer: one per service ("extractor", "loader").
	Durable     string
	Concurrency int
	// RetryDelay is how long a failed job waits before it is redelivered.
	RetryDelay time.Duration
	// Grace is how long running jobs may take to wind down once ctx
	// ends (default 10s).
	Grace time.Duration
	// AckWait is how long a job stays with a silent worker (default 1m).
	AckWait time.Duration
}

// Consume runs h for every job on the jobs stream, at most Concurrency at
// once, until ctx ends. Each service has its own durable consumer, so every
// service sees every job. A job is acknowledged only when h returns nil;
// while h runs, the job is kept in progress so it is not redelivered.
func Consume(ctx context.Context, js jetstream.JetStream, o ConsumeOptions, log zerolog.Logger, h Handler) error {
	if o.Concurrency < 1 {
		o.Concurrency = 1
	}
	if o.RetryDelay == 0 {
		o.RetryDelay = 10 * time.Second
	}
	if o.Grace == 0 {
		o.Grace = 10 * time.Second
	}
	if o.AckWait == 0 {
		o.AckWait = time.Minute
	}
	cons, err := ensureConsumer(ctx, js, jetstream.ConsumerConfig{
		Durable:       o.Durable,
		FilterSubject: subject.JobPrefix + ".>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.AckWait,
		MaxDeliver:    MaxDeliver,
		MaxAckPending: MaxInFlight,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}, log)
	if err != nil {
		return fmt.Errorf("jobs consumer %s: %w", o.Durable, err)
	}
	Pull(ctx, cons, o.Concurrency, log.With().Str("consumer", o.Durable).Logger(), func(m jetstream.Msg) {
		runOne(ctx, m, o, log, h)
	})
	return nil
}

// consumerRetry spaces out the attempts at creating the jobs consumer
// (Delay only: they go on until ctx ends).
var consumerRetry = backoff.Policy{Initial: 500 * time.Millisecond, Max: 5 * time.Second}

// ensureConsumer creates or updates the jobs consumer. While the cluster
// elects a leader (for the jobs stream, or the meta leader) the request
// goes unanswered or is refused for a while: that is waited out, said
// once at warn, rather than the service exiting. A refusal no wait can
// mend (permissions, a configuration the server rejects) is returned.
func ensureConsumer(ctx context.Context, js jetstream.JetStream, cfg jetstream.ConsumerConfig, log zerolog.Logger) (jetstream.Consumer, error) {
	var since time.Time
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		cons, err := js.CreateOrUpdateConsumer(actx, broker.StreamJobs, cfg)
		cancel()
		if err == nil {
			if !since.IsZero() {
				log.Info().Str("consumer", cfg.Durable).Dur("waited", time.Since(since).Round(time.Millisecond)).Msg("jobs consumer ready")
			}
			return cons, nil
		}
		if ctx.Err() != nil || !consumerTransient(err) {
			return nil, err
		}
		if since.IsZero() {
			since = time.Now()
			log.Warn().Err(err).Str("consumer", cfg.Durable).Str("stream", broker.StreamJobs).
				Msg("waiting for the broker to create the jobs consumer (a leader election?), retrying")
		}
		sleep(ctx, consumerRetry.Delay(attempt))
	}
}

// consumerTransient says whether creating a consumer may succeed when
// asked again: not when the server refused the request itself (a bad
// configuration: an API error with code 400) or the user's permissions.
func consumerTransient(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.Code == 400 {
		return false
	}
	return !errors.Is(err, nats.ErrPermissionViolation) && !strings.Contains(strings.ToLower(err.Error()), "permissions violation")
}

func runOne(ctx context.Context, m jetstream.Msg, o ConsumeOptions, log zerolog.Logger, h Handler) {
	j, err := Decode(m.Data())
	if err != nil {
		log.Error().Err(err).Str("subject", m.Subject()).Msg("undecodable job dropped")
		_ = m.Term()
		return
	}
	// The job outlives ctx by the grace period, so a shutdown lets it
	// settle what it holds instead of tearing it mid-append.
	base, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stopGrace := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(o.Grace, cancel)
		context.AfterFunc(base, func() { t.Stop() })
	})
	defer stopGrace()
	jctx := context.WithValue(base, stoppingKey{}, ctx.Done())
	if meta, err := m.Metadata(); err == nil {
		jctx = context.WithValue(jctx, deliveryKey{}, meta.NumDelivered)
		j.Seq = meta.Sequence.Stream
	}
	go keepInProgress(jctx, m, o.AckWait/4)
	err = h(jctx, j)
	// The job's outcome must reach the broker even when shutdown began
	// while it finished.
	actx, acancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer acancel()
	switch {
	case err == nil:
		if aerr := m.DoubleAck(actx); aerr != nil {
			log.Warn().Err(aerr).Str("mailbox", j.SourceUser).Msg("ack job")
		}
	case errors.Is(err, ErrSuperseded):
		log.Info().Str("mailbox", j.SourceUser).Str("pass", j.Pass).Str("reason", err.Error()).Msg("job superseded")
		if aerr := m.DoubleAck(actx); aerr != nil {
			log.Warn().Err(aerr).Str("mailbox", j.SourceUser).Msg("ack superseded job")
		}
	case errors.Is(err, ErrPermanent):
		log.Error().Err(err).Str("mailbox", j.SourceUser).Str("pass", j.Pass).Msg("job failed for good")
		_ = m.Term()
	case isLast(jctx):
		log.Error().Err(err).Str("mailbox", j.SourceUser).Str("pass", j.Pass).Int("attempts", MaxDeliver).Msg("job given up after its last attempt")
		_ = m.Term()
	case ctx.Err() != nil:
		// Shutting down: let another instance take it at once.
		log.Info().Err(err).Str("mailbox", j.SourceUser).Msg("job handed back at shutdown")
		_ = m.Nak()
	default:
		n, _ := Delivery(jctx)
		d := retryDelay(n, o.RetryDelay)
		log.Warn().Err(err).Str("mailbox", j.SourceUser).Str("pass", j.Pass).Uint64("attempt", n).Dur("retry_in", d).Msg("job failed, will retry")
		_ = m.NakWithDelay(d)
	}
}

// keepInProgress tells the broker every period (well inside AckWait) that
// the job is still being worked on, so it is never handed to another worker
// while this one runs it.
func keepInProgress(ctx context.Context, m jetstream.Msg, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = m.InProgress()
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func isLast(ctx context.Context) bool {
	_, last := Delivery(ctx)
	return last
}
