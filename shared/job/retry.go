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
		if errors.Is(err, ErrPermanent) || !p.Wait(ctx, attempt) {
			if fail != nil {
				_, last := Delivery(ctx)
				fail(err, !last && !errors.Is(err, ErrPermanent))
			}
			return err
		}
		log.Warn().Err(err).Int("attempt", attempt+1).Msg("interrupted, retrying")
	}
}
