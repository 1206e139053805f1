package signin

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mailferry/mailferry/services/auth/internal/authtest"
	"github.com/mailferry/mailferry/shared/metrics"
)

func TestOutcomeNamesHowARequestEndedWithoutItsDetails(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{ErrBadCredentials, "bad_credentials"},
		{&LimitedError{RetryAfter: time.Minute}, "limited"},
		{&InputError{Msg: "enter your password"}, "invalid"},
		{&PolicyError{Reasons: []string{"too short"}}, "policy"},
		{ErrBusy, "busy"},
		{fmt.Errorf("%w: %w", ErrUnavailable, errors.New("bucket gone")), "unavailable"},
		{errors.New("target said no"), "error"},
	}
	for _, tt := range tests {
		if got := Outcome(tt.err); got != tt.want {
			t.Errorf("Outcome(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestSignInsAndLockoutsAreCountedByOutcome(t *testing.T) {
	m := metrics.New()
	f := newFixture(t, nil, ", rate_limit: {account_failures: 3, lockout: 1m}", func(o *Options) { o.Metrics = m })
	f.importUsers(t, map[string]string{"known@example.org": legacyHashes["md5@example.org"]})
	ctx := authtest.Context(t, time.Minute)
	for range 3 {
		_, _ = f.svc.Login(ctx, "known@example.org", "guess", "198.51.100.1")
	}
	_, _ = f.svc.Login(ctx, "known@example.org", legacyPassword, "198.51.100.1") // locked out
	if _, err := f.svc.Login(ctx, "known@example.org", legacyPassword, "203.0.113.9"); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range families {
		for _, mt := range fam.GetMetric() {
			name := fam.GetName()
			for _, l := range mt.GetLabel() {
				name += "," + l.GetValue()
			}
			if c := mt.GetCounter(); c != nil {
				got[name] = c.GetValue()
			}
		}
	}
	for series, want := range map[string]float64{
		"mailferry_auth_signins_total,bad_credentials": 3,
		"mailferry_auth_signins_total,limited":         1,
		"mailferry_auth_signins_total,ok":              1,
		"mailferry_auth_lockouts_total":                1,
	} {
		if got[series] != want {
			t.Errorf("%s = %v, want %v (all: %v)", series, got[series], want, got)
		}
	}
}
