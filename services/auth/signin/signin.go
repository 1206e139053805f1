// Package signin is the auth service's core: it checks a user's password
// (against the stored hash, upgrading it to argon2id on success, or
// against the legacy IMAP server when no hash was exported), says whether
// the user still has to set a new password, and carries out a password
// change: policy, proof of the current password, the credential at the
// target provider, the new local hash and the user.password.updated
// event. Guessing is slowed by lockouts per (account, client) and per
// client, kept in JetStream so every instance enforces them; every check
// costs one argon2id and every failure is answered after the same time,
// so answers never tell an existing account from an unknown one.
package signin

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/mailferry/mailferry/services/auth/authconfig"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/services/auth/account"
	"github.com/mailferry/mailferry/services/auth/internal/keylock"
	"github.com/mailferry/mailferry/services/auth/passhash"
	"github.com/mailferry/mailferry/services/auth/policy"
	"github.com/mailferry/mailferry/services/auth/ratelimit"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/metrics"
)

// MaxPasswordBytes bounds any password the service reads: hashing a
// megabyte-long "password" would be a cheap denial of service.
const MaxPasswordBytes = 1024

// LegacyVerifier asks the legacy platform whether a password is right.
type LegacyVerifier interface {
	// Verify returns (false, nil) for a refusal and an error when the
	// platform could not be asked; an error whose ClientCaused method
	// returns true blames the client (the platform held its answer back
	// for the client's address). client is the address the attempt came
	// from, for the platform's own per-address limits and logs. A
	// *LimitedError means the platform was not asked: the user's logins
	// there were refused as often as they may be for now.
	Verify(ctx context.Context, user, password, client string) (bool, error)
}

// HandOff receives the legacy password a user just proved (at sign-in or
// on the change page, before their first change: the password is still
// the one the legacy server knows), for the migration of a mailbox whose
// source credential nobody else has. It must not fail the request: what
// goes wrong there is its own to log.
type HandOff interface {
	HandOff(ctx context.Context, email, password string)
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
	// ErrBusy means every password-hashing slot is taken and the queue
	// for them is full: try again in a moment.
	ErrBusy = errors.New("the service is busy, please try again in a moment")
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
// Reason, when set, says why (fit to show users); else it is the rate
// limits.
type LimitedError struct {
	RetryAfter time.Duration
	Reason     string
}

// Error says why and when to try again.
func (e *LimitedError) Error() string {
	why := "too many attempts"
	if e.Reason != "" {
		why = e.Reason
	}
	return fmt.Sprintf("%s, please try again in %s", why, e.RetryAfter.Round(time.Second))
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

// Defaults of Options.
const (
	// DefaultFailureTime is how long after a request began a failed
	// password check is answered. It hides which check ran: an unknown
	// account, a wrong password against a stored hash or a wrong
	// password at the legacy IMAP server (whose answer takes up to this
	// long: Dovecot delays failed logins by 2 s) all answer at this time.
	DefaultFailureTime = 3 * time.Second
	// DefaultHashWait is the longest a request waits for a hashing slot.
	DefaultHashWait = 3 * time.Second
)

// Options configures a Service.
type Options struct {
	Accounts *account.Store
	// Limits holds the rate limits and lockouts, shared by every
	// instance on the broker.
	Limits *ratelimit.Store
	// Legacy may be nil: users without a stored hash then cannot sign in.
	Legacy LegacyVerifier
	Target Target
	Policy policy.Policy
	Argon2 passhash.Argon2Params
	Events event.Publisher
	Log    zerolog.Logger
	// FailureTime is the least time between a request and the answer
	// that its password was wrong (DefaultFailureTime when 0). It is
	// also how long the legacy IMAP server has to answer.
	FailureTime time.Duration
	// HashSlots bounds the password hashes computed at once, in units of
	// one argon2id with Argon2's memory (GOMAXPROCS, at least 2, when 0);
	// HashQueue bounds the requests waiting for a slot (16 per slot when
	// 0) and HashWait how long each may wait (DefaultHashWait when 0).
	// A request that finds the queue full or waits too long gets ErrBusy.
	// Hashing thus takes at most HashSlots × Argon2.MemoryKiB of memory.
	HashSlots int
	HashQueue int
	HashWait  time.Duration
	// VerifyHash checks a password against a stored hash (passhash.Verify
	// when nil); tests observe the service's hashing through it.
	VerifyHash func(password, stored string) (bool, error)
	// Metrics counts sign-ins and password changes by outcome, and
	// lockouts (nil: nothing is counted).
	Metrics *metrics.Metrics
	// HandOff, when set, receives each legacy password proved (see
	// HandOff).
	HandOff HandOff
}

// Service signs users in and changes their passwords.
type Service struct {
	opt  Options
	gate *gate
	// locks serializes password changes of one account in this process.
	locks keylock.Locks
	// dummy is verified for unknown accounts and users checked at the
	// legacy IMAP server, so every check costs one argon2id.
	dummy string
}

// New returns a service.
func New(o Options) *Service {
	if o.FailureTime <= 0 {
		o.FailureTime = DefaultFailureTime
	}
	if o.HashSlots <= 0 {
		o.HashSlots = max(2, runtime.GOMAXPROCS(0))
	}
	if o.HashQueue <= 0 {
		o.HashQueue = 16 * o.HashSlots
	}
	if o.HashWait <= 0 {
		o.HashWait = DefaultHashWait
	}
	if o.VerifyHash == nil {
		o.VerifyHash = passhash.Verify
	}
	return &Service{
		opt:   o,
		gate:  newGate(o.HashSlots, o.HashQueue, o.HashWait),
		dummy: o.Argon2.Hash(rand.Text()),
	}
}

// Argon2FromConfig converts configured argon2 parameters.
func Argon2FromConfig(c authconfig.Argon2) passhash.Argon2Params {
	return passhash.Argon2Params{Time: uint32(c.Time), MemoryKiB: uint32(c.MemoryKiB), Threads: uint8(c.Threads)}
}

// Login checks email's password for client (the caller's address: an IP
// address, or any name when there is none).
func (s *Service) Login(ctx context.Context, email, password, client string) (_ Result, err error) {
	defer func() { s.opt.Metrics.SignIn(Outcome(err)) }()
	start := time.Now()
	email, err = checkInput(email, password)
	if err != nil {
		return Result{}, err
	}
	att, err := s.admit(ctx, email, client)
	if err != nil {
		return Result{}, err
	}
	a, err := s.verify(ctx, email, password, client, start)
	if err != nil {
		return Result{}, s.failed(ctx, att, email, client, "login", err, start)
	}
	s.succeeded(ctx, att, email, client)
	s.handOff(ctx, a, password)
	s.opt.Log.Info().Str("email", email).Str("client", client).Bool("password_update_required", a.PasswordUpdateRequired()).Msg("sign-in")
	return result(a), nil
}

// handOff gives password to the HandOff when it is still the legacy one:
// the account never had a password set at the target.
func (s *Service) handOff(ctx context.Context, a *account.Account, password string) {
	if s.opt.HandOff != nil && a.PasswordUpdateRequired() {
		s.opt.HandOff.HandOff(ctx, a.Email, password)
	}
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

// admit counts the attempt against the limits before any password is
// looked at, or refuses it. Locked accounts are refused whether or not
// they exist.
func (s *Service) admit(ctx context.Context, email, client string) (*ratelimit.Attempt, error) {
	att, err := s.opt.Limits.Admit(ctx, email, ratelimit.Client(client))
	var r *ratelimit.Refused
	if errors.As(err, &r) {
		s.opt.Log.Warn().Str("email", email).Str("client", client).Str("limit", r.Why).Dur("retry_after", r.RetryAfter).Msg("attempt refused: rate limit or lockout")
		return nil, &LimitedError{RetryAfter: r.RetryAfter}
	}
	if err != nil {
		// Without the shared state no attempt is counted: none is checked.
		s.opt.Log.Error().Err(err).Str("email", email).Str("client", client).Msg("rate limits unavailable")
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return att, nil
}

// settleTimeout bounds settling an attempt after its request ended.
const settleTimeout = 5 * time.Second

// settleContext outlives the request: a client that goes away must not
// keep its count from being given back (or kept).
func settleContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
}

// succeeded settles a right password: the (account, client) lockout
// history is forgotten, the client's count given back.
func (s *Service) succeeded(ctx context.Context, att *ratelimit.Attempt, email, client string) {
	sctx, cancel := settleContext(ctx)
	defer cancel()
	if err := att.Succeeded(sctx); err != nil {
		s.opt.Log.Warn().Err(err).Str("email", email).Str("client", client).Msg("rate limit not reset after a sign-in")
	}
}

// failed settles a failed check. Bad credentials stay counted and are
// answered at start + FailureTime; a check that could not be made is
// given back.
func (s *Service) failed(ctx context.Context, att *ratelimit.Attempt, email, client, op string, err error, start time.Time) error {
	if errors.Is(err, ErrBadCredentials) {
		ev := s.opt.Log.Warn().Str("email", email).Str("client", client).Str("op", op)
		if d := att.LockedFor(); d > 0 {
			ev = ev.Dur("locked_for", d)
			s.opt.Metrics.Lockout()
		}
		ev.Msg("bad credentials")
		s.waitUntil(ctx, start.Add(s.opt.FailureTime))
		return ErrBadCredentials
	}
	sctx, cancel := settleContext(ctx)
	defer cancel()
	if verr := att.Void(sctx); verr != nil {
		s.opt.Log.Warn().Err(verr).Str("email", email).Str("client", client).Msg("rate limit count not given back")
	}
	var limited *LimitedError
	if errors.As(err, &limited) {
		// No password was checked: the legacy server is not asked again
		// before RetryAfter (the verifier logged why).
		return err
	}
	if errors.Is(err, ErrBusy) {
		s.opt.Log.Warn().Str("email", email).Str("client", client).Str("op", op).Msg("password hashing busy: request refused")
		return err
	}
	s.opt.Log.Error().Err(err).Str("email", email).Str("client", client).Str("op", op).Msg("password check failed")
	s.waitUntil(ctx, start.Add(s.opt.FailureTime))
	return err
}

// Outcome names how a sign-in or password change ended, for metrics:
// ok, bad_credentials, limited, invalid, policy, busy, unavailable or
// error.
func Outcome(err error) string {
	var (
		input   *InputError
		pol     *PolicyError
		limited *LimitedError
	)
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrBadCredentials):
		return "bad_credentials"
	case errors.As(err, &limited):
		return "limited"
	case errors.As(err, &input):
		return "invalid"
	case errors.As(err, &pol):
		return "policy"
	case errors.Is(err, ErrBusy):
		return "busy"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	}
	return "error"
}

// waitUntil sleeps until t or until ctx ends.
func (s *Service) waitUntil(ctx context.Context, t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
}
