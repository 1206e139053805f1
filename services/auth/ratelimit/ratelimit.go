// Package ratelimit slows down password guessing. Its state lives in a
// JetStream key-value bucket, so every auth instance on the broker
// enforces the same limits, and every change is a compare-and-set on the
// entry's revision, so concurrent requests on any number of instances
// cannot count past a limit.
//
// An attempt is counted before its password is checked (Admit) and given
// back afterwards when it was not a failure (Attempt.Succeeded,
// Attempt.Void): a burst of guesses sent at once gets as many checks as
// the limit allows, never more. The limits:
//
//   - per (account, client): Limits.PairFailures failures within Window
//     lock that client out of that account — only that client, so an
//     attacker elsewhere cannot lock the user out;
//   - per client (an address, an IPv6 /64): Limits.ClientFailures failures
//     within Window, over all accounts, lock the client out of every
//     account; and at most Limits.ClientRequests requests per minute;
//   - a lockout lasts Limits.Lockout, doubling with each further lockout
//     that begins at least Window after the previous one (so a burst can
//     escalate it at most once per window), up to Limits.MaxLockout. The
//     history is forgotten after max(Window, MaxLockout) without a
//     lockout.
//
// Key layout in the bucket (tokens encoded by subject.Key):
//
//	p.<account>.<client>   the (account, client) entry
//	c.<client>             the client entry: failures and requests
//
// Every entry records its own window and lockout times, which decide;
// the bucket's TTL (MaxLockout + max(Window, MaxLockout) + a minute,
// counted from an entry's last write) only removes entries that went
// quiet.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/mailferry/mailferry/services/auth/authconfig"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/services/auth/internal/keylock"
	"github.com/mailferry/mailferry/shared/kvjson"
	"github.com/mailferry/mailferry/shared/subject"
)

// RequestPeriod is the period of Limits.ClientRequests.
const RequestPeriod = time.Minute

// maxCASAttempts bounds retries of a compare-and-set that keeps losing
// to other instances (within one instance, writers of a key take turns).
const maxCASAttempts = 32

// Key prefixes.
const (
	pairPrefix   = "p."
	clientPrefix = "c."
)

// Limits are the thresholds and durations.
type Limits struct {
	// PairFailures failed attempts of one client on one account lock
	// that client out of that account.
	PairFailures int
	// ClientFailures failed attempts of one client, on any accounts,
	// lock it out of all.
	ClientFailures int
	// Window is the period failures are counted in.
	Window time.Duration
	// Lockout is the first lockout's length; MaxLockout bounds doubling.
	Lockout    time.Duration
	MaxLockout time.Duration
	// ClientRequests bounds a client's attempts per RequestPeriod, failed
	// or not (each costs a hash computation).
	ClientRequests int
}

// LimitsFromConfig maps the configured rate limits: account_failures
// counts per (account, client), address_failures per client.
func LimitsFromConfig(c authconfig.RateLimit) Limits {
	return Limits{
		PairFailures:   c.AccountFailures,
		ClientFailures: c.AddressFailures,
		Window:         c.Window.Std(),
		Lockout:        c.Lockout.Std(),
		MaxLockout:     c.MaxLockout.Std(),
		ClientRequests: c.AddressRequests,
	}
}

// quiet is how long after its last lockout a key's history is forgotten.
func (l Limits) quiet() time.Duration { return max(l.Window, l.MaxLockout) }

// TTL is the bucket's max age: an entry unwritten for that long holds
// nothing that still counts (its last write is at the latest when its
// last lockout began).
func (l Limits) TTL() time.Duration { return l.MaxLockout + l.quiet() + RequestPeriod }

// lockoutFor is the length of a lockout at level (0 for the first).
func (l Limits) lockoutFor(level int) time.Duration {
	d := l.Lockout << min(level, 30)
	if d > l.MaxLockout || d <= 0 {
		d = l.MaxLockout
	}
	return d
}

// Refused is an attempt the limits turned away; the caller answers "try
// again after RetryAfter".
type Refused struct {
	RetryAfter time.Duration
	// Why is "requests" (the client's request cap), "client" (the client
	// is locked out) or "account" (the client is locked out of this
	// account).
	Why string
}

// Error says what refused the attempt and for how long.
func (e *Refused) Error() string {
	return fmt.Sprintf("attempt refused (%s limit) for %s", e.Why, e.RetryAfter.Round(time.Second))
}

// Store keeps the limits' state in a key-value bucket.
type Store struct {
	kv    jetstream.KeyValue
	lim   Limits
	now   func() time.Time
	locks keylock.Locks
}

// Open declares the bucket (idempotently; its TTL follows lim) and
// returns a store on it. now is the clock (time.Now when nil).
func Open(ctx context.Context, js jetstream.JetStream, bucket string, replicas int, lim Limits, now func() time.Time) (*Store, error) {
	if lim.PairFailures < 1 || lim.ClientFailures < 1 || lim.ClientRequests < 1 || lim.Window <= 0 || lim.Lockout <= 0 || lim.MaxLockout <= 0 {
		return nil, fmt.Errorf("rate limits %+v: every limit and duration must be positive", lim)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "auth rate limits and lockouts per (account, client) and per client",
		History:     1,
		TTL:         lim.TTL(),
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("declare bucket %s: %w", bucket, err)
	}
	if now == nil {
		now = time.Now
	}
	return &Store{kv: kv, lim: lim, now: now}, nil
}

// PairKey and ClientKey are the bucket keys of an (account, client) and
// of a client.
func PairKey(account, client string) string {
	return pairPrefix + subject.Key(account) + "." + subject.Key(client)
}

// ClientKey is the bucket key of a client's entry.
func ClientKey(client string) string { return clientPrefix + subject.Key(client) }

// Attempt is an admitted attempt. Settle it with Succeeded or Void; a
// failure needs nothing more: it was counted when admitted.
type Attempt struct {
	s                     *Store
	pairKey, clientKey    string
	pairWindow, cliWindow time.Time
	pairLocked, cliLocked time.Duration
	settled               bool
}

// LockedFor is how long this attempt's admission locked the client out
// (of the account or of all), 0 if it did not: the lockout that stands
// when the attempt fails.
func (a *Attempt) LockedFor() time.Duration { return max(a.pairLocked, a.cliLocked) }

// Admit counts an attempt of client on account, or refuses it with a
// *Refused. Other errors mean the state could not be read or written: the
// caller must not check the password then.
func (s *Store) Admit(ctx context.Context, account, client string) (*Attempt, error) {
	a := &Attempt{s: s, pairKey: PairKey(account, client), clientKey: ClientKey(client)}
	// The client's request cap and lockout first: a refused request costs
	// nothing more.
	err := s.update(ctx, a.clientKey, func(e *entry, now time.Time) (bool, error) {
		if wait, ok := e.request(now, s.lim); !ok {
			return false, &Refused{RetryAfter: wait, Why: "requests"}
		}
		if now.Before(e.LockedUntil) {
			// The request still counts towards the cap.
			return true, &Refused{RetryAfter: e.LockedUntil.Sub(now), Why: "client"}
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	// Then the (account, client) count, which most refusals of a burst
	// meet, and the client's count last: the client's entry never counts
	// an attempt the account's limit turned away.
	err = s.update(ctx, a.pairKey, func(e *entry, now time.Time) (bool, error) {
		a.pairWindow, a.pairLocked = time.Time{}, 0
		wait, locked, ok := e.count(now, s.lim.PairFailures, s.lim)
		if !ok {
			return false, &Refused{RetryAfter: wait, Why: "account"}
		}
		a.pairWindow, a.pairLocked = e.WindowStart, locked
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	err = s.update(ctx, a.clientKey, func(e *entry, now time.Time) (bool, error) {
		a.cliWindow, a.cliLocked = time.Time{}, 0
		wait, locked, ok := e.count(now, s.lim.ClientFailures, s.lim)
		if !ok {
			// Locked by the client's attempts at other accounts meanwhile.
			return false, &Refused{RetryAfter: wait, Why: "client"}
		}
		a.cliWindow, a.cliLocked = e.WindowStart, locked
		return true, nil
	})
	if err != nil {
		// Nothing will be checked: the account's count goes back.
		if rerr := s.refund(ctx, a.pairKey, a.pairWindow, s.lim.PairFailures); rerr != nil {
			return nil, errors.Join(err, rerr)
		}
		return nil, err
	}
	return a, nil
}

// Succeeded settles an attempt whose password was right and Void one
// that said nothing about the password (the service could not check
// it): either way the attempt is given back to the (account, client) and
// to the client, lifting a lockout its admission set. Other failures of
// the window still count: one right password must not wash away guesses
// at others, and a burst with the right password in it gets at most
// Limits.PairFailures wrong ones checked.
func (a *Attempt) Succeeded(ctx context.Context) error { return a.giveBack(ctx) }

// Void settles an attempt that said nothing about the password; see
// Succeeded.
func (a *Attempt) Void(ctx context.Context) error { return a.giveBack(ctx) }

func (a *Attempt) giveBack(ctx context.Context) error {
	if a.settled {
		return nil
	}
	a.settled = true
	return errors.Join(
		a.s.refund(ctx, a.pairKey, a.pairWindow, a.s.lim.PairFailures),
		a.s.refund(ctx, a.clientKey, a.cliWindow, a.s.lim.ClientFailures))
}

func (s *Store) refund(ctx context.Context, key string, window time.Time, max int) error {
	if window.IsZero() {
		return nil
	}
	return s.update(ctx, key, func(e *entry, _ time.Time) (bool, error) {
		return e.refund(window, max), nil
	})
}

// update applies fn to key's entry by compare-and-set, again on a newer
// state when another instance wrote in between. fn reports whether to
// write; its error is returned (after the write, if any).
func (s *Store) update(ctx context.Context, key string, fn func(e *entry, now time.Time) (bool, error)) error {
	unlock := s.locks.Lock(key)
	defer unlock()
	var ferr error
	_, err := kvjson.Update(ctx, s.kv, key, func(e *kvjson.Entry[entry]) error {
		var write bool
		if write, ferr = fn(&e.V, s.now()); !write {
			return kvjson.ErrSkip
		}
		return nil
	},
		kvjson.Attempts(maxCASAttempts),
		// No version of this code wrote what does not decode: start the
		// key afresh rather than refuse every attempt until it expires.
		kvjson.ResetUndecodable())
	if err != nil {
		return fmt.Errorf("rate limit: %w", err)
	}
	return ferr
}

// entry is the state of one key.
type entry struct {
	// Count is the attempts counted in the window: failed, or still being
	// checked.
	Count       int       `json:"count,omitempty"`
	WindowStart time.Time `json:"window_start,omitzero"`
	// LockedUntil is the end of the current lockout; LockStart when the
	// latest lockout began and Level how many times it doubled.
	LockedUntil time.Time `json:"locked_until,omitzero"`
	LockStart   time.Time `json:"lock_start,omitzero"`
	Level       int       `json:"level,omitempty"`
	// PrevLevel and PrevLockStart undo the latest lockout when the
	// attempt that set it is given back.
	PrevLevel     int       `json:"prev_level,omitempty"`
	PrevLockStart time.Time `json:"prev_lock_start,omitzero"`
	// Requests in the period that began at RequestStart (clients only).
	Requests     int       `json:"requests,omitempty"`
	RequestStart time.Time `json:"request_start,omitzero"`
}

// request counts a request against the cap, or says how long until the
// next period.
func (e *entry) request(now time.Time, l Limits) (wait time.Duration, ok bool) {
	if e.RequestStart.IsZero() || now.Sub(e.RequestStart) >= RequestPeriod || now.Before(e.RequestStart) {
		e.Requests, e.RequestStart = 0, now
	}
	if e.Requests >= l.ClientRequests {
		return e.RequestStart.Add(RequestPeriod).Sub(now), false
	}
	e.Requests++
	return 0, true
}

// count admits an attempt under a limit of max failures: ok is false
// while locked out (wait says how long). The attempt that reaches max
// locks the key at once, before its outcome is known; lockedFor is then
// the lockout's length.
func (e *entry) count(now time.Time, max int, l Limits) (wait, lockedFor time.Duration, ok bool) {
	if now.Before(e.LockedUntil) {
		return e.LockedUntil.Sub(now), 0, false
	}
	if !e.LockedUntil.IsZero() {
		// A lockout ended: a new window begins.
		e.LockedUntil, e.Count, e.WindowStart = time.Time{}, 0, now
	}
	if !e.LockStart.IsZero() && now.Sub(e.LockStart.Add(l.lockoutFor(e.Level))) > l.quiet() {
		// Quiet since long: lockouts start from the beginning again.
		e.Level, e.LockStart = 0, time.Time{}
	}
	if e.WindowStart.IsZero() || now.Sub(e.WindowStart) >= l.Window || now.Before(e.WindowStart) {
		e.Count, e.WindowStart = 0, now
	}
	e.Count++
	if e.Count < max {
		return 0, 0, true
	}
	e.PrevLevel, e.PrevLockStart = e.Level, e.LockStart
	if !e.LockStart.IsZero() && now.Sub(e.LockStart) >= l.Window {
		// Escalate at most once per window.
		e.Level++
	}
	d := l.lockoutFor(e.Level)
	e.LockStart, e.LockedUntil = now, now.Add(d)
	return 0, d, true
}

// refund gives back an attempt counted in the window that began at
// window; when that brings the count below max, a lockout set in this
// window no longer stands. It reports whether e changed.
func (e *entry) refund(window time.Time, max int) bool {
	if !e.WindowStart.Equal(window) || e.Count == 0 {
		// The window moved on: the attempt no longer counts anyway.
		return false
	}
	e.Count--
	if e.Count < max && !e.LockedUntil.IsZero() && !e.LockStart.Before(e.WindowStart) {
		e.LockedUntil = time.Time{}
		e.Level, e.LockStart = e.PrevLevel, e.PrevLockStart
	}
	return true
}

// Client names the client of an address for the limits: an IPv4 address
// itself, an IPv6 address's /64 (one host usually owns a whole /64), any
// other string as it is.
func Client(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.WithZone("").Prefix(64)
		return p.String()
	}
	return a.String()
}
