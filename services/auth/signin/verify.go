package signin

import (
	"context"
	"errors"
	"fmt"

	"github.com/mailferry/mailferry/services/auth/account"
	"github.com/mailferry/mailferry/services/auth/passhash"
)

// verify returns the account when password is right, ErrBadCredentials
// when it is wrong or the account unknown, ErrUnavailable (wrapped) when
// it cannot tell.
func (s *Service) verify(ctx context.Context, email, password string) (*account.Account, error) {
	a, err := s.opt.Accounts.Get(ctx, email)
	if errors.Is(err, account.ErrNotFound) {
		s.burn(password)
		return nil, ErrBadCredentials
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if a.Hash != "" {
		return s.verifyHash(ctx, a, password)
	}
	if s.opt.Legacy == nil {
		s.burn(password)
		return nil, ErrBadCredentials
	}
	return s.verifyLegacy(ctx, a, password)
}

// burn spends the time of a real verification.
func (s *Service) burn(password string) {
	_, _ = passhash.Verify(password, s.dummy)
}

func (s *Service) verifyHash(ctx context.Context, a *account.Account, password string) (*account.Account, error) {
	ok, err := passhash.Verify(password, a.Hash)
	if err != nil {
		// The import validated every hash: this one was damaged since.
		return nil, fmt.Errorf("%w: stored hash of %s: %w", ErrUnavailable, a.Email, err)
	}
	if !ok {
		return nil, ErrBadCredentials
	}
	if !s.opt.Argon2.NeedsUpdate(a.Hash) {
		return a, nil
	}
	old := a.Hash
	return s.storeHash(ctx, a, password, func(cur *account.Account) bool { return cur.Hash == old }, "upgraded")
}

func (s *Service) verifyLegacy(ctx context.Context, a *account.Account, password string) (*account.Account, error) {
	ok, err := s.opt.Legacy.Verify(ctx, a.Email, password)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if !ok {
		return nil, ErrBadCredentials
	}
	return s.storeHash(ctx, a, password, func(cur *account.Account) bool { return cur.Hash == "" }, "learned_from_legacy_imap")
}

// storeHash replaces the account's hash with argon2id of password when
// still applies says the account is as it was verified (else a concurrent
// change wins), as passlib's verify_and_update does. A failure to store
// does not fail the sign-in: the password was right.
func (s *Service) storeHash(ctx context.Context, a *account.Account, password string, stillApplies func(*account.Account) bool, how string) (*account.Account, error) {
	h := s.opt.Argon2.Hash(password)
	stored, err := s.opt.Accounts.Update(ctx, a.Email, func(cur *account.Account) error {
		if !stillApplies(cur) {
			return account.ErrUnchanged
		}
		cur.Hash = h
		return nil
	})
	if err != nil {
		s.opt.Log.Error().Err(err).Str("email", a.Email).Msg("hash not upgraded")
		return a, nil
	}
	s.opt.Log.Info().Str("email", a.Email).Str("how", how).Msg("hash upgraded to argon2id")
	return stored, nil
}
