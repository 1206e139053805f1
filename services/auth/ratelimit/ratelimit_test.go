package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailferry/mailferry/services/auth/internal/authtest"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

var testLimits = Limits{PairFailures: 3, ClientFailures: 10, Window: 10 * time.Minute, Lockout: time.Minute, MaxLockout: 5 * time.Minute, ClientRequests: 100}

func TestCountLocksAtTheLimitAndTheLockoutEnds(t *testing.T) {
	var e entry
	for i := range 2 {
		if _, locked, ok := e.count(t0.Add(time.Duration(i)*time.Second), 3, testLimits); !ok || locked != 0 {
			t.Fatalf("attempt %d: ok %v, locked %v", i+1, ok, locked)
		}
	}
	// The third attempt is admitted and locks at once: whatever it turns
	// out to be, nothing else gets through meanwhile.
	if _, locked, ok := e.count(t0.Add(2*time.Second), 3, testLimits); !ok || locked != time.Minute {
		t.Fatalf("third attempt: ok %v, locked %v; want admitted, locked 1m", ok, locked)
	}
	if wait, _, ok := e.count(t0.Add(32*time.Second), 3, testLimits); ok || wait != 30*time.Second {
		t.Fatalf("during the lockout: ok %v, wait %v; want refused for 30s", ok, wait)
	}
	// After it a new window begins.
	for i := range 2 {
		if _, locked, ok := e.count(t0.Add(62*time.Second), 3, testLimits); !ok || locked != 0 {
			t.Fatalf("after the lockout, attempt %d: ok %v, locked %v", i+1, ok, locked)
		}
	}
}

func TestLockoutDoublesAtMostOncePerWindowUpToTheMaximum(t *testing.T) {
	for _, tc := range []struct {
		name string
		gap  time.Duration // between the end of a lockout and the next burst
		want []time.Duration
	}{
		{"bursts a window apart double", testLimits.Window, []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 5 * time.Minute, 5 * time.Minute}},
		{"bursts within one window do not", 0, []time.Duration{time.Minute, time.Minute, time.Minute, time.Minute, time.Minute}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e entry
			now := t0
			var got []time.Duration
			for range len(tc.want) {
				var locked time.Duration
				for range 3 {
					_, locked, _ = e.count(now, 3, testLimits)
				}
				got = append(got, locked)
				now = now.Add(locked + tc.gap)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("lockouts %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFailuresOfAnOldWindowDoNotCount(t *testing.T) {
	var e entry
	e.count(t0, 3, testLimits)
	e.count(t0, 3, testLimits)
	if _, locked, _ := e.count(t0.Add(11*time.Minute), 3, testLimits); locked != 0 {
		t.Fatal("failures of an old window counted")
	}
}

func TestRefundLiftsTheLockoutItsAttemptSet(t *testing.T) {
	var e entry
	for range 3 {
		e.count(t0, 3, testLimits)
	}
	if !e.refund(t0, 3) || !e.LockedUntil.IsZero() || e.Count != 2 || e.Level != 0 {
		t.Fatalf("after the refund: %+v", e)
	}
	if !e.refund(t0, 3) || e.Count != 1 {
		t.Fatalf("second refund: %+v", e)
	}
	if e.refund(t0.Add(time.Second), 3) {
		t.Fatal("a refund of another window changed the entry")
	}
}

func TestRequestsAreCappedPerPeriod(t *testing.T) {
	l := testLimits
	l.ClientRequests = 2
	var e entry
	for i := range 2 {
		if _, ok := e.request(t0.Add(time.Duration(i)*time.Second), l); !ok {
			t.Fatalf("request %d refused", i+1)
		}
	}
	if wait, ok := e.request(t0.Add(20*time.Second), l); ok || wait != 40*time.Second {
		t.Fatalf("third request: %v, %v; want refused for 40s", wait, ok)
	}
	if _, ok := e.request(t0.Add(time.Minute), l); !ok {
		t.Fatal("refused in the next period")
	}
}

// clock is a settable clock shared by the stores of a test.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(t0.UnixNano())
	return c
}
func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// instances opens n stores on one bucket, as n auth instances would.
func instances(t *testing.T, n int, l Limits, c *clock) []*Store {
	t.Helper()
	cfg := authtest.Config(t, "")
	b := authtest.Broker(t, cfg)
	ctx := authtest.Context(t, time.Minute)
	var out []*Store
	for range n {
		s, err := Open(ctx, b.JS, "mf_accounts_limits", 1, l, c.now)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// TestConcurrentAttemptsOnTwoInstancesNeverPassTheLimit admits a burst
// of 50 attempts at once, spread over two instances: exactly the limit
// get through, whatever the interleaving.
func TestConcurrentAttemptsOnTwoInstancesNeverPassTheLimit(t *testing.T) {
	for _, tc := range []struct {
		name      string
		accounts  int // the burst spreads over this many accounts
		wantAdmit int
		wantWhy   string
	}{
		{"one account, one client", 1, testLimits.PairFailures, "account"},
		{"many accounts, one client", 50, testLimits.ClientFailures, "client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stores := instances(t, 2, testLimits, newClock())
			ctx := authtest.Context(t, time.Minute)
			var (
				wg       sync.WaitGroup
				admitted atomic.Int32
				mu       sync.Mutex
				whys     = map[string]int{}
			)
			for i := range 50 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := stores[i%2].Admit(ctx, fmt.Sprintf("user%d@example.org", i%tc.accounts), "192.0.2.1")
					var r *Refused
					switch {
					case err == nil:
						admitted.Add(1)
					case errors.As(err, &r):
						mu.Lock()
						whys[r.Why]++
						mu.Unlock()
					default:
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			if int(admitted.Load()) != tc.wantAdmit || whys[tc.wantWhy] != 50-tc.wantAdmit {
				t.Fatalf("admitted %d, refused %v; want %d admitted, the rest refused by the %s limit", admitted.Load(), whys, tc.wantAdmit, tc.wantWhy)
			}
		})
	}
}

// TestLockoutIsPerClient: a client that guessed wrong is locked out of
// the account; the user at another address is not.
func TestLockoutIsPerClient(t *testing.T) {
	c := newClock()
	s := instances(t, 1, testLimits, c)[0]
	ctx := authtest.Context(t, time.Minute)
	for range 3 {
		if _, err := s.Admit(ctx, "a@example.org", "198.51.100.7"); err != nil {
			t.Fatal(err)
		}
	}
	var r *Refused
	if _, err := s.Admit(ctx, "a@example.org", "198.51.100.7"); !errors.As(err, &r) || r.Why != "account" || r.RetryAfter != time.Minute {
		t.Fatalf("the guessing client: %v, want refused for 1m", err)
	}
	if _, err := s.Admit(ctx, "a@example.org", "203.0.113.9"); err != nil {
		t.Fatalf("the user elsewhere: %v", err)
	}
	c.advance(time.Minute)
	if _, err := s.Admit(ctx, "a@example.org", "198.51.100.7"); err != nil {
		t.Fatalf("after the lockout: %v", err)
	}
}

func TestSettlingGivesCountsBack(t *testing.T) {
	ctx := authtest.Context(t, time.Minute)
	for _, tc := range []struct {
		name          string
		settle        func(*Attempt) error
		wantPairAfter int // attempts admitted afterwards, the one that locks included
	}{
		{"a success is given back, the other failures stay", func(a *Attempt) error { return a.Succeeded(ctx) }, 2},
		{"a void attempt is given back", func(a *Attempt) error { return a.Void(ctx) }, 2},
		{"a failure keeps its count", func(*Attempt) error { return nil }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := instances(t, 1, testLimits, newClock())[0]
			s.Admit(ctx, "a@example.org", "192.0.2.1")
			a, err := s.Admit(ctx, "a@example.org", "192.0.2.1")
			if err != nil {
				t.Fatal(err)
			}
			// A concurrent third attempt locked the pair meanwhile.
			third, err := s.Admit(ctx, "a@example.org", "192.0.2.1")
			if err != nil || third.LockedFor() != time.Minute {
				t.Fatalf("third attempt: %v, locked %v", err, third)
			}
			if err := tc.settle(third); err != nil {
				t.Fatal(err)
			}
			if err := tc.settle(a); err != nil {
				t.Fatal(err)
			}
			left := 0
			for ; left < 5; left++ {
				if _, err := s.Admit(ctx, "a@example.org", "192.0.2.1"); err != nil {
					break
				}
			}
			if left != tc.wantPairAfter {
				t.Fatalf("%d attempts left, want %d", left, tc.wantPairAfter)
			}
		})
	}
}

func TestBucketExpiresQuietEntries(t *testing.T) {
	s := instances(t, 1, testLimits, newClock())[0]
	st, err := s.kv.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := testLimits.MaxLockout + testLimits.Window + time.Minute; st.TTL() != want { // Window > MaxLockout here
		t.Fatalf("bucket TTL %v, want %v", st.TTL(), want)
	}
}
