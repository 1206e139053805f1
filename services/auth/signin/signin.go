// Package signin is the auth service's core: it checks a user's password
// (against the stored hash, upgrading it to argon2id on success, or
// against the legacy IMAP server when no hash was exported), says whether
// the user still has to set a new password, and carries out a password
// change: policy, proof of the current password, the credential at the
// target provider, the new local hash and the user.password.updated
// event. Guessing is slowed by lockouts per account and per client
// address, and answers never tell an existing account from an unknown one.
package signin

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/services/auth/account"
	"github.com/mailferry/mailferry/services/auth/passhash"
	"github.com/mailferry/mailferry/services/auth/policy"
	"github.com/mailferry/mailferry/services/auth/ratelimit"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/event"
)

// MaxPasswordBytes bounds any password the service reads: hashing a
// megabyte-long "password" would be a cheap denial of service.
const MaxPasswordBytes = 1024

// LegacyVerifier asks the legacy platform whether a password is right.
type LegacyVerifier interface {
	// Verify returns (false, nil) for a refusal and an error when the
	// platform could not be asked.
	Verify(ctx context.Context, user, password string) (bool, error)
}

// Target sets passwords at the new provider.
type Target interface {
	Name() string
	// SetPassword makes password the user's credential at the provider.
	SetPassword(ctx context.Context, user, password string) error
}

// refusal is a Target error turning a password down for a reason the
// user may read.
type refusal interface{ Refusal() string }

// Errors a caller maps to answers. Their texts are fit to show users.
var (
	// ErrBadCredentials covers unknown accounts and wrong passwords alike.
	ErrBadCredentials = errors.New("the email address or password is incorrect")
	// ErrUnavailable means the password could not be checked or set now.
	ErrUnavailable = errors.New("the service cannot check or change passwords right now, please try again later")
)

// InputError is a request the service will not look at (empty, too long,
// not an address). Msg is fit to show users.
type InputError struct{ Msg string }

// Error returns Msg.
func (e *InputError) Error() string { return e.Msg }

// PolicyError lists why a new password is not acceptable.
type PolicyError struct{ Reasons []string }

// Error lists the reasons in one sentence.
func (e *PolicyError) Error() string {
	s := "the new password is not acceptable"
	for i, r := range e.Reasons {
		if i == 0 {
			s += ": "
		} else {
			s += "; "
		}
		s += "it " + r
	}
	return s
}

// LimitedError means too many attempts: try again after RetryAfter.
type LimitedError struct{ RetryAfter time.Duration }

// Error says when to try again.
func (e *LimitedError) Error() string {
	return fmt.Sprintf("too many attempts, please try again in %s", e.RetryAfter.Round(time.Second))
}

// Result is a successful sign-in or change.
type Result struct {
	Email                  string `json:"email"`
	Role                   string `json:"role"`
	PasswordUpdateRequired bool   `json:"password_update_required"`
}

// PasswordUpdatedData is the data of user.password.updated (key: the
// address). It carries no password and no hash.
type PasswordUpdatedData = event.PasswordUpdatedData

// Options configures a Service.
type Options struct {
	Accounts *account.Store
	// Legacy may be nil: users without a stored hash then cannot sign in.
	Legacy    LegacyVerifier
	Target    Target
	Policy    policy.Policy
	Argon2    passhash.Argon2Params
	Events    event.Publisher
	Log       zerolog.Logger
	RateLimit config.AuthRateLimit
	// Now is the clock of the rate limits and lockouts (time.Now when
	// nil), so tests can let a lockout run out without waiting for it.
	Now func() time.Time
}

// Service signs users in and changes their passwords.
type Service struct {
	opt          Options
	accountLimit *ratelimit.Lockout
	addressLimit *ratelimit.Lockout
	addressRate  *ratelimit.Window
	locks        keyLocks
	// dummy is verified for unknown accounts so they cost the same time
	// as known ones.
	dummy string
}

// New returns a service.
func New(o Options) *Service {
	r := o.RateLimit
	return &Service{
		opt:          o,
		accountLimit: &ratelimit.Lockout{Max: r.AccountFailures, Window: r.Window.Std(), Base: r.Lockout.Std(), MaxLockout: r.MaxLockout.Std()},
		addressLimit: &ratelimit.Lockout{Max: r.AddressFailures, Window: r.Window.Std(), Base: r.Lockout.Std(), MaxLockout: r.MaxLockout.Std()},
		addressRate:  &ratelimit.Window{Max: r.AddressRequests, Period: time.Minute},
		dummy:        o.Argon2.Hash(rand.Text()),
	}
}

// Argon2FromConfig converts configured argon2 parameters.
func Argon2FromConfig(c config.AuthArgon2) passhash.Argon2Params {
	return passhash.Argon2Params{Time: uint32(c.Time), MemoryKiB: uint32(c.MemoryKiB), Threads: uint8(c.Threads)}
}

// Login checks email's password for client (the caller's address).
func (s *Service) Login(ctx context.Context, email, password, client string) (Result, error) {
	email, err := checkInput(email, password)
	if err != nil {
		return Result{}, err
	}
	if err := s.admit(email, client); err != nil {
		return Result{}, err
	}
	a, err := s.verify(ctx, email, password)
	if err != nil {
		return Result{}, s.failed(email, client, "login", err)
	}
	s.accountLimit.Succeed(email)
	s.opt.Log.Info().Str("email", email).Str("client", client).Bool("password_update_required", a.PasswordUpdateRequired()).Msg("sign-in")
	return result(a), nil
}

func result(a *account.Account) Result {
	return Result{Email: a.Email, Role: a.Role, PasswordUpdateRequired: a.PasswordUpdateRequired()}
}

func checkInput(email, password string) (string, error) {
	if len(email) > account.MaxEmailLength {
		return "", &InputError{Msg: fmt.Sprintf("the email address is longer than %d characters", account.MaxEmailLength)}
	}
	norm, err := account.NormalizeEmail(email)
	if err != nil {
		return "", &InputError{Msg: "enter your email address, e.g. name@example.com"}
	}
	if password == "" {
		return "", &InputError{Msg: "enter your password"}
	}
	if len(password) > MaxPasswordBytes {
		return "", &InputError{Msg: fmt.Sprintf("a password is at most %d bytes long", MaxPasswordBytes)}
	}
	return norm, nil
}

func (s *Service) now() time.Time {
	if s.opt.Now != nil {
		return s.opt.Now()
	}
	return time.Now()
}

// admit applies the rate limits before any password is looked at. Locked
// accounts are refused whether or not they exist.
func (s *Service) admit(email, client string) error {
	now := s.now()
	if wait, ok := s.addressRate.Allow(client, now); !ok {
		return &LimitedError{RetryAfter: wait}
	}
	wait := time.Duration(0)
	if w, ok := s.addressLimit.Check(client, now); !ok {
		wait = w
	}
	if w, ok := s.accountLimit.Check(email, now); !ok {
		wait = max(wait, w)
	}
	if wait > 0 {
		s.opt.Log.Warn().Str("email", email).Str("client", client).Dur("retry_after", wait).Msg("attempt refused: locked out")
		return &LimitedError{RetryAfter: wait}
	}
	return nil
}

// failed counts a bad-credentials outcome against the account and the
// client; other errors pass through.
func (s *Service) failed(email, client, op string, err error) error {
	if !errors.Is(err, ErrBadCredentials) {
		s.opt.Log.Error().Err(err).Str("email", email).Str("client", client).Str("op", op).Msg("password check failed")
		return err
	}
	now := s.now()
	lock := max(s.accountLimit.Fail(email, now), s.addressLimit.Fail(client, now))
	ev := s.opt.Log.Warn().Str("email", email).Str("client", client).Str("op", op)
	if lock > 0 {
		ev = ev.Dur("locked_for", lock)
	}
	ev.Msg("bad credentials")
	return err
}
