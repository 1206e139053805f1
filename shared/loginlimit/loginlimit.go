// Package loginlimit keeps mailferry from locking a customer out of their
// mail. A legacy server (MailEnable) locks an account, across all its
// services, for an hour after N failed logins; a migration that tried a
// wrong password again would do that. Store counts the refused logins of
// each mailbox over the past hour in a JetStream key-value bucket, so
// every process (extractors, verify, the planner) shares the count, and
// allows no login once the configured number was refused.
package loginlimit

import (
	"context"
	"fmt"
	"time"

	"github.com/mailferry/mailferry/shared/imapdial"
	"github.com/mailferry/mailferry/shared/kvjson"
	"github.com/mailferry/mailferry/shared/subject"
)

// Window is how long a refused login counts.
const Window = time.Hour

// ErrTooMany is a login not tried: the mailbox's logins were refused as
// often as allowed in the past Window. It is as final as a refusal
// (it wraps imapdial.ErrLoginRefused).
var ErrTooMany = fmt.Errorf("too many refused logins: %w", imapdial.ErrLoginRefused)

// TooManyError is Allow's refusal: no login of the mailbox before Until,
// when enough of the refusals counted stop counting. It wraps
// ErrTooMany.
type TooManyError struct {
	// Until is the earliest time a login may be tried again.
	Until time.Time
	msg   string
}

// Error says how many logins were refused and until when none is tried.
func (e *TooManyError) Error() string { return e.msg }

// Unwrap returns ErrTooMany.
func (e *TooManyError) Unwrap() error { return ErrTooMany }

// Store counts refused logins of one server's mailboxes.
type Store struct {
	kv kvjson.Bucket
	// side names the server in keys and messages ("source").
	side string
	max  int
	now  func() time.Time
}

// New counts the refused logins of side's mailboxes in kv (a bucket whose
// entries live at least Window), allowing at most maxFailures per Window
// (at least 1). now is the clock (time.Now when nil).
func New(kv kvjson.Bucket, side string, maxFailures int, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	// An endpoint whose defaults were not filled in (0) gets the default.
	return &Store{kv: kv, side: side, max: max(1, maxFailures), now: now}
}

// record is a mailbox's refused logins.
type record struct {
	// Refused are the times of the refusals still counted.
	Refused []time.Time `json:"refused"`
	// Reason is the server's last answer.
	Reason string `json:"reason"`
}

func (s *Store) key(user string) string { return s.side + "." + subject.Key(user) }

// recent drops the refusals older than Window.
func (r *record) recent(now time.Time) {
	kept := r.Refused[:0]
	for _, t := range r.Refused {
		if now.Sub(t) < Window {
			kept = append(kept, t)
		}
	}
	r.Refused = kept
}

// Allow reports whether user may try to log in: a *TooManyError (wrapping
// ErrTooMany), saying when it may again, once max logins were refused in
// the past Window. Allow only reads the count: callers that must not try
// two logins of one mailbox at once serialize Allow, the login and
// Refused themselves.
func (s *Store) Allow(ctx context.Context, user string) error {
	e, err := kvjson.Get[record](ctx, s.kv, s.key(user))
	if err != nil {
		return fmt.Errorf("refused logins of %s: %w", user, err)
	}
	r := e.V
	r.recent(s.now())
	if len(r.Refused) < s.max {
		return nil
	}
	// Allowed again once all but max-1 of the refusals stopped counting.
	until := r.Refused[len(r.Refused)-s.max].Add(Window)
	again := until.UTC().Format(time.RFC3339)
	return &TooManyError{Until: until, msg: fmt.Sprintf("%s: %d of %s's logins to the %s were refused in the past hour (%s.max_login_failures %d; last: %q), not trying again before %s, so the server cannot lock the account",
		ErrTooMany, len(r.Refused), user, s.side, s.side, s.max, r.Reason, again)}
}

// refusedAttempts bounds the compare-and-set tries of one count: every
// refusal must be counted, even when many processes count the same
// mailbox at once.
const refusedAttempts = 100

// Refused counts a refused login of user, with the server's answer.
func (s *Store) Refused(ctx context.Context, user, reason string) error {
	_, err := kvjson.Update(ctx, s.kv, s.key(user), func(e *kvjson.Entry[record]) error {
		now := s.now()
		e.V.recent(now)
		e.V.Refused, e.V.Reason = append(e.V.Refused, now), reason
		return nil
	}, kvjson.ResetUndecodable(), kvjson.Attempts(refusedAttempts))
	if err != nil {
		return fmt.Errorf("count a refused login of %s: %w", user, err)
	}
	return nil
}
