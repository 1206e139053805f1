package account

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/nats-io/nats.go/jetstream"

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

func accountKey(email string) string { return accountPrefix + subject.Key(email) }
func domainKey(domain string) string { return domainPrefix + subject.Key(domain) }

// Get returns the account of a normalized address.
func (s *Store) Get(ctx context.Context, email string) (*Account, error) {
	a, _, err := s.get(ctx, email)
	return a, err
}

func (s *Store) get(ctx context.Context, email string) (*Account, uint64, error) {
	e, err := s.kv.Get(ctx, accountKey(email))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read account %s: %w", email, err)
	}
	a := &Account{}
	if err := json.Unmarshal(e.Value(), a); err != nil {
		return nil, 0, fmt.Errorf("decode account %s: %w", email, err)
	}
	return a, e.Revision(), nil
}

// Update changes an existing account by compare-and-set: fn gets the
// current state and edits it; when another writer got there first it is
// called again on the newer state. fn returning ErrUnchanged writes
// nothing; other errors abort. It returns the account as stored.
func (s *Store) Update(ctx context.Context, email string, fn func(*Account) error) (*Account, error) {
	for range maxCASAttempts {
		a, rev, err := s.get(ctx, email)
		if err != nil {
			return nil, err
		}
		if err := fn(a); err != nil {
			if errors.Is(err, ErrUnchanged) {
				return a, nil
			}
			return nil, err
		}
		raw, err := json.Marshal(a)
		if err != nil {
			return nil, fmt.Errorf("encode account %s: %w", email, err)
		}
		_, err = s.kv.Update(ctx, accountKey(email), raw, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("write account %s: %w", email, err)
		}
		return a, nil
	}
	return nil, fmt.Errorf("write account %s: %d concurrent updates in a row", email, maxCASAttempts)
}

// Upsert creates the account with create() or, when it exists, changes it
// with update() by compare-and-set. It reports whether it created it.
func (s *Store) Upsert(ctx context.Context, email string, create func() *Account, update func(*Account) error) (created bool, err error) {
	for range maxCASAttempts {
		_, err := s.Update(ctx, email, update)
		if !errors.Is(err, ErrNotFound) {
			return false, err
		}
		raw, err := json.Marshal(create())
		if err != nil {
			return false, fmt.Errorf("encode account %s: %w", email, err)
		}
		_, err = s.kv.Create(ctx, accountKey(email), raw)
		if errors.Is(err, jetstream.ErrKeyExists) {
			// Created concurrently: update that one instead.
			continue
		}
		if err != nil {
			return false, fmt.Errorf("create account %s: %w", email, err)
		}
		return true, nil
	}
	return false, fmt.Errorf("write account %s: %d concurrent updates in a row", email, maxCASAttempts)
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
