// Package backoff spaces out retries: exponential delays with full jitter,
// so that many workers hitting one recovering server do not retry in step.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy describes a retry schedule.
type Policy struct {
	// Initial is the delay ceiling of the first retry, Max the ceiling of
	// any retry.
	Initial, Max time.Duration
	// Attempts is how many retries are made before giving up.
	Attempts int
}

// Default suits an IMAP server that drops connections or restarts: about
// a minute and a half of retries before the job goes back to the queue.
func Default() Policy {
	return Policy{Initial: 500 * time.Millisecond, Max: 30 * time.Second, Attempts: 8}
}

// Delay returns the wait before retry number attempt (0-based): a random
// duration up to min(Max, Initial*2^attempt), never below a tenth of it.
func (p Policy) Delay(attempt int) time.Duration {
	ceil := p.Initial
	for i := 0; i < attempt && ceil < p.Max; i++ {
		ceil *= 2
	}
	ceil = min(ceil, p.Max)
	if ceil <= 0 {
		return 0
	}
	floor := ceil / 10
	return floor + rand.N(ceil-floor+1)
}

// Wait sleeps for the delay of attempt, or until ctx ends; it reports
// whether another try should be made.
func (p Policy) Wait(ctx context.Context, attempt int) bool {
	if attempt >= p.Attempts {
		return false
	}
	t := time.NewTimer(p.Delay(attempt))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
