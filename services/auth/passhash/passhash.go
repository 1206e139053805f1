// Package passhash verifies and creates password hashes in Dovecot's
// "{SCHEME}hash" notation, the form legacy mail platforms export and
// Dovecot's passdb reads: the crypt(3) family, salted SHA digests, PBKDF2
// and argon2id. Every comparison runs in constant time; no function
// returns or formats a password, and errors never quote a hash.
package passhash

import (
	"errors"
	"fmt"
	"strings"
)

// Schemes this package verifies. BLF-CRYPT is bcrypt; CRYPT is whichever
// crypt(3) scheme the hash's prefix names ($1$, $5$, $6$, $2y$).
const (
	BLFCrypt    = "BLF-CRYPT"
	SHA512Crypt = "SHA512-CRYPT"
	SHA256Crypt = "SHA256-CRYPT"
	MD5Crypt    = "MD5-CRYPT"
	Crypt       = "CRYPT"
	SSHA        = "SSHA"
	SSHA256     = "SSHA256"
	SSHA512     = "SSHA512"
	SHA1        = "SHA1"
	SHA256      = "SHA256"
	SHA512      = "SHA512"
	PBKDF2      = "PBKDF2"
	Argon2ID    = "ARGON2ID"
	Argon2I     = "ARGON2I"
)

// The scheme WrappedArgon2ID (wrap.go) holds any of them wrapped in
// argon2id.

// ErrUnsupported means the scheme is not one this package knows; ErrMalformed
// that the hash does not have its scheme's form. Neither is a mismatch.
var (
	ErrUnsupported = errors.New("unsupported password scheme")
	ErrMalformed   = errors.New("malformed password hash")
)

// aliases maps Dovecot's other names of a scheme to ours.
var aliases = map[string]string{
	"SHA": SHA1, "MD5": MD5Crypt, "BLF": BLFCrypt,
}

// Hash is a parsed "{SCHEME}data" string.
type Hash struct {
	// Scheme is the canonical upper-case scheme name.
	Scheme string
	// Encoding is "HEX" or "B64" when the scheme had such a suffix
	// ({SSHA256.HEX}); empty means the scheme's default.
	Encoding string
	// Data is everything after the closing brace.
	Data string
}

// String returns the hash in {SCHEME}data form.
func (h Hash) String() string {
	s := h.Scheme
	if h.Encoding != "" {
		s += "." + h.Encoding
	}
	return "{" + s + "}" + h.Data
}

// Parse splits a stored hash into scheme and data and checks that this
// package can verify it.
func Parse(stored string) (Hash, error) {
	rest, ok := strings.CutPrefix(stored, "{")
	if !ok {
		return Hash{}, fmt.Errorf("%w: no {SCHEME} prefix", ErrMalformed)
	}
	name, data, ok := strings.Cut(rest, "}")
	if !ok || name == "" {
		return Hash{}, fmt.Errorf("%w: no {SCHEME} prefix", ErrMalformed)
	}
	h := Hash{Data: data}
	name = strings.ToUpper(name)
	if base, enc, ok := strings.Cut(name, "."); ok {
		switch enc {
		case "HEX":
			h.Encoding = "HEX"
		case "B64", "BASE64":
			h.Encoding = "B64"
		default:
			return Hash{}, fmt.Errorf("%w: encoding suffix of {%s}", ErrUnsupported, name)
		}
		name = base
	}
	if a, ok := aliases[name]; ok {
		name = a
	}
	h.Scheme = name
	v, ok := verifiers[name]
	if !ok {
		return Hash{}, fmt.Errorf("%w: {%s}", ErrUnsupported, name)
	}
	if h.Encoding != "" && !v.encodable {
		return Hash{}, fmt.Errorf("%w: {%s} takes no encoding suffix", ErrUnsupported, name)
	}
	if err := v.check(h); err != nil {
		return Hash{}, fmt.Errorf("%w: {%s}: %v", ErrMalformed, name, err)
	}
	return h, nil
}

// Verify reports whether password matches the stored hash. A non-nil
// error means the hash could not be checked (unknown scheme, malformed);
// it never contains the hash or the password.
func Verify(password, stored string) (bool, error) {
	h, err := Parse(stored)
	if err != nil {
		return false, err
	}
	return verifiers[h.Scheme].verify(password, h)
}

// verifier checks one scheme.
type verifier struct {
	// check validates the form of a hash without a password.
	check func(Hash) error
	// verify compares password against the hash in constant time.
	verify func(password string, h Hash) (bool, error)
	// encodable schemes accept a .HEX/.B64 suffix.
	encodable bool
	// split divides a hash into setting and digest, and prepare computes
	// digests under a setting: the two halves of wrapping the scheme in
	// argon2id (nil for schemes that cannot be wrapped).
	split   func(Hash) (setting string, digest []byte, err error)
	prepare func(setting string) (digester, error)
}

var verifiers map[string]verifier

func init() {
	// Built in init: the wrapped scheme's functions refer to the map.
	verifiers = map[string]verifier{
		BLFCrypt:        {check: checkBcrypt, verify: verifyBcrypt, split: splitCrypt, prepare: prepareCrypt},
		SHA512Crypt:     {check: checkCrypt("$6$"), verify: verifyCrypt, split: splitCrypt, prepare: prepareCrypt},
		SHA256Crypt:     {check: checkCrypt("$5$"), verify: verifyCrypt, split: splitCrypt, prepare: prepareCrypt},
		MD5Crypt:        {check: checkCrypt("$1$"), verify: verifyCrypt, split: splitCrypt, prepare: prepareCrypt},
		Crypt:           {check: checkAnyCrypt, verify: verifyAnyCrypt, split: splitCrypt, prepare: prepareCrypt},
		SSHA:            saltedDigest(SSHA),
		SSHA256:         saltedDigest(SSHA256),
		SSHA512:         saltedDigest(SSHA512),
		SHA1:            plainDigest(SHA1),
		SHA256:          plainDigest(SHA256),
		SHA512:          plainDigest(SHA512),
		PBKDF2:          {check: checkPBKDF2, verify: verifyPBKDF2, split: splitPBKDF2, prepare: preparePBKDF2},
		Argon2ID:        {check: checkArgon2("argon2id"), verify: verifyArgon2, split: splitArgon2, prepare: prepareArgon2},
		Argon2I:         {check: checkArgon2("argon2i"), verify: verifyArgon2, split: splitArgon2, prepare: prepareArgon2},
		WrappedArgon2ID: {check: checkWrapped, verify: verifyWrapped},
	}
}
