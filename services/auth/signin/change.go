package signin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mailferry/mailferry/services/auth/account"
	"github.com/mailferry/mailferry/services/auth/policy"
	"github.com/mailferry/mailferry/shared/event"
)

// ChangeRequest is a password change as the user submitted it.
type ChangeRequest struct {
	Email           string
	CurrentPassword string
	NewPassword     string
	// Client is the caller's address, for rate limits and logs.
	Client string
}

// ChangePassword proves the current password, sets the new one at the
// target provider and locally, and emits user.password.updated. Policy
// errors come first and are specific; credential errors are generic.
func (s *Service) ChangePassword(ctx context.Context, r ChangeRequest) (_ Result, err error) {
	defer func() { s.opt.Metrics.PasswordChange(Outcome(err)) }()
	start := time.Now()
	email, err := checkInput(r.Email, r.CurrentPassword)
	if err != nil {
		return Result{}, err
	}
	if err := s.checkNew(email, r); err != nil {
		return Result{}, err
	}
	att, err := s.admit(ctx, email, r.Client)
	if err != nil {
		return Result{}, err
	}
	unlock := s.locks.Lock(email)
	defer unlock()
	a, err := s.verify(ctx, email, r.CurrentPassword, r.Client, start)
	if err != nil {
		return Result{}, s.failed(ctx, att, email, r.Client, "change", err, start)
	}
	s.succeeded(ctx, att, email, r.Client)
	// Before the change: the proof is of the legacy password until then.
	s.handOff(ctx, a, r.CurrentPassword)
	// Hashed before the provider is asked: a busy service then changes
	// nothing anywhere.
	h, err := s.hash(ctx, r.NewPassword)
	if err != nil {
		return Result{}, err
	}
	if err := s.setAtTarget(ctx, email, r.NewPassword); err != nil {
		return Result{}, err
	}
	a, err = s.recordChange(ctx, a, h)
	if err != nil {
		return Result{}, err
	}
	s.opt.Log.Info().Str("email", email).Str("client", r.Client).Str("provider", s.opt.Target.Name()).Msg("password updated")
	return result(a), nil
}

func (s *Service) checkNew(email string, r ChangeRequest) error {
	if r.NewPassword == "" {
		return &InputError{Msg: "enter a new password"}
	}
	if len(r.NewPassword) > MaxPasswordBytes {
		return &InputError{Msg: fmt.Sprintf("a password is at most %d bytes long", MaxPasswordBytes)}
	}
	var reasons []string
	var pe *policy.Error
	if err := s.opt.Policy.CheckFor(email, r.NewPassword); errors.As(err, &pe) {
		for _, v := range pe.Violations {
			reasons = append(reasons, string(v))
		}
	}
	if r.NewPassword == r.CurrentPassword {
		reasons = append(reasons, "must differ from the current password")
	}
	if len(reasons) > 0 {
		return &PolicyError{Reasons: reasons}
	}
	return nil
}

func (s *Service) setAtTarget(ctx context.Context, email, password string) error {
	err := s.opt.Target.SetPassword(ctx, email, password)
	if err == nil {
		return nil
	}
	var r refusal
	if errors.As(err, &r) {
		s.opt.Log.Warn().Str("email", email).Str("provider", s.opt.Target.Name()).Str("reason", r.Refusal()).Msg("provider refused the new password")
		return &PolicyError{Reasons: []string{r.Refusal()}}
	}
	s.opt.Log.Error().Err(err).Str("email", email).Str("provider", s.opt.Target.Name()).Msg("password not set at provider")
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// recordChange stores the new password's hash h and announces the change. The target
// already has the password: should this fail, the user's retry (with
// the old password, still stored) sets it again.
func (s *Service) recordChange(ctx context.Context, a *account.Account, h string) (*account.Account, error) {
	now := time.Now().UTC()
	stored, err := s.opt.Accounts.Update(ctx, a.Email, func(cur *account.Account) error {
		cur.Hash = h
		cur.PasswordUpdatedAt = now
		return nil
	})
	if err != nil {
		s.opt.Log.Error().Err(err).Str("email", a.Email).Msg("new hash not stored")
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	data := PasswordUpdatedData{Email: stored.Email, Role: stored.Role, Provider: s.opt.Target.Name()}
	if err := s.opt.Events.Publish(ctx, event.PasswordUpdated(data, now)); err != nil {
		// The change is done and stored; failing the request now would
		// only make the user's retry fail (the old password no longer
		// matches). The publish was retried; what is left is logged for a
		// person.
		s.opt.Log.Error().Err(err).Str("email", stored.Email).Msg("user.password.updated not published")
	}
	return stored, nil
}
