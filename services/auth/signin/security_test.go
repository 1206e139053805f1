package signin

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mailferry/mailferry/services/auth/account"
	"github.com/mailferry/mailferry/services/auth/internal/authtest"
	"github.com/mailferry/mailferry/services/auth/legacyimap"
	"github.com/mailferry/mailferry/services/auth/passhash"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
)

// legacyFunc is a LegacyVerifier for tests.
type legacyFunc func(ctx context.Context, user, password, client string) (bool, error)

func (f legacyFunc) Verify(ctx context.Context, user, password, client string) (bool, error) {
	return f(ctx, user, password, client)
}

// refuses is a legacy server that refuses every password at once.
var refuses = legacyFunc(func(context.Context, string, string, string) (bool, error) { return false, nil })

// hashLog records the hashes a service verifies.
type hashLog struct {
	mu     sync.Mutex
	stored []string
}

func (h *hashLog) verify(password, stored string) (bool, error) {
	h.mu.Lock()
	h.stored = append(h.stored, stored)
	h.mu.Unlock()
	return passhash.Verify(password, stored)
}

func (h *hashLog) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.stored
	h.stored = nil
	return out
}

// TestEveryPathComputesOneArgon2idWithTheConfiguredParameters is the
// structure that makes the paths indistinguishable by timing: whatever
// the account (unknown, imported hash of any scheme, upgraded, checked at
// the legacy IMAP server, a raw legacy hash an earlier version stored),
// a check verifies exactly one hash whose argon2id has the configured
// parameters, and no argon2 of other parameters.
func TestEveryPathComputesOneArgon2idWithTheConfiguredParameters(t *testing.T) {
	hashes := &hashLog{}
	f := newFixture(t, refuses, "", func(o *Options) { o.VerifyHash = hashes.verify })
	f.importUsers(t, map[string]string{
		"sha512@example.org":   legacyHashes["sha512@example.org"],
		"blf@example.org":      legacyHashes["blf@example.org"],
		"pbkdf2@example.org":   legacyHashes["pbkdf2@example.org"],
		"argon@example.org":    "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$lPGkoQF2WtXk72MtYNaeyQ$9YZwkjNh36UTHGWUqj5T//byo2Lr90lXi6oRj396MHc",
		"upgraded@example.org": legacyHashes["md5@example.org"],
		"raw@example.org":      legacyHashes["ssha@example.org"],
		"nohash@example.org":   "",
	})
	ctx := authtest.Context(t, time.Minute)
	want := Argon2FromConfig(authtest.Auth(t, f.cfg).Argon2)
	// An upgraded account holds argon2id; an earlier version stored raw
	// legacy hashes.
	for email, h := range map[string]string{"upgraded@example.org": want.Hash(legacyPassword), "raw@example.org": legacyHashes["ssha@example.org"]} {
		if _, err := f.store.Update(ctx, email, func(a *account.Account) error { a.Hash = h; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	for _, email := range []string{"unknown@example.org", "sha512@example.org", "blf@example.org", "pbkdf2@example.org", "argon@example.org", "upgraded@example.org", "raw@example.org", "nohash@example.org"} {
		t.Run(email, func(t *testing.T) {
			hashes.take()
			if _, err := f.svc.Login(ctx, email, "Wrong#2024", fmt.Sprintf("192.0.2.%d", len(email))); !errors.Is(err, ErrBadCredentials) {
				t.Fatalf("Login = %v, want ErrBadCredentials", err)
			}
			ours, others := 0, 0
			for _, stored := range hashes.take() {
				if p, ok := passhash.Argon2Of(stored); ok && p == want {
					ours++ // a wrapped legacy argon2 inside counts as its scheme
				} else if passhash.MemoryKiB(stored) > 0 {
					others++
				}
			}
			if ours != 1 || others != 0 {
				t.Fatalf("verified %d hashes with the configured argon2id and %d with other argon2, want exactly 1 and 0", ours, others)
			}
		})
	}
}

// TestFailuresAnswerAtTheFailureTime: every failed check is answered no
// sooner than the failure time, the legacy IMAP check is given no more
// than that, and a legacy server that holds its answer back makes the
// check a counted failure, not an outage.
func TestFailuresAnswerAtTheFailureTime(t *testing.T) {
	const failureTime = 300 * time.Millisecond
	var (
		mu        sync.Mutex
		deadlines []time.Duration
	)
	// The legacy server refuses "Wrong#1" at once and sits on anything
	// else until the deadline, as Dovecot does for a penalized address.
	legacy := legacyFunc(func(ctx context.Context, user, password, client string) (bool, error) {
		dl, _ := ctx.Deadline()
		mu.Lock()
		deadlines = append(deadlines, time.Until(dl))
		mu.Unlock()
		if password == "Wrong#1" {
			return false, nil
		}
		<-ctx.Done()
		return false, fmt.Errorf("%w: %w", legacyimap.ErrNoAnswer, ctx.Err())
	})
	f := newFixture(t, clientCausedLegacy{legacy}, ", rate_limit: {account_failures: 2}", func(o *Options) { o.FailureTime = failureTime })
	f.importUsers(t, map[string]string{"sha512@example.org": legacyHashes["sha512@example.org"], "nohash@example.org": ""})
	ctx := authtest.Context(t, time.Minute)
	for _, tc := range []struct{ name, email, password string }{
		{"unknown account", "unknown@example.org", "Wrong#1"},
		{"wrong password against a stored hash", "sha512@example.org", "Wrong#1"},
		{"wrong password at the legacy server", "nohash@example.org", "Wrong#1"},
		{"the legacy server holds the answer back", "nohash@example.org", "Held#1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, err := f.svc.Login(ctx, tc.email, tc.password, "192.0.2.50")
			if d := time.Since(start); d < failureTime {
				t.Fatalf("answered after %v, before the failure time %v", d, failureTime)
			}
			if !errors.Is(err, ErrBadCredentials) {
				t.Fatalf("Login = %v, want ErrBadCredentials", err)
			}
		})
	}
	for _, d := range deadlines {
		if d > failureTime {
			t.Fatalf("the legacy server was given %v, more than the failure time", d)
		}
	}
	// Held answers count against the client: the 2 failures on nohash
	// from 192.0.2.50 above, one of them held, lock it out of the account.
	var le *LimitedError
	if _, err := f.svc.Login(ctx, "nohash@example.org", "Held#1", "192.0.2.50"); !errors.As(err, &le) {
		t.Fatalf("after the held answers: %v, want a lockout", err)
	}
}

// clientCausedLegacy marks ErrNoAnswer as the client's doing, as
// legacyimap does.
type clientCausedLegacy struct{ LegacyVerifier }

type causedByClient struct{ error }

func (causedByClient) ClientCaused() bool { return true }
func (e causedByClient) Unwrap() error    { return e.error }

func (c clientCausedLegacy) Verify(ctx context.Context, user, password, client string) (bool, error) {
	ok, err := c.LegacyVerifier.Verify(ctx, user, password, client)
	if errors.Is(err, legacyimap.ErrNoAnswer) {
		err = causedByClient{err}
	}
	return ok, err
}

// TestOneClientsFailuresAtTheLegacyServerDoNotShutOutOthers runs a legacy
// Dovecot as deployed: failed logins delay later ones from the same
// address (auth penalty), and the auth service is in its
// login_trusted_networks. An attacker's wrong passwords slow down only
// the attacker; a user elsewhere signs in at once.
func TestOneClientsFailuresAtTheLegacyServerDoNotShutOutOthers(t *testing.T) {
	const victim, user, userPw = "victim@example.org", "user@example.org", "User-Legacy-Pw-1"
	srv := dovecottest.StartT(t, dovecottest.Options{Users: map[string]string{victim: "Victim-Pw-1", user: userPw}, ExtraConfig: `
login_trusted_networks = 127.0.0.0/8
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0600
  }
}
`})
	legacy := legacyimap.New(config.IMAP{Address: srv.Addr, TLS: config.TLSNone, Auth: config.AuthUser, Connections: 4,
		CommandTimeout: config.Duration(10 * time.Second), DialTimeout: config.Duration(5 * time.Second)})
	f := newFixture(t, legacy, "", func(o *Options) { o.FailureTime = DefaultFailureTime })
	f.importUsers(t, map[string]string{victim: "", user: ""})
	ctx := authtest.Context(t, 2*time.Minute)
	const attacker, home = "198.51.100.66", "203.0.113.5"
	for i := range 4 {
		if _, err := f.svc.Login(ctx, victim, fmt.Sprintf("guess-%d", i), attacker); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("attacker's guess %d: %v, want ErrBadCredentials (held answers are the attacker's failures)", i+1, err)
		}
	}
	start := time.Now()
	res, err := f.svc.Login(ctx, user, userPw, home)
	if err != nil || res.Email != user {
		t.Fatalf("the user elsewhere, after the attacker's failures: %+v, %v (after %v)", res, err, time.Since(start))
	}
	// The attacker's fifth guess reaches the limit; the right password
	// from there is refused.
	f.svc.Login(ctx, victim, "guess-5", attacker)
	var le *LimitedError
	if _, err := f.svc.Login(ctx, victim, "Victim-Pw-1", attacker); !errors.As(err, &le) {
		t.Fatalf("the attacker after 5 failures: %v, want a lockout", err)
	}
}

func TestGateBoundsHashingAndItsQueue(t *testing.T) {
	g := newGate(2, 1, 200*time.Millisecond)
	ctx := context.Background()
	r1, err := g.acquire(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	// A request for more units than there are needs all of them: it
	// waits while one is taken, and gives up after the wait.
	if _, err := g.acquire(ctx, 5); !errors.Is(err, ErrBusy) {
		t.Fatalf("every unit while one is taken: %v, want ErrBusy after waiting", err)
	}
	r2, err := g.acquire(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Both units taken: one request may wait, the next is refused at once.
	waited := make(chan error, 1)
	go func() {
		release, err := g.acquire(ctx, 1)
		if err == nil {
			release()
		}
		waited <- err
	}()
	for {
		if _, w := g.inUse(); w == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := g.acquire(ctx, 1); !errors.Is(err, ErrBusy) {
		t.Fatalf("with the queue full: %v, want ErrBusy at once", err)
	}
	r1()
	if err := <-waited; err != nil {
		t.Fatalf("the waiting request after a release: %v", err)
	}
	r2()
	if used, waiting := g.inUse(); used != 0 || waiting != 0 {
		t.Fatalf("after every release: %d used, %d waiting", used, waiting)
	}
}
