package account

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/shared/kvjson"
	"github.com/mailferry/mailferry/shared/subject"
)

// Key prefixes in the bucket: accounts, and domains whose provisioning
// was announced.
const (
	accountPrefix = "a."
	domainPrefix  = "d."
)

// maxCASAttempts bounds retries of a compare-and-set that keeps losing to
// concurrent writers.
const maxCASAttempts = 8

// Errors of the store.
var (
	ErrNotFound = errors.New("account not found")
	// ErrUnchanged, returned by an update function, skips the write.
	ErrUnchanged = errors.New("account unchanged")
)

// Store keeps accounts in a JetStream key-value bucket.
type Store struct {
	kv jetstream.KeyValue
}

// Open declares the bucket (idempotently) and returns a store on it.
func Open(ctx context.Context, js jetstream.JetStream, bucket string, replicas int) (*Store, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "auth accounts: role, password hash, provisioning and password state",
		History:     5,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("declare bucket %s: %w", bucket, err)
	}
	return &Store{kv: kv}, nil
}

// Bind binds the bucket as the auth service declared it, without
// declaring it: for readers (a domain's cutover report) that must not
// create it. The error wraps jetstream.ErrBucketNotFound when the auth
// service has not created it yet.
func Bind(ctx context.Context, js jetstream.JetStream, bucket string) (*Store, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("bind bucket %s: %w", bucket, err)
	}
	return &Store{kv: kv}, nil
}

func accountKey(email string) string { return accountPrefix + subject.Key(email) }
func domainKey(domain string) string { return domainPrefix + subject.Key(domain) }

// Get returns the account of a normalized address.
func (s *Store) Get(ctx context.Context, email string) (*Account, error) {
	a, _, err := s.get(ctx, email)
	return a, err
}

func (s *Store) get(ctx context.Context, email string) (*Account, uint64, error) {
	e, err := kvjson.Get[*Account](ctx, s.kv, accountKey(email))
	if err != nil {
		return nil, 0, fmt.Errorf("account %s: %w", email, err)
	}
	if !e.Exists() {
		return nil, 0, ErrNotFound
	}
	return e.V, e.Rev, nil
}

// Update changes an existing account by compare-and-set: fn gets the
// current state and edits it; when another writer got there first it is
// called again on the newer state. fn returning ErrUnchanged writes
// nothing; other errors abort. It returns the account as stored.
func (s *Store) Update(ctx context.Context, email string, fn func(*Account) error) (*Account, error) {
	return s.update(ctx, email, func(e *kvjson.Entry[*Account]) error {
		if !e.Exists() {
			return ErrNotFound
		}
		return fn(e.V)
	})
}

// Upsert creates the account with create() or, when it exists, changes it
// with update() by compare-and-set. It reports whether it created it.
func (s *Store) Upsert(ctx context.Context, email string, create func() *Account, update func(*Account) error) (created bool, err error) {
	_, err = s.update(ctx, email, func(e *kvjson.Entry[*Account]) error {
		// Created concurrently: the next attempt updates that one.
		if created = !e.Exists(); created {
			e.V = create()
			return nil
		}
		return update(e.V)
	})
	return created && err == nil, err
}

// update writes what fn makes of the account's entry by compare-and-set,
// trying again on a newer state when it lost a race. fn returning
// ErrUnchanged writes nothing; its other errors (ErrNotFound among them)
// are returned as they are.
func (s *Store) update(ctx context.Context, email string, fn func(*kvjson.Entry[*Account]) error) (*Account, error) {
	var own error
	e, err := kvjson.Update(ctx, s.kv, accountKey(email), func(e *kvjson.Entry[*Account]) error {
		if own = fn(e); errors.Is(own, ErrUnchanged) {
			return kvjson.ErrSkip
		}
		return own
	}, kvjson.Attempts(maxCASAttempts))
	switch {
	case err != nil && own != nil && errors.Is(err, own):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("write account %s: %w", email, err)
	}
	return e.V, nil
}

// List returns every account, sorted by address. It reads the bucket in
// one pass (a watch that ends after the current values).
func (s *Store) List(ctx context.Context) ([]*Account, error) {
	w, err := s.kv.WatchFiltered(ctx, []string{accountPrefix + ">"}, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	defer w.Stop()
	var out []*Account
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("list accounts: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("list accounts: watch ended early")
			}
			if e == nil {
				// nil marks the end of the current values.
				sort.Slice(out, func(i, j int) bool { return out[i].Email < out[j].Email })
				return out, nil
			}
			a := &Account{}
			if err := json.Unmarshal(e.Value(), a); err != nil {
				return nil, fmt.Errorf("decode account under %s: %w", e.Key(), err)
			}
			out = append(out, a)
		}
	}
}

// DomainAnnounced reports whether MarkDomainAnnounced was called for domain.
func (s *Store) DomainAnnounced(ctx context.Context, domain string) (bool, error) {
	_, err := s.kv.Get(ctx, domainKey(domain))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read domain %s: %w", domain, err)
	}
	return true, nil
}

// MarkDomainAnnounced records that domain.provisioned was published.
func (s *Store) MarkDomainAnnounced(ctx context.Context, domain string) error {
	if _, err := s.kv.Put(ctx, domainKey(domain), []byte(domain)); err != nil {
		return fmt.Errorf("write domain %s: %w", domain, err)
	}
	return nil
}
