package loader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/imapdial"
	"github.com/mailferry/mailferry/shared/subject"
)

// TokenMinter issues a login token for a target mailbox: OpenSRS's
// generate_token with type session, which "can be used in place of a
// password" (services/auth/target/opensrs Client.MintToken).
type TokenMinter interface {
	MintToken(ctx context.Context, user string) (token string, valid time.Duration, err error)
}

// Tokens hands out the target login token of a mailbox (target.auth:
// token). Tokens live in the broker's mf_target_tokens bucket, shared by
// every loader instance, so a mailbox that moves to another loader (a
// retry, a restart, the next pass) logs in with the token already minted;
// one is minted when none is stored or the stored one has less than
// RenewBefore left. A token is a secret: it goes to the bucket and into
// the LOGIN command, never into a log, an event or an error.
type Tokens struct {
	Minter TokenMinter
	KV     jetstream.KeyValue
	// RenewBefore: a stored token with less than this left is replaced.
	RenewBefore time.Duration
	Log         zerolog.Logger
	// now is time.Now unless a test sets it.
	now func() time.Time
}

// storedToken is a bucket entry (key: TokenKey of the mailbox).
type storedToken struct {
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
}

// TokenKey names a mailbox's entry in the token bucket.
func TokenKey(user string) string { return "tok." + subject.Key(user) }

func (t *Tokens) clock() time.Time {
	if t.now != nil {
		return t.now()
	}
	return time.Now()
}

// Get returns a token for user with at least RenewBefore left, minting and
// storing a new one when the stored one is missing or about to expire.
func (t *Tokens) Get(ctx context.Context, user string) (string, error) {
	cur, rev, err := t.load(ctx, user)
	if err != nil {
		return "", err
	}
	if cur.Token != "" && t.clock().Add(t.RenewBefore).Before(cur.Expires) {
		return cur.Token, nil
	}
	reason := "none stored"
	if cur.Token != "" {
		reason = "the stored one expires soon"
	}
	return t.mint(ctx, user, rev, reason)
}

// Replace returns a fresh token for user after the target refused
// refused: another loader may have replaced it already (then that one
// is used), else a new one is minted.
func (t *Tokens) Replace(ctx context.Context, user, refused string) (string, error) {
	cur, rev, err := t.load(ctx, user)
	if err != nil {
		return "", err
	}
	if cur.Token != "" && cur.Token != refused && t.clock().Add(t.RenewBefore).Before(cur.Expires) {
		return cur.Token, nil
	}
	return t.mint(ctx, user, rev, "the target refused the stored one")
}

// load reads user's entry; rev is 0 when there is none.
func (t *Tokens) load(ctx context.Context, user string) (storedToken, uint64, error) {
	e, err := t.KV.Get(ctx, TokenKey(user))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return storedToken{}, 0, nil
	}
	if err != nil {
		return storedToken{}, 0, fmt.Errorf("read login token of %s: %w", user, err)
	}
	var st storedToken
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		// Unreadable: replaced by the next mint (no content in the error).
		t.Log.Warn().Str("target_user", user).Msg("stored login token unreadable; minting a new one")
		return storedToken{}, e.Revision(), nil
	}
	return st, e.Revision(), nil
}

// mint asks the provider for a token and stores it over revision rev (0:
// create). When another loader stored one meanwhile, that one is used if
// it is fresh.
func (t *Tokens) mint(ctx context.Context, user string, rev uint64, reason string) (string, error) {
	tok, valid, err := t.Minter.MintToken(ctx, user)
	if err != nil {
		// The adapter's errors name the method and OpenSRS's error, never
		// the token or the OMA password.
		return "", fmt.Errorf("mint login token for %s: %w", user, err)
	}
	if valid <= t.RenewBefore {
		return "", fmt.Errorf("mint login token for %s: valid %s, not more than renew_before %s", user, valid, t.RenewBefore)
	}
	st := storedToken{Token: tok, Expires: t.clock().Add(valid)}
	raw, err := json.Marshal(st)
	if err != nil {
		return "", fmt.Errorf("store login token of %s: %w", user, err)
	}
	if rev == 0 {
		_, err = t.KV.Create(ctx, TokenKey(user), raw)
	} else {
		_, err = t.KV.Update(ctx, TokenKey(user), raw, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		// Another loader stored one first: it is as good as this one,
		// which stays unused until it expires.
		if other, _, lerr := t.load(ctx, user); lerr == nil && other.Token != "" && t.clock().Add(t.RenewBefore).Before(other.Expires) {
			return other.Token, nil
		}
		err = nil
		if _, perr := t.KV.Put(ctx, TokenKey(user), raw); perr != nil {
			err = perr
		}
	}
	if err != nil {
		return "", fmt.Errorf("store login token of %s: %w", user, err)
	}
	t.Log.Info().Str("target_user", user).Str("why", reason).Time("expires", st.Expires).Msg("target login token minted")
	return tok, nil
}

// Login runs dial with a token of user as the password. A login the
// target refuses is tried once more with a fresh token (the stored one
// may have been revoked or expired early); a second refusal is final
// (imapdial.ErrLoginRefused).
func (t *Tokens) Login(ctx context.Context, user string, dial func(imapdial.Credentials) error) error {
	tok, err := t.Get(ctx, user)
	if err != nil {
		return err
	}
	err = dial(imapdial.Credentials{User: user, Password: tok})
	if !errors.Is(err, imapdial.ErrLoginRefused) {
		return err
	}
	t.Log.Warn().Str("target_user", user).Msg("the target refused the login token; trying once with a fresh one")
	if tok, err = t.Replace(ctx, user, tok); err != nil {
		return err
	}
	return dial(imapdial.Credentials{User: user, Password: tok})
}

// login runs dial with the credentials of the session's target user:
// cred, or with tokens a token of the user (Tokens.Login).
func (ss *session) login(ctx context.Context, dial func(imapdial.Credentials) error) error {
	if ss.tokens == nil {
		return dial(ss.cred)
	}
	return ss.tokens.Login(ctx, ss.j.TargetUser, dial)
}
