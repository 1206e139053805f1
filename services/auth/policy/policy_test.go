package policy

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/services/auth/authconfig"
	"github.com/mailferry/mailferry/shared/config"
)

// section is c's auth section as the service loads it.
func section(t *testing.T, c *config.Config) *authconfig.Auth {
	t.Helper()
	a, err := authconfig.Load(c)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func openSRS(t *testing.T) Policy {
	t.Helper()
	c, err := config.Parse(nil, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return FromConfig(section(t, c).Policy)
}

func TestCheckNamesEveryBrokenRule(t *testing.T) {
	p := openSRS(t)
	for _, tc := range []struct {
		password string
		want     []Violation
	}{
		{"Abcdefgh1!", nil},
		{"Ünïcödé-Pass 9", nil},
		{"short1!A", []Violation{"must be at least 10 characters long"}},
		{"alllowercase", []Violation{"must contain a digit", "must contain an upper-case letter", "must contain a symbol (such as ! # % or -)"}},
		{"NoDigitsHere!", []Violation{"must contain a digit"}},
		{"nouppercase1!", []Violation{"must contain an upper-case letter"}},
		{"NoSymbol1234", []Violation{"must contain a symbol (such as ! # % or -)"}},
		{"Tab\tinside1!", []Violation{"must not contain control characters"}},
		{strings.Repeat("Aa1!", 33), []Violation{"must be at most 128 characters long"}},
	} {
		err := p.Check(tc.password)
		var pe *Error
		if tc.want == nil {
			if err != nil {
				t.Errorf("Check(%q) = %v, want nil", tc.password, err)
			}
			continue
		}
		if !errors.As(err, &pe) || !reflect.DeepEqual(pe.Violations, tc.want) {
			t.Errorf("Check(%q) = %v, want %v", tc.password, err, tc.want)
		}
		if strings.Contains(err.Error(), tc.password) {
			t.Errorf("error %q contains the password", err)
		}
	}
}

func TestDescribeStatesTheOpenSRSRules(t *testing.T) {
	got := openSRS(t).Describe()
	want := "10 to 128 characters, with a digit, an upper-case letter and a symbol; not containing your mailbox name"
	if got != want {
		t.Fatalf("Describe() = %q, want %q", got, want)
	}
}

func TestConfiguredPolicyOverridesDefaults(t *testing.T) {
	c, err := config.Parse([]byte("auth: {policy: {min_length: 4, require_symbol: false, require_upper: false}}"), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	p := FromConfig(section(t, c).Policy)
	if err := p.Check("abc1"); err != nil {
		t.Fatalf("Check = %v", err)
	}
	if p.Describe() != "4 to 128 characters, with a digit; not containing your mailbox name" {
		t.Fatalf("Describe = %q", p.Describe())
	}
}

func TestCheckForRefusesTheMailboxName(t *testing.T) {
	p := openSRS(t)
	err := p.CheckFor("Joanna@example.org", "Hi-JOANNA-2024")
	var pe *Error
	if !errors.As(err, &pe) || len(pe.Violations) != 1 || pe.Violations[0] != "must not contain your mailbox name" {
		t.Fatalf("CheckFor = %v", err)
	}
	if err := p.CheckFor("jo@example.org", "Hi-Jo-2024!"); err != nil {
		t.Fatalf("a two-letter name counted: %v", err)
	}
	err = p.CheckFor("joanna@example.org", "joanna")
	if !errors.As(err, &pe) || pe.Violations[len(pe.Violations)-1] != "must not contain your mailbox name" {
		t.Fatalf("CheckFor with other violations = %v", err)
	}
}

// TestInvisibleCharactersDoNotCount: zero-width, format and combining
// characters make a password no longer, and a decomposed accent counts
// as the one character it shows.
func TestInvisibleCharactersDoNotCount(t *testing.T) {
	p := openSRS(t)
	tooShort := []Violation{"must be at least 10 characters long"}
	for _, tc := range []struct {
		name, password string
		want           []Violation
	}{
		{"six zero-width spaces", "Ab1!" + strings.Repeat("\u200b", 6), tooShort},
		{"zero-width joiners and non-joiners", "Ab1!\u200d\u200c\u200d\u200c\u200d\u200c", tooShort},
		{"byte-order marks and word joiners", "Ab1!\ufeff\u2060\ufeff\u2060\ufeff\u2060", tooShort},
		{"soft hyphens and bidi marks", "Ab1!\u00ad\u200e\u200f\u202a\u202c\u2066", tooShort},
		{"stacked combining marks", "Ab1!a" + strings.Repeat("\u0301", 20), []Violation{"must be at least 10 characters long"}},
		{"variation selectors", "Ab1!\ufe0f\ufe0f\ufe0f\U000e0100\ufe0e\ufe0e", tooShort},
		{"Hangul fillers", "Ab1!\u3164\u3164\u3164\u115f\u1160\uffa0", tooShort},
		{"a combining mark is not a symbol", "Abcdefgh1e\u0301", []Violation{"must contain a symbol (such as ! # % or -)"}},
		{"decomposed accents count once", "Ab1!e\u0301e\u0301e\u0301e\u0301e\u0301e\u0301", nil},
		{"precomposed accents count once", "Ab1!éééééé", nil},
		{"visible non-Latin characters count", "Ab1!日本語パスワ", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := p.Check(tc.password)
			var pe *Error
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Check = %v, want nil", err)
				}
				return
			}
			if !errors.As(err, &pe) || !reflect.DeepEqual(pe.Violations, tc.want) {
				t.Fatalf("Check = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestBcryptTargetCapsTheBytes: a BLF-CRYPT target ignores bytes after
// the 72nd, so the policy refuses longer passwords up front.
func TestBcryptTargetCapsTheBytes(t *testing.T) {
	p := openSRS(t)
	p.MaxBytes = BcryptMaxBytes
	ok := "Aa1!" + strings.Repeat("x", 68)
	if err := p.Check(ok); err != nil {
		t.Fatalf("72 bytes: %v", err)
	}
	for _, pw := range []string{"Aa1!" + strings.Repeat("x", 72), "Aa1!" + strings.Repeat("é", 35)} {
		err := p.Check(pw)
		var pe *Error
		if !errors.As(err, &pe) || len(pe.Violations) != 1 || !strings.HasPrefix(string(pe.Violations[0]), "must be at most 72 bytes long") {
			t.Errorf("%d bytes: %v", len(pw), err)
		}
	}
	if d := p.Describe(); !strings.Contains(d, "; at most 72 bytes;") {
		t.Errorf("Describe = %q", d)
	}
}

// TestOpenSRSRulesAreAllInTheFirstAnswer: with OpenSRS's rules every
// broken one is named at once, the provider's own (length, characters,
// name, domain) included, so that no password passes the page to be
// refused by the provider.
func TestOpenSRSRulesAreAllInTheFirstAnswer(t *testing.T) {
	p := openSRS(t).ForOpenSRS()
	const (
		email   = "joanna@example.org"
		tooLong = "must be at most 54 characters long"
		chars   = `must contain only letters A-Z and a-z, digits and the symbols on a US keyboard, without spaces or "`
		name    = "must not contain your mailbox name"
		domain  = "must not contain your domain"
	)
	for _, tc := range []struct {
		name, password string
		want           []Violation
	}{
		{"acceptable", "Zebra-Crossing-42", nil},
		{"54 characters", "Aa1!" + strings.Repeat("x", 50), nil},
		{"60 characters", "Aa1!" + strings.Repeat("x", 56), []Violation{tooLong}},
		{"the mailbox name", "Hi-JOANNA-2024", []Violation{name}},
		{"the domain", "Example.org-2024", []Violation{domain}},
		{"the domain's first label only", "Big-Example-2024", nil},
		{"a space", "Zebra Crossing-42", []Violation{chars}},
		{`a "`, `Zebra"Crossing-42`, []Violation{chars}},
		{"non-ASCII", "Zébra-Crossing-42", []Violation{chars}},
		{"every rule at once", "joanna example.org é" + strings.Repeat("x", 50), []Violation{tooLong, chars, "must contain a digit", "must contain an upper-case letter", name, domain}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := p.CheckFor(email, tc.password)
			var pe *Error
			if tc.want == nil {
				if err != nil {
					t.Fatalf("CheckFor = %v, want nil", err)
				}
				return
			}
			if !errors.As(err, &pe) || !reflect.DeepEqual(pe.Violations, tc.want) {
				t.Fatalf("CheckFor = %v,\nwant %q", err, tc.want)
			}
			if strings.Contains(err.Error(), tc.password) {
				t.Fatalf("error %q contains the password", err)
			}
		})
	}
	want := `10 to 54 characters, with a digit, an upper-case letter and a symbol; only letters A-Z and a-z, digits and the symbols on a US keyboard (no spaces, no "); not containing your mailbox name or your domain`
	if got := p.Describe(); got != want {
		t.Fatalf("Describe() = %q, want %q", got, want)
	}
}
