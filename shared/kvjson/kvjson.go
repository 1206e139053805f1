// Package kvjson keeps JSON values in a JetStream key-value bucket and
// writes them by compare-and-set: a write names the revision it read, so a
// second writer that raced it fails (or, with Update, reads again and
// retries) instead of overwriting what it never saw. The extractor's
// checkpoints, the loader's ledger, auth's accounts and rate limits and
// dnsctl's journal all keep their state this way.
package kvjson

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is what kvjson needs of a key-value bucket; jetstream.KeyValue
// has it.
type Bucket interface {
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
	Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error)
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
	Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error
}

var (
	// ErrConflict is wrapped by a write that lost a race: the key was
	// created or changed since it was read. The jetstream error
	// (ErrKeyExists or ErrKeyRevisionMismatch) is wrapped too.
	ErrConflict = errors.New("written concurrently")
	// ErrSkip, returned by an Update function, ends the update without
	// writing anything; Update then returns the entry and no error.
	ErrSkip = errors.New("nothing to write")
)

// DefaultAttempts is how often Update tries before giving up on a key
// that keeps changing under it.
const DefaultAttempts = 8

// Entry is a value with the revision it was read at (0: the key was
// absent), so that writing it back can fail when someone else wrote first.
type Entry[T any] struct {
	Key string
	Rev uint64
	V   T
}

// Exists reports whether the key held a value when read (or has been
// written since).
func (e *Entry[T]) Exists() bool { return e.Rev != 0 }

// Save writes e.V back if the key is still at e.Rev (still absent when
// e.Rev is 0), and moves e.Rev to the new revision.
func (e *Entry[T]) Save(ctx context.Context, kv Bucket) error {
	rev, err := Write(ctx, kv, e.Key, e.V, e.Rev)
	if err != nil {
		return err
	}
	e.Rev = rev
	return nil
}

// Get reads key. An absent key is no error: the entry has Rev 0 and the
// zero value.
func Get[T any](ctx context.Context, kv Bucket, key string) (*Entry[T], error) {
	return get[T](ctx, kv, key, false)
}

// get reads key; with lenient, a value that does not decode reads as the
// zero value at its revision.
func get[T any](ctx context.Context, kv Bucket, key string, lenient bool) (*Entry[T], error) {
	e := &Entry[T]{Key: key}
	got, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return e, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	if err := json.Unmarshal(got.Value(), &e.V); err != nil {
		if !lenient {
			return nil, fmt.Errorf("decode %s: %w", key, err)
		}
		var zero T
		e.V = zero
	}
	e.Rev = got.Revision()
	return e, nil
}

// Write stores v under key if the key is still at revision rev, or, with
// rev 0, if it does not exist yet. It returns the new revision; losing the
// race is an error wrapping ErrConflict.
func Write[T any](ctx context.Context, kv Bucket, key string, v T, rev uint64) (uint64, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("encode %s: %w", key, err)
	}
	var nrev uint64
	if rev == 0 {
		nrev, err = kv.Create(ctx, key, b)
	} else {
		nrev, err = kv.Update(ctx, key, b, rev)
	}
	if IsConflict(err) {
		return 0, fmt.Errorf("write %s: %w: %w", key, ErrConflict, err)
	}
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", key, err)
	}
	return nrev, nil
}

// Create stores v under key only if the key does not exist; if it does,
// the error wraps ErrConflict (and jetstream.ErrKeyExists).
func Create[T any](ctx context.Context, kv Bucket, key string, v T) (uint64, error) {
	return Write(ctx, kv, key, v, 0)
}

// Delete removes key if it is still at revision rev; a key changed since
// is left alone and the error wraps ErrConflict.
func Delete(ctx context.Context, kv Bucket, key string, rev uint64) error {
	err := kv.Delete(ctx, key, jetstream.LastRevision(rev))
	if IsConflict(err) {
		return fmt.Errorf("delete %s: %w: %w", key, ErrConflict, err)
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// IsConflict reports whether err says a compare-and-set lost a race: the
// key existed on create, or was at another revision on update or delete.
func IsConflict(err error) bool {
	return errors.Is(err, ErrConflict) || errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

// Option tunes Update.
type Option func(*options)

type options struct {
	attempts         int
	resetUndecodable bool
}

// Attempts bounds how often Update tries (DefaultAttempts without it).
func Attempts(n int) Option { return func(o *options) { o.attempts = max(n, 1) } }

// ResetUndecodable makes Update treat a value it cannot decode as the
// zero value at its revision, so that the write replaces it, instead of
// failing: for state that is better started afresh than refused forever.
func ResetUndecodable() Option { return func(o *options) { o.resetUndecodable = true } }

// Update applies fn to key's current entry (Rev 0 and the zero value when
// absent) and writes the result by compare-and-set; when another writer
// got there first it waits a little and calls fn again on the newer state,
// up to the number of attempts. fn may replace e.V entirely. fn returning
// ErrSkip (or an error wrapping it) writes nothing and Update returns the
// entry as fn left it; any other error from fn is returned as is, with
// nothing written. After the write, e.Rev is the new revision.
func Update[T any](ctx context.Context, kv Bucket, key string, fn func(e *Entry[T]) error, opts ...Option) (*Entry[T], error) {
	o := options{attempts: DefaultAttempts}
	for _, opt := range opts {
		opt(&o)
	}
	for attempt := range o.attempts {
		e, err := get[T](ctx, kv, key, o.resetUndecodable)
		if err != nil {
			return nil, err
		}
		if err := fn(e); errors.Is(err, ErrSkip) {
			return e, nil
		} else if err != nil {
			return nil, err
		}
		err = e.Save(ctx, kv)
		if err == nil {
			return e, nil
		}
		if !IsConflict(err) {
			return nil, err
		}
		// Jitter, growing to 16 ms, so writers that collided do not
		// collide again on their next attempt.
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("write %s: %w", key, ctx.Err())
		case <-time.After(time.Duration(rand.Int64N(int64(time.Millisecond) << min(attempt, 4)))):
		}
	}
	return nil, fmt.Errorf("write %s: %d concurrent writes in a row: %w", key, o.attempts, ErrConflict)
}
