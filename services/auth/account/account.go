// Package account holds the users the auth service knows: who they are,
// what role they have, the hash that verifies their password (never the
// password) and how far their move to the new provider has come. Accounts
// live in a JetStream key-value bucket and change only by compare-and-set.
package account

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Roles of the legacy platform: an admin manages a domain in its control
// panel; an email-only user has only a mailbox and uses the special
// change-password URL.
const (
	RoleAdmin     = "admin"
	RoleEmailOnly = "email-only"
)

// MaxEmailLength is RFC 5321's limit on a forward path.
const MaxEmailLength = 254

// Account is one user. Hash verifies the password locally: the legacy
// hash as imported, replaced by argon2id after the first successful
// sign-in; empty means the legacy IMAP server must vouch for the password.
// Never log an Account: it carries the hash.
type Account struct {
	Email      string    `json:"email"`
	Domain     string    `json:"domain"`
	Role       string    `json:"role"`
	Hash       string    `json:"hash,omitempty"`
	ImportedAt time.Time `json:"imported_at"`
	// ProvisionedAt is when the target mailbox was known to exist.
	ProvisionedAt time.Time `json:"provisioned_at,omitzero"`
	// PasswordUpdatedAt is when the user set a password at the target;
	// until then every sign-in asks for an update.
	PasswordUpdatedAt time.Time `json:"password_updated_at,omitzero"`
}

// PasswordUpdateRequired reports whether the user still has to set the
// password the new provider needs.
func (a *Account) PasswordUpdateRequired() bool { return a.PasswordUpdatedAt.IsZero() }

// Provisioned reports whether the target mailbox exists.
func (a *Account) Provisioned() bool { return !a.ProvisionedAt.IsZero() }

// ErrInvalidEmail is returned for an address that cannot name a mailbox.
var ErrInvalidEmail = errors.New("invalid email address")

// NormalizeEmail lower-cases and checks an address: one '@', a non-empty
// local part and a domain with a dot, no spaces, controls or characters a
// passwd-file or IMAP login would mangle (a leading '#' would make the
// user's passwd-file line a comment).
func NormalizeEmail(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" || len(s) > MaxEmailLength {
		return "", ErrInvalidEmail
	}
	local, domain, ok := strings.Cut(s, "@")
	if !ok || local == "" || local[0] == '#' || strings.Contains(domain, "@") || !strings.Contains(domain, ".") ||
		strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") || strings.Contains(domain, "..") {
		return "", ErrInvalidEmail
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || strings.ContainsRune(`:"\/*%()<>,;[]`, r) {
			return "", ErrInvalidEmail
		}
	}
	return s, nil
}

// Domain returns the domain of a normalized address.
func Domain(email string) string {
	_, d, _ := strings.Cut(email, "@")
	return d
}

// ValidRole checks a role name.
func ValidRole(role string) error {
	switch role {
	case RoleAdmin, RoleEmailOnly:
		return nil
	}
	return fmt.Errorf("role %q: want %s or %s", role, RoleAdmin, RoleEmailOnly)
}
