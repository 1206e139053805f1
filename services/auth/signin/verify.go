package signin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mailferry/mailferry/services/auth/account"
	"github.com/mailferry/mailferry/services/auth/passhash"
)

// verify returns the account when password is right, ErrBadCredentials
// when it is wrong or the account unknown, ErrBusy when no hashing slot
// was free, ErrUnavailable (wrapped) when it cannot tell. Every path
// computes one argon2id with the configured parameters: an unknown
// account and a user checked at the legacy IMAP server verify the dummy
// hash, a stored hash is argon2id or a legacy hash wrapped in it.
func (s *Service) verify(ctx context.Context, email, password, client string, start time.Time) (*account.Account, error) {
	a, err := s.opt.Accounts.Get(ctx, email)
	if errors.Is(err, account.ErrNotFound) {
		if _, err := s.checkHash(ctx, password, s.dummy); err != nil {
			return nil, err
		}
		return nil, ErrBadCredentials
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if a.Hash != "" {
		return s.verifyHash(ctx, a, password)
	}
	if _, err := s.checkHash(ctx, password, s.dummy); err != nil {
		return nil, err
	}
	if s.opt.Legacy == nil {
		return nil, ErrBadCredentials
	}
	return s.verifyLegacy(ctx, a, password, client, start)
}

// checkHash verifies password against stored inside a hashing slot. A
// stored hash that is not argon2id with the configured parameters (a
// legacy hash imported by an earlier version, or argon2id of other
// parameters) is followed by the dummy, so that this check costs what
// every other one does.
func (s *Service) checkHash(ctx context.Context, password, stored string) (bool, error) {
	release, err := s.gate.acquire(ctx, s.units(stored))
	if err != nil {
		return false, err
	}
	defer release()
	ok, err := s.opt.VerifyHash(password, stored)
	if p, isArgon := passhash.Argon2Of(stored); !isArgon || p != s.opt.Argon2 {
		_, _ = s.opt.VerifyHash(password, s.dummy)
	}
	return ok, err
}

// hash computes a new argon2id hash inside a hashing slot.
func (s *Service) hash(ctx context.Context, password string) (string, error) {
	release, err := s.gate.acquire(ctx, 1)
	if err != nil {
		return "", err
	}
	defer release()
	return s.opt.Argon2.Hash(password), nil
}

// units is what verifying stored takes of the gate: one per argon2id
// memory of the configured size (at least one).
func (s *Service) units(stored string) int {
	per := uint64(max(s.opt.Argon2.MemoryKiB, 1))
	return max(1, int((passhash.MemoryKiB(stored)+per-1)/per))
}

func (s *Service) verifyHash(ctx context.Context, a *account.Account, password string) (*account.Account, error) {
	ok, err := s.checkHash(ctx, password, a.Hash)
	if errors.Is(err, ErrBusy) {
		return nil, err
	}
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

// verifyLegacy asks the legacy IMAP server, which has until the failure
// time to answer. A server that holds its answer back for the client's
// address (Dovecot does after failed logins from it) has the client to
// blame: that counts as a wrong password, not as the service being down.
func (s *Service) verifyLegacy(ctx context.Context, a *account.Account, password, client string, start time.Time) (*account.Account, error) {
	lctx, cancel := context.WithDeadline(ctx, start.Add(s.opt.FailureTime))
	defer cancel()
	ok, err := s.opt.Legacy.Verify(lctx, a.Email, password, client)
	var limited *LimitedError
	if errors.As(err, &limited) {
		// The verifier did not ask: the server was refused this user's
		// logins as often as it may be in the past hour.
		return nil, limited
	}
	var cc interface{ ClientCaused() bool }
	if errors.As(err, &cc) && cc.ClientCaused() {
		s.opt.Log.Warn().Err(err).Str("email", a.Email).Str("client", client).Msg("legacy IMAP login not answered for this client: counted as a failure")
		return nil, ErrBadCredentials
	}
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
	h, err := s.hash(ctx, password)
	if err != nil {
		s.opt.Log.Warn().Err(err).Str("email", a.Email).Msg("hash not upgraded now: hashing busy")
		return a, nil
	}
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
