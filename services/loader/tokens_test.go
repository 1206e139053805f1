package loader

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/testenv/imaptest"
	"github.com/mailferry/mailferry/shared/testenv/syncbuf"
)

// countingMinter mints tok-1, tok-2... valid for valid.
type countingMinter struct {
	mu    sync.Mutex
	n     int
	valid time.Duration
	err   error
}

func (m *countingMinter) MintToken(_ context.Context, user string) (string, time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return "", 0, m.err
	}
	m.n++
	return fmt.Sprintf("secret-tok-%d", m.n), m.valid, nil
}

func (m *countingMinter) minted() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n
}

// tokenRig is two loaders' token stores on one bucket, with one clock.
type tokenRig struct {
	ctx    context.Context
	minter *countingMinter
	a, b   *Tokens
	now    time.Time
	logs   *syncbuf.Buffer
}

func newTokenRig(t *testing.T) *tokenRig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	dir := t.TempDir()
	_, b := imaptest.Broker(t, ctx, fmt.Sprintf("nats: {data_dir: %s}\n", filepath.Join(dir, "nats")), dir)
	if err := b.Use(ctx, broker.Needs{Writes: []string{broker.BucketTargetTokens}}); err != nil {
		t.Fatal(err)
	}
	kv, err := b.JS.KeyValue(ctx, broker.BucketTargetTokens)
	if err != nil {
		t.Fatal(err)
	}
	r := &tokenRig{ctx: ctx, minter: &countingMinter{valid: 24 * time.Hour}, now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), logs: &syncbuf.Buffer{}}
	clock := func() time.Time { return r.now }
	log := zerolog.New(r.logs)
	r.a = &Tokens{Minter: r.minter, KV: kv, RenewBefore: time.Hour, Log: log, now: clock}
	r.b = &Tokens{Minter: r.minter, KV: kv, RenewBefore: time.Hour, Log: log, now: clock}
	return r
}

func (r *tokenRig) get(t *testing.T, ts *Tokens) string {
	t.Helper()
	tok, err := ts.Get(r.ctx, "anna@new.example")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestATokenMintedByOneLoaderIsUsedByAnotherUntilItNearlyExpires(t *testing.T) {
	tests := []struct {
		name      string
		later     time.Duration
		wantFresh bool
	}{
		{"an hour and a minute left", 22*time.Hour + 59*time.Minute, false},
		{"less than renew_before left", 23*time.Hour + time.Minute, true},
		{"expired", 25 * time.Hour, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newTokenRig(t)
			first := r.get(t, r.a)
			if got := r.get(t, r.b); got != first || r.minter.minted() != 1 {
				t.Fatalf("the other loader got %q after %d mints, want the stored token after 1", got, r.minter.minted())
			}
			r.now = r.now.Add(tc.later)
			got := r.get(t, r.b)
			if fresh := got != first; fresh != tc.wantFresh {
				t.Errorf("after %s: fresh token %v, want %v", tc.later, fresh, tc.wantFresh)
			}
			if again := r.get(t, r.a); again != got {
				t.Errorf("the first loader then got %q, want the stored %q", again, got)
			}
		})
	}
}

func TestARefusedTokenIsReplacedOnceAndAReplacementAlreadyStoredIsUsed(t *testing.T) {
	r := newTokenRig(t)
	first := r.get(t, r.a)
	second, err := r.a.Replace(r.ctx, "anna@new.example", first)
	if err != nil || second == first || r.minter.minted() != 2 {
		t.Fatalf("replace: %q, %v after %d mints: want a fresh token after 2", second, err, r.minter.minted())
	}
	// The other loader, refused the first token too, finds the second.
	if got, err := r.b.Replace(r.ctx, "anna@new.example", first); err != nil || got != second || r.minter.minted() != 2 {
		t.Errorf("the other loader's replace: %q, %v after %d mints; want the stored replacement, no mint", got, err, r.minter.minted())
	}
}

func TestTokensAreNeverLoggedAndAFailedMintNamesTheMailbox(t *testing.T) {
	r := newTokenRig(t)
	r.get(t, r.a)
	r.minter.err = errors.New("opensrs generate_token: error 2: The requested object does not exist.")
	r.now = r.now.Add(48 * time.Hour)
	_, err := r.a.Get(r.ctx, "anna@new.example")
	if err == nil || !strings.Contains(err.Error(), "anna@new.example") {
		t.Errorf("failed mint: %v, want an error naming the mailbox", err)
	}
	if strings.Contains(r.logs.String(), "secret-tok") || !strings.Contains(r.logs.String(), "token minted") {
		t.Errorf("log shows a token or not the mint:\n%s", r.logs.String())
	}
}
