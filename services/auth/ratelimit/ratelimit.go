// Package ratelimit slows down password guessing: a Lockout locks a key
// (an account, a client address) out for a while after too many failures,
// and a Window caps how many requests a key may make per period. Both
// keep their state in memory, take the current time as an argument (so
// tests need no sleeping) and forget idle keys on their own, without a
// goroutine.
package ratelimit

import (
	"sync"
	"time"
)

// sweepEvery is how many calls pass between sweeps of idle keys.
const sweepEvery = 512

// Lockout locks a key out after Max failures within Window, for Base the
// first time and twice as long each further time (at most MaxLockout),
// until a success resets the key.
type Lockout struct {
	Max        int
	Window     time.Duration
	Base       time.Duration
	MaxLockout time.Duration

	mu    sync.Mutex
	keys  map[string]*lockoutState
	calls int
}

type lockoutState struct {
	failures    int
	windowStart time.Time
	lockedUntil time.Time
	lockouts    int
	lastSeen    time.Time
}

// Check reports whether key may make an attempt at now; when it may not,
// wait says how long until it may.
func (l *Lockout) Check(key string, now time.Time) (wait time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.keys[key]
	if s == nil || !now.Before(s.lockedUntil) {
		return 0, true
	}
	return s.lockedUntil.Sub(now), false
}

// Fail records a failed attempt by key at now. When it locks the key out
// it returns the lockout's length.
func (l *Lockout) Fail(key string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	if l.keys == nil {
		l.keys = map[string]*lockoutState{}
	}
	s := l.keys[key]
	if s == nil {
		s = &lockoutState{}
		l.keys[key] = s
	}
	s.lastSeen = now
	if now.Sub(s.windowStart) > l.Window {
		s.failures, s.windowStart = 0, now
	}
	s.failures++
	if s.failures < l.Max {
		return 0
	}
	d := l.Base << min(s.lockouts, 30)
	if d > l.MaxLockout || d <= 0 {
		d = l.MaxLockout
	}
	s.lockouts++
	s.failures, s.windowStart = 0, now
	s.lockedUntil = now.Add(d)
	return d
}

// Succeed forgets key's failures and lockout history.
func (l *Lockout) Succeed(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.keys, key)
}

// sweep drops keys that are neither locked nor inside a failure window,
// and whose lockout history has gone quiet for MaxLockout.
func (l *Lockout) sweep(now time.Time) {
	l.calls++
	if l.calls%sweepEvery != 0 {
		return
	}
	for k, s := range l.keys {
		if now.After(s.lockedUntil) && now.Sub(s.lastSeen) > max(l.Window, l.MaxLockout) {
			delete(l.keys, k)
		}
	}
}

// Window allows each key at most Max requests per Period (fixed windows).
type Window struct {
	Max    int
	Period time.Duration

	mu    sync.Mutex
	keys  map[string]*windowState
	calls int
}

type windowState struct {
	start time.Time
	count int
}

// Allow counts a request by key at now and reports whether it is within
// the limit; when it is not, wait says when the next window opens.
func (w *Window) Allow(key string, now time.Time) (wait time.Duration, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sweep(now)
	if w.keys == nil {
		w.keys = map[string]*windowState{}
	}
	s := w.keys[key]
	if s == nil || now.Sub(s.start) >= w.Period {
		s = &windowState{start: now}
		w.keys[key] = s
	}
	if s.count >= w.Max {
		return s.start.Add(w.Period).Sub(now), false
	}
	s.count++
	return 0, true
}

func (w *Window) sweep(now time.Time) {
	w.calls++
	if w.calls%sweepEvery != 0 {
		return
	}
	for k, s := range w.keys {
		if now.Sub(s.start) >= w.Period {
			delete(w.keys, k)
		}
	}
}
