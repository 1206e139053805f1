package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/services/auth/internal/keylock"
	"github.com/mailferry/mailferry/services/auth/legacyimap"
	"github.com/mailferry/mailferry/services/auth/signin"
	"github.com/mailferry/mailferry/shared/loginlimit"
)

// legacyLimitReason is what a user whose legacy logins were refused as
// often as allowed reads (with when to try again).
const legacyLimitReason = "your old mail server refused this password; so that it does not lock your mailbox, " +
	"no other password is tried there until an hour after that"

// refusedCountTimeout bounds reading the count and counting a refused
// login, whatever is left of the request's time: a client that goes away
// must not keep a refusal from being counted.
const refusedCountTimeout = 5 * time.Second

// limitedLogins counts the legacy server's refusals of each login in the
// migration's shared count (shared/loginlimit, side "source", keyed by
// the login the server is asked with: the mailbox's source login, as the
// extractor's) and asks the server no more once a login was refused
// legacy_imap.max_login_failures times in the past hour. A legacy server
// that locks an account after N failed logins (MailEnable) thus never
// sees the migration and the sign-ins together reach N. The check, the
// login and its count are serialized per login in this process, so
// concurrent requests cannot all pass the check before one is counted.
type limitedLogins struct {
	signin.LegacyVerifier
	guard *loginlimit.Store
	locks *keylock.Locks
	log   zerolog.Logger
	// now is the clock of Retry-After (time.Now when nil).
	now func() time.Time
}

// Verify implements signin.LegacyVerifier: a *signin.LimitedError when
// user's logins were refused as often as allowed.
func (v *limitedLogins) Verify(ctx context.Context, user, password, client string) (bool, error) {
	unlock := v.locks.Lock(user)
	defer unlock()
	// The count is read even when the request's time ran out waiting for
	// the lock: a refusal counted meanwhile is the answer then.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refusedCountTimeout)
	defer cancel()
	if err := v.guard.Allow(actx, user); err != nil {
		var tm *loginlimit.TooManyError
		if !errors.As(err, &tm) {
			// Without the count no login is tried: it could be the one
			// that locks the account.
			return false, fmt.Errorf("legacy login of %s: %w", user, err)
		}
		now := time.Now
		if v.now != nil {
			now = v.now
		}
		v.log.Warn().Str("login", user).Str("client", client).Time("until", tm.Until).
			Msg("legacy IMAP login not tried: its logins were refused as often as legacy_imap.max_login_failures allows in the past hour")
		return false, &signin.LimitedError{RetryAfter: max(tm.Until.Sub(now()), time.Second), Reason: legacyLimitReason}
	}
	ok, err := v.LegacyVerifier.Verify(ctx, user, password, client)
	// A login sent but not answered may have failed at the server: it
	// counts as refused.
	if (err == nil && !ok) || errors.Is(err, legacyimap.ErrNoAnswer) {
		reason := "LOGIN refused (a sign-in at the auth service)"
		if err != nil {
			reason = "LOGIN not answered (a sign-in at the auth service)"
		}
		cctx, cancelCount := context.WithTimeout(context.WithoutCancel(ctx), refusedCountTimeout)
		defer cancelCount()
		if cerr := v.guard.Refused(cctx, user, reason); cerr != nil {
			v.log.Error().Err(cerr).Str("login", user).Msg("a refused legacy IMAP login was not counted: the migration's count of this mailbox is short by one")
		}
	}
	return ok, err
}
