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
	// PrintableASCII allows only the characters OpenSRS is reported to
	// accept: ASCII codes 33 and 35 to 126 (no space, no ", nothing
	// beyond ASCII).
	PrintableASCII bool
	// NoDomain forbids the mailbox's domain in the password, as OpenSRS
	// does; CheckFor always forbids the mailbox name.
	NoDomain bool
}

// ForOpenSRS returns p with OpenSRS's rules added: at most
// authconfig.OpenSRSMaxPassword characters, printable ASCII only and
// neither the mailbox name nor the domain. A configured maximum can only
// lower the provider's (authconfig refuses a higher one).
func (p Policy) ForOpenSRS() Policy {
	p.MaxLength = min(p.MaxLength, authconfig.OpenSRSMaxPassword)
	p.PrintableASCII = true
	p.NoDomain = true
	return p
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

// Violations of the rules on the address, which CheckFor adds.
const (
	violationName   = Violation("must not contain your mailbox name")
	violationDomain = Violation("must not contain your domain")
)

// CheckFor is Check plus the rules on the address that providers such as
// OpenSRS enforce: the password must not contain the mailbox name of
// email (nor, with NoDomain, its domain). Every broken rule is in the one
// answer, these included.
func (p Policy) CheckFor(email, password string) error {
	var v []Violation
	if err := p.Check(password); err != nil {
		v = err.(*Error).Violations
	}
	lower := strings.ToLower(password)
	local, domain, _ := strings.Cut(strings.ToLower(email), "@")
	if len(local) >= minNameLength && strings.Contains(lower, local) {
		v = append(v, violationName)
	}
	if p.NoDomain && domain != "" && strings.Contains(lower, domain) {
		v = append(v, violationDomain)
	}
	if len(v) == 0 {
		return nil
	}
	return &Error{Violations: v}
}

// printableASCII reports whether r is one of the characters OpenSRS is
// reported to accept in a password: codes 33 and 35 to 126.
func printableASCII(r rune) bool { return r == 33 || (r >= 35 && r <= 126) }

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
	if p.PrintableASCII && strings.IndexFunc(password, func(r rune) bool { return !printableASCII(r) && !unicode.IsControl(r) }) >= 0 {
		v = append(v, `must contain only letters A-Z and a-z, digits and the symbols on a US keyboard, without spaces or "`)
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

// Describe lists every rule Check and CheckFor apply, for the change
// form, e.g. "10 to 128 characters, with a digit, an upper-case letter
// and a symbol; not containing your mailbox name".
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
	s := fmt.Sprintf("%d to %d characters", p.MinLength, p.MaxLength)
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
	if p.PrintableASCII {
		s += `; only letters A-Z and a-z, digits and the symbols on a US keyboard (no spaces, no ")`
	}
	s += "; not containing your mailbox name"
	if p.NoDomain {
		s += " or your domain"
	}
	return s
}
