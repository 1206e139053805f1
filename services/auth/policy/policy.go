// Package policy checks a new password against what the target provider
// accepts, and says precisely which rules it breaks so the user can fix
// it in one go.
package policy

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mailferry/mailferry/shared/config"
)

// Policy is a set of rules on new passwords.
type Policy struct {
	MinLength, MaxLength                                    int
	RequireDigit, RequireUpper, RequireLower, RequireSymbol bool
}

// FromConfig builds the policy of the configuration (defaults applied).
func FromConfig(c config.PasswordPolicy) Policy {
	return Policy{
		MinLength: c.MinLength, MaxLength: c.MaxLength,
		RequireDigit: deref(c.RequireDigit), RequireUpper: deref(c.RequireUpper),
		RequireLower: deref(c.RequireLower), RequireSymbol: deref(c.RequireSymbol),
	}
}

func deref(b *bool) bool { return b != nil && *b }

// Violation is one broken rule, phrased for the user.
type Violation string

// Error lists the broken rules; it never contains the password.
type Error struct {
	Violations []Violation
}

// Error joins the violations into one sentence.
func (e *Error) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = string(v)
	}
	return "the new password " + strings.Join(parts, "; ")
}

// minNameLength is the shortest mailbox name a password may not contain:
// shorter ones would forbid ordinary words.
const minNameLength = 3

// CheckFor is Check plus a rule providers such as OpenSRS enforce: the
// password must not contain the mailbox name of email.
func (p Policy) CheckFor(email, password string) error {
	err := p.Check(password)
	local, _, _ := strings.Cut(strings.ToLower(email), "@")
	if len(local) < minNameLength || !strings.Contains(strings.ToLower(password), local) {
		return err
	}
	const v = Violation("must not contain your mailbox name")
	if pe, ok := err.(*Error); ok {
		pe.Violations = append(pe.Violations, v)
		return pe
	}
	return &Error{Violations: []Violation{v}}
}

// Check returns nil or an *Error listing every rule password breaks.
func (p Policy) Check(password string) error {
	var v []Violation
	n := utf8.RuneCountInString(password)
	if n < p.MinLength {
		v = append(v, Violation(fmt.Sprintf("must be at least %d characters long", p.MinLength)))
	}
	if n > p.MaxLength {
		v = append(v, Violation(fmt.Sprintf("must be at most %d characters long", p.MaxLength)))
	}
	if !utf8.ValidString(password) || strings.IndexFunc(password, unicode.IsControl) >= 0 {
		// Control characters cannot be typed into every mail client.
		v = append(v, "must not contain control characters")
	}
	for _, r := range []struct {
		on   bool
		has  func(rune) bool
		text Violation
	}{
		{p.RequireDigit, unicode.IsDigit, "must contain a digit"},
		{p.RequireUpper, unicode.IsUpper, "must contain an upper-case letter"},
		{p.RequireLower, unicode.IsLower, "must contain a lower-case letter"},
		{p.RequireSymbol, isSymbol, "must contain a symbol (such as ! # % or -)"},
	} {
		if r.on && strings.IndexFunc(password, r.has) < 0 {
			v = append(v, r.text)
		}
	}
	if len(v) == 0 {
		return nil
	}
	return &Error{Violations: v}
}

// isSymbol counts anything printable that is neither a letter nor a
// digit, space included, as OpenSRS does.
func isSymbol(r rune) bool {
	return unicode.IsPrint(r) && !unicode.IsLetter(r) && !unicode.IsDigit(r)
}

// Describe lists the rules for the change form, e.g. "at least 10
// characters, with a digit, an upper-case letter and a symbol".
func (p Policy) Describe() string {
	var with []string
	if p.RequireDigit {
		with = append(with, "a digit")
	}
	if p.RequireUpper {
		with = append(with, "an upper-case letter")
	}
	if p.RequireLower {
		with = append(with, "a lower-case letter")
	}
	if p.RequireSymbol {
		with = append(with, "a symbol")
	}
	s := fmt.Sprintf("at least %d characters", p.MinLength)
	switch len(with) {
	case 0:
		return s
	case 1:
		return s + ", with " + with[0]
	}
	return s + ", with " + strings.Join(with[:len(with)-1], ", ") + " and " + with[len(with)-1]
}
