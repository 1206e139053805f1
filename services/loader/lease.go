package loader

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/subject"
)

// Lease makes one session the only writer of a mailbox: two loaders on one
// mailbox (a job handed out again while its first worker stalled) would
// reconcile each other's appends in flight and append twice.
type Lease struct {
	Owner   string    `json:"owner"`
	Pass    string    `json:"pass,omitempty"`
	Expires time.Time `json:"expires"`
}

var (
	// errBusy reports a mailbox another live session holds.
	errBusy = errors.New("mailbox is being loaded by another session")
	// errLeaseLost stops a session whose lease could not be renewed.
	errLeaseLost = errors.New("lease of the mailbox lost")
)

// LeaseKey names a mailbox's lease.
func LeaseKey(mailbox string) string { return "lease." + subject.Key(mailbox) }

// lease is a session's hold on its mailbox. The holder stops writing to
// the target a margin before the lease expires; a newcomer takes over only
// a margin after it expired. Between the two, any append of the old holder
// has been aborted or has finished, so reconciling it is safe.
type lease struct {
	mu         sync.Mutex
	e          *casEntry[Lease]
	kv         jetstream.KeyValue
	ttl        time.Duration
	validUntil time.Time
}

func margin(ttl time.Duration) time.Duration { return ttl / 4 }

// busyError says who holds a mailbox and until when.
type busyError struct {
	Holder Lease
	Until  time.Time
}

func (e *busyError) Error() string {
	return fmt.Sprintf("%v: pass %s until %s", errBusy, e.Holder.Pass, e.Until.Format(time.RFC3339))
}

func (e *busyError) Unwrap() error { return errBusy }

// acquire takes a mailbox's lease for a session of pass, or fails with a
// *busyError while another session holds it.
func acquire(ctx context.Context, kv jetstream.KeyValue, mailbox, pass string, ttl time.Duration) (*lease, error) {
	e, err := loadEntry[Lease](ctx, kv, LeaseKey(mailbox))
	if err != nil {
		return nil, err
	}
	if until := e.V.Expires.Add(margin(ttl)); e.exists() && time.Now().Before(until) {
		return nil, &busyError{Holder: e.V, Until: until}
	}
	l := &lease{e: e, kv: kv, ttl: ttl}
	e.V.Owner, e.V.Pass = nuid.Next(), pass
	if err := l.extend(ctx); err != nil {
		return nil, fmt.Errorf("%w: %v", errBusy, err)
	}
	return l, nil
}

// extend writes a new expiry; it fails when another session took over.
func (l *lease) extend(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	until := time.Now().Add(l.ttl)
	l.e.V.Expires = until.UTC()
	if err := l.e.save(ctx, l.kv); err != nil {
		return fmt.Errorf("%w: %v", errLeaseLost, err)
	}
	l.validUntil = until
	return nil
}

// renew extends the lease when a third of it has passed.
func (l *lease) renew(ctx context.Context) error {
	l.mu.Lock()
	due := time.Until(l.validUntil) < l.ttl*2/3
	l.mu.Unlock()
	if !due {
		return nil
	}
	return l.extend(ctx)
}

// writeDeadline is when this holder must have stopped writing.
func (l *lease) writeDeadline() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.validUntil.Add(-margin(l.ttl))
}

// hold runs fn, keeping the lease alive meanwhile; fn's context ends when
// the lease could not be renewed in time, so that no write of fn outlives
// the lease.
func (l *lease) hold(ctx context.Context, fn func(ctx context.Context) error) error {
	if err := l.renew(ctx); err != nil {
		return err
	}
	hctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.keepAlive(hctx, cancel)
	}()
	err := fn(hctx)
	cancel(nil)
	wg.Wait()
	if cause := context.Cause(hctx); errors.Is(cause, errLeaseLost) {
		return errors.Join(err, cause)
	}
	return err
}

func (l *lease) keepAlive(ctx context.Context, cancel context.CancelCauseFunc) {
	tick := time.NewTicker(l.ttl / 6)
	defer tick.Stop()
	for {
		deadline := time.NewTimer(time.Until(l.writeDeadline()))
		select {
		case <-ctx.Done():
			deadline.Stop()
			return
		case <-deadline.C:
			cancel(errLeaseLost)
			return
		case <-tick.C:
			deadline.Stop()
			if err := l.renew(ctx); err != nil && ctx.Err() == nil {
				cancel(err)
				return
			}
		}
	}
}

func (l *lease) release(ctx context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_ = l.kv.Delete(ctx, l.e.key, jetstream.LastRevision(l.e.rev))
}

// BreakLeases removes every mailbox lease. Only for a broker no other
// process can reach (broker.Private), before any session starts: every
// lease found then belongs to a process that is gone (a killed all-in-one
// run), and waiting for it to expire would only delay this run.
func BreakLeases(ctx context.Context, kv jetstream.KeyValue, log zerolog.Logger) error {
	keys, err := kv.ListKeysFiltered(ctx, "lease.*")
	if err != nil {
		return fmt.Errorf("list leases: %w", err)
	}
	defer keys.Stop()
	for key := range keys.Keys() {
		e, err := loadEntry[Lease](ctx, kv, key)
		if err != nil {
			return err
		}
		if !e.exists() {
			continue
		}
		if err := kv.Delete(ctx, key, jetstream.LastRevision(e.rev)); err != nil {
			return fmt.Errorf("break lease %s: %w", key, err)
		}
		log.Info().Str("lease", key).Str("holder_pass", e.V.Pass).Time("expires", e.V.Expires).Msg("lease of a process that is gone released")
	}
	return nil
}
