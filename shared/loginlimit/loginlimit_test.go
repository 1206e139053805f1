package loginlimit

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailferry/mailferry/shared/testenv/clocktest"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/imapdial"
	"github.com/mailferry/mailferry/shared/testenv/brokertest"
)

// failures opens the broker's bucket of refused logins on an embedded
// server.
func failures(t *testing.T) *broker.Broker {
	t.Helper()
	return brokertest.Embedded(t, "", broker.Needs{Writes: []string{broker.BucketLoginFailures}})
}

func TestAMailboxIsNotTriedAgainOnceItsLoginsWereRefusedAsOftenAsAllowed(t *testing.T) {
	b := failures(t)
	ctx := context.Background()
	c := clocktest.New(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
	for _, tt := range []struct {
		name string
		max  int
	}{{"one refusal allowed (the default)", 1}, {"three allowed", 3}} {
		t.Run(tt.name, func(t *testing.T) {
			s := New(b.LoginFailures, "source", tt.max, c.Now)
			user := "anna-" + tt.name + "@old.example"
			for i := range tt.max {
				if err := s.Allow(ctx, user); err != nil {
					t.Fatalf("before refusal %d: %v, want allowed", i+1, err)
				}
				if err := s.Refused(ctx, user, "a1 NO Invalid password"); err != nil {
					t.Fatal(err)
				}
				c.Add(time.Minute)
			}
			err := s.Allow(ctx, user)
			if !errors.Is(err, ErrTooMany) || !errors.Is(err, imapdial.ErrLoginRefused) {
				t.Fatalf("after %d refusals: %v, want too many (a refusal)", tt.max, err)
			}
			for _, want := range []string{user, "source.max_login_failures", "Invalid password", "not trying again before"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("err = %v, want it to say %q", err, want)
				}
			}
			if err := New(b.LoginFailures, "source", tt.max, c.Now).Allow(ctx, "other@old.example"); err != nil {
				t.Errorf("another mailbox: %v, want allowed", err)
			}
			// An hour after the first refusal it counts no more.
			c.Add(time.Hour - time.Duration(tt.max)*time.Minute)
			if err := s.Allow(ctx, user); err != nil {
				t.Errorf("an hour after the first refusal: %v, want allowed", err)
			}
		})
	}
}

// Fifty processes counting refusals of one mailbox at once lose none.
func TestRefusalsCountedAtOnceAreAllCounted(t *testing.T) {
	b := failures(t)
	ctx := context.Background()
	s := New(b.LoginFailures, "source", 50, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.Refused(ctx, "bob@old.example", "NO")
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("refused: %v", err)
		}
	}
	if err := s.Allow(ctx, "bob@old.example"); !errors.Is(err, ErrTooMany) {
		t.Errorf("after 50 refusals counted at once with max 50: %v, want too many", err)
	}
}

// With more refusals counted than allowed (processes that counted at
// once), a login is allowed again when all but max-1 stopped counting.
func TestALoginIsAllowedAgainWhenEnoughRefusalsStoppedCounting(t *testing.T) {
	b := failures(t)
	ctx := context.Background()
	start := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name      string
		max, refs int
		want      time.Duration // after start
	}{
		{"one allowed, one refused", 1, 1, Window},
		{"two allowed, three refused", 2, 3, time.Minute + Window},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := clocktest.New(start)
			s := New(b.LoginFailures, "source", tt.max, c.Now)
			user := "carl-" + tt.name + "@old.example"
			for range tt.refs {
				if err := s.Refused(ctx, user, "NO"); err != nil {
					t.Fatal(err)
				}
				c.Add(time.Minute)
			}
			var tm *TooManyError
			if err := s.Allow(ctx, user); !errors.As(err, &tm) || !errors.Is(err, ErrTooMany) {
				t.Fatalf("allow: %v, want a *TooManyError", err)
			}
			if want := start.Add(tt.want); !tm.Until.Equal(want) {
				t.Errorf("until %v, want %v", tm.Until, want)
			}
			c.Add(tm.Until.Sub(c.Now()))
			if err := s.Allow(ctx, user); err != nil {
				t.Errorf("at %v: %v, want allowed", tm.Until, err)
			}
		})
	}
}
