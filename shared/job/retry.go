package job

import (
	"context"
	"errors"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/backoff"
)

// Retry runs try until it succeeds, fails for good (ErrPermanent), is
// superseded (ErrSuperseded), the service stops, or p's retries run out, waiting p's backoff between
// tries. It returns try's last error; fail, when set, is called with it
// unless the job was only interrupted by a shutdown.
func Retry(ctx context.Context, p backoff.Policy, log zerolog.Logger, try func() error, fail func(err error, retried bool)) error {
	for attempt := 0; ; attempt++ {
		err := try()
		if err == nil || errors.Is(err, ErrSuperseded) {
			return err
		}
		if ctx.Err() != nil || IsStopping(ctx) {
			return err
		}
		if errors.Is(err, ErrPermanent) || !waitUnlessStopping(ctx, p, attempt) {
			if !errors.Is(err, ErrPermanent) && (ctx.Err() != nil || IsStopping(ctx)) {
				return err // a shutdown, not a failure
			}
			if fail != nil {
				_, last := Delivery(ctx)
				fail(err, !last && !errors.Is(err, ErrPermanent))
			}
			return err
		}
		if IsStopping(ctx) {
			return err // asked to stop during the back-off
		}
		log.Warn().Err(err).Int("attempt", attempt+1).Msg("interrupted, retrying")
	}
}

// waitUnlessStopping waits p's delay for attempt; a shutdown cuts it short
// rather than holding the job for its whole grace period.
func waitUnlessStopping(ctx context.Context, p backoff.Policy, attempt int) bool {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if ch := Stopping(ctx); ch != nil {
		go func() {
			select {
			case <-ch:
				cancel()
			case <-wctx.Done():
			}
		}()
	}
	return p.Wait(wctx, attempt)
}
