// Package policy checks a new password against what the target provider
// accepts, and says precisely which rules it breaks so the user can fix
// it in one go.
package policy

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mailferry/mailferry/services/auth/authconfig"

	"golang.org/x/text/unicode/norm"
)

// BcryptMaxBytes is the longest password bcrypt (BLF-CRYPT) reads: it
// ignores every byte after the 72nd, and generating such a hash fails.
const BcryptMaxBytes = 72

// Policy is a set of rules on new passwords.
//
// Lengths count characters as a person sees them: the password is put in
// Unicode normal form C (so "é" typed as e and a combining accent is one
// character, as when typed as é), then invisible code points are not
// counted: format characters such as the zero-width space and joiners,
// combining marks left after normalisation, variation selectors and the
// other default-ignorable code points. "Ab1!" followed by six zero-width
// spaces is four characters long. The password itself is stored and sent
// to the provider as typed: IMAP clients send the bytes they were given.
type Policy struct {
	MinLength, MaxLength                                    int
	RequireDigit, RequireUpper, RequireLower, RequireSymbol bool
	// MaxBytes, when set, bounds the password's UTF-8 length: a target
	// that hashes with bcrypt reads at most BcryptMaxBytes.
	MaxBytes int
}

// FromConfig builds the policy of the configuration (defaults applied).
func FromConfig(c authconfig.PasswordPolicy) Policy {
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

// Invisible reports whether r is a code point that does not count as a
// character: a format character (zero-width space, joiners, bidi marks,
// soft hyphen), a combining mark, a variation selector or another
// default-ignorable code point (such as the Hangul fillers).
func Invisible(r rune) bool {
	return unicode.In(r, unicode.Cf, unicode.Mn, unicode.Me, unicode.Variation_Selector,
		unicode.Other_Default_Ignorable_Code_Point, unicode.Zl, unicode.Zp)
}

// visible returns the characters of password that count: those of its
// normal form C that are not Invisible.
func visible(password string) []rune {
	var out []rune
	for _, r := range norm.NFC.String(password) {
		if !Invisible(r) {
			out = append(out, r)
		}
	}
	return out
}

// Check returns nil or an *Error listing every rule password breaks.
func (p Policy) Check(password string) error {
	var v []Violation
	shown := visible(password)
	if len(shown) < p.MinLength {
		v = append(v, Violation(fmt.Sprintf("must be at least %d characters long", p.MinLength)))
	}
	// The maximum counts every code point, invisible ones included: they
	// are still sent and stored.
	if utf8.RuneCountInString(norm.NFC.String(password)) > p.MaxLength {
		v = append(v, Violation(fmt.Sprintf("must be at most %d characters long", p.MaxLength)))
	}
	if p.MaxBytes > 0 && len(password) > p.MaxBytes {
		v = append(v, Violation(fmt.Sprintf("must be at most %d bytes long (letters with accents and other non-ASCII characters take 2 to 4)", p.MaxBytes)))
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
		if r.on && !slices.ContainsFunc(shown, r.has) {
			v = append(v, r.text)
		}
	}
	if len(v) == 0 {
		return nil
	}
	return &Error{Violations: v}
}

// isSymbol counts anything printable that is neither a letter nor a
// digit, space included, as OpenSRS does; a combining mark is part of
// the letter it sits on.
func isSymbol(r rune) bool {
	return unicode.IsPrint(r) && !unicode.IsLetter(r) && !unicode.IsDigit(r) && !unicode.IsMark(r)
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
	case 1:
		s += ", with " + with[0]
	default:
		s += ", with " + strings.Join(with[:len(with)-1], ", ") + " and " + with[len(with)-1]
	}
	if p.MaxBytes > 0 {
		s += fmt.Sprintf("; at most %d bytes", p.MaxBytes)
	}
	return s
}
