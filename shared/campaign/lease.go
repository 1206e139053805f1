package campaign

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/kvjson"
	"github.com/mailferry/mailferry/shared/subject"
)

// Lease makes one of several processes the one that acts (of the
// orchestrators, the one that drives the campaign). It is a record in a
// key-value bucket holding its owner and expiry, written by
// compare-and-set: a holder renews it well before it expires; a
// newcomer takes it only a margin (a quarter of the TTL) after it
// expired, and a holder considers itself the holder only until a margin
// before, so the two never overlap even with clocks a little apart.
//
// It is the same scheme as the loader's mailbox lease
// (services/loader/lease.go), which is not generic: that one is tied to
// the ledger's entry type and to aborting an append in flight, and
// changing it would change the loader. This one is kept small and generic
// instead; the two could be joined later.
type Lease struct {
	// Alone says no other process can reach the bucket (a private
	// broker): a record of another owner is a killed run's, taken over at
	// once. (Deleting it at start is not enough: right after the embedded
	// server restarts from an unclean stop, the record can still be
	// missing from a read and show up later.)
	Alone bool

	kv    kvjson.Bucket
	key   string
	owner string
	ttl   time.Duration

	mu sync.Mutex
	// rev is the revision of our last write (0: not held).
	rev uint64
	// validUntil is when our hold ends unless renewed.
	validUntil time.Time
}

// LeaseRecord is a lease as stored.
type LeaseRecord struct {
	Owner   string    `json:"owner"`
	Expires time.Time `json:"expires"`
}

// ErrLeaseLost ends the work of a holder that could not renew its lease.
var ErrLeaseLost = errors.New("lease lost")

// NewLease is the lease called name in kv, for a new owner; ttl is how
// long a holder that stops renewing keeps it.
func NewLease(kv kvjson.Bucket, name string, ttl time.Duration) *Lease {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &Lease{kv: kv, key: prefixLease + subject.Key(name), owner: hex.EncodeToString(b[:]), ttl: ttl}
}

// Owner is this holder's id, as stored in the record.
func (l *Lease) Owner() string { return l.owner }

func (l *Lease) margin() time.Duration { return l.ttl / 4 }

// Acquire takes the lease, or renews it when this holder has it; held is
// false while another live holder has it. An error is a failure to read
// or write the bucket.
func (l *Lease) Acquire(ctx context.Context) (held bool, err error) {
	for try := 0; ; try++ {
		held, conflict, err := l.acquire(ctx)
		if !conflict || !l.Alone || try == 3 || ctx.Err() != nil {
			return held, err
		}
		// Alone, a conflict is a record a killed run left that the
		// restarted server does not show (its last write torn by the
		// kill): nobody else can write here, so clear it, unconditionally.
		if err := l.kv.Delete(ctx, l.key); err != nil {
			return false, fmt.Errorf("lease %s: clear a killed run's record: %w", l.key, err)
		}
	}
}

func (l *Lease) acquire(ctx context.Context) (held, conflict bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, err := kvjson.Get[LeaseRecord](ctx, l.kv, l.key)
	if err != nil {
		return false, false, fmt.Errorf("lease %s: %w", l.key, err)
	}
	now := time.Now()
	mine := e.Exists() && e.V.Owner == l.owner && e.Rev == l.rev
	if e.Exists() && !mine && !l.Alone && now.Before(e.V.Expires.Add(l.margin())) {
		l.rev, l.validUntil = 0, time.Time{}
		return false, false, nil
	}
	until := now.Add(l.ttl)
	e.V = LeaseRecord{Owner: l.owner, Expires: until.UTC()}
	if err := e.Save(ctx, l.kv); err != nil {
		if kvjson.IsConflict(err) {
			l.rev, l.validUntil = 0, time.Time{}
			return false, true, nil
		}
		return false, false, fmt.Errorf("lease %s: %w", l.key, err)
	}
	l.rev, l.validUntil = e.Rev, until
	return true, false, nil
}

// Held reports whether this holder may act now: it holds the lease and
// the margin before its expiry has not begun.
func (l *Lease) Held() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rev != 0 && time.Now().Before(l.validUntil.Add(-l.margin()))
}

// Release gives the lease up, if this holder still has it, so that
// another takes over at once.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rev == 0 {
		return nil
	}
	err := kvjson.Delete(ctx, l.kv, l.key, l.rev)
	l.rev, l.validUntil = 0, time.Time{}
	if err != nil && !kvjson.IsConflict(err) {
		return fmt.Errorf("release lease %s: %w", l.key, err)
	}
	return nil
}

// Lead runs act whenever this process holds the lease, until ctx ends:
// it tries to take the lease every third of its TTL, saying once that it
// waits for the holder; while it holds it, it renews it and runs act with
// a context that ends (cause ErrLeaseLost) when it could not renew in
// time, so act never outlives the hold. When act returns, Lead releases
// the lease and returns act's error; when ctx ends, ctx's error.
func (l *Lease) Lead(ctx context.Context, log zerolog.Logger, act func(ctx context.Context) error) error {
	said := false
	for {
		held, err := l.Acquire(ctx)
		if err != nil && ctx.Err() == nil {
			log.Warn().Err(err).Str("lease", l.key).Msg("lease not taken; trying again")
		}
		if held {
			log.Info().Str("lease", l.key).Str("owner", l.owner).Msg("lease taken: this instance acts")
			err := l.hold(ctx, act)
			if rerr := l.Release(context.WithoutCancel(ctx)); rerr != nil {
				log.Warn().Err(rerr).Msg("lease not released; it expires by itself")
			}
			if !errors.Is(err, ErrLeaseLost) || ctx.Err() != nil {
				return err
			}
			log.Warn().Str("lease", l.key).Msg("lease lost: another instance acts")
			said = false
		} else if !said {
			log.Info().Str("lease", l.key).Msg("waiting for the lease: another instance acts")
			said = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(l.ttl / 3):
		}
	}
}

// hold runs act while renewing the lease every sixth of its TTL.
func (l *Lease) hold(ctx context.Context, act func(ctx context.Context) error) error {
	hctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(l.ttl / 6)
		defer tick.Stop()
		for {
			l.mu.Lock()
			deadline := time.Until(l.validUntil.Add(-l.margin()))
			l.mu.Unlock()
			timer := time.NewTimer(deadline)
			select {
			case <-hctx.Done():
				timer.Stop()
				return
			case <-timer.C:
				cancel(ErrLeaseLost)
				return
			case <-tick.C:
				timer.Stop()
				// A failed read or write is tried again at the next tick,
				// until the deadline; another holder ends the hold now.
				if held, err := l.Acquire(hctx); !held && err == nil && hctx.Err() == nil {
					cancel(ErrLeaseLost)
					return
				}
			}
		}
	}()
	err := act(hctx)
	cancel(nil)
	<-done
	if cause := context.Cause(hctx); errors.Is(cause, ErrLeaseLost) {
		return errors.Join(err, cause)
	}
	return err
}

// Holder reads who holds the lease called name in kv and until when; ok
// is false when nobody does (no record, or one expired).
func Holder(ctx context.Context, kv kvjson.Bucket, name string) (rec LeaseRecord, ok bool, err error) {
	e, err := kvjson.Get[LeaseRecord](ctx, kv, prefixLease+subject.Key(name))
	if err != nil {
		return LeaseRecord{}, false, fmt.Errorf("read lease %s: %w", name, err)
	}
	return e.V, e.Exists() && time.Now().Before(e.V.Expires), nil
}

// Break deletes the lease called name in kv, whoever holds it: for a
// process that knows no other can (the all-in-one runner on its private
// broker, after a run was killed holding it).
func Break(ctx context.Context, kv kvjson.Bucket, name string) error {
	e, err := kvjson.Get[LeaseRecord](ctx, kv, prefixLease+subject.Key(name))
	if err != nil || !e.Exists() {
		return err
	}
	if err := kvjson.Delete(ctx, kv, prefixLease+subject.Key(name), e.Rev); err != nil && !kvjson.IsConflict(err) {
		return fmt.Errorf("break lease %s: %w", name, err)
	}
	return nil
}
