// Package unixcrypt implements the crypt(3) password hashes that legacy
// mail platforms store and Dovecot reads: MD5-crypt ("$1$", Poul-Henning
// Kamp's FreeBSD scheme) and SHA-crypt ("$5$" SHA-256 and "$6$" SHA-512,
// Ulrich Drepper's specification "Unix crypt using SHA-256 and SHA-512").
//
// Hash computes the full crypt string for a password and a setting (the
// part of an existing hash up to the salt, or the whole hash); Verify
// compares in constant time. Both are pure Go and allocate no cgo.
package unixcrypt

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
)

// alphabet is crypt(3)'s base-64 alphabet, which is not RFC 4648's.
const alphabet = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// Prefixes of the supported schemes.
const (
	PrefixMD5    = "$1$"
	PrefixSHA256 = "$5$"
	PrefixSHA512 = "$6$"
)

// ErrUnsupported is returned for a setting of another crypt scheme.
var ErrUnsupported = errors.New("unsupported crypt scheme")

// Hash returns the crypt string of password under setting, which is
// either a bare setting ("$6$rounds=10000$salt") or a complete hash whose
// setting is reused.
func Hash(password []byte, setting string) (string, error) {
	switch {
	case strings.HasPrefix(setting, PrefixMD5):
		return md5Crypt(password, setting), nil
	case strings.HasPrefix(setting, PrefixSHA256):
		return shaCrypt(password, setting, sha256Variant)
	case strings.HasPrefix(setting, PrefixSHA512):
		return shaCrypt(password, setting, sha512Variant)
	}
	return "", ErrUnsupported
}

// Verify reports whether password matches hash, comparing in constant
// time. An error means the hash cannot be checked at all.
func Verify(password []byte, hash string) (bool, error) {
	got, err := Hash(password, hash)
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(hash)) == 1, nil
}

// Check validates the setting of hash (or of a bare setting) without
// hashing anything: the scheme is supported and, for SHA-crypt, the rounds
// are at most MaxRounds.
func Check(hash string) error {
	switch {
	case strings.HasPrefix(hash, PrefixMD5):
		return nil
	case strings.HasPrefix(hash, PrefixSHA256):
		_, err := parseSHASetting(hash, sha256Variant)
		return err
	case strings.HasPrefix(hash, PrefixSHA512):
		_, err := parseSHASetting(hash, sha512Variant)
		return err
	}
	return ErrUnsupported
}

// Supported reports whether hash has a prefix this package can check.
func Supported(hash string) bool {
	for _, p := range []string{PrefixMD5, PrefixSHA256, PrefixSHA512} {
		if strings.HasPrefix(hash, p) {
			return true
		}
	}
	return false
}

// encode24 appends n characters for the 24 bits b2 b1 b0, least
// significant six bits first.
func encode24(dst []byte, b2, b1, b0 byte, n int) []byte {
	w := uint(b2)<<16 | uint(b1)<<8 | uint(b0)
	for ; n > 0; n-- {
		dst = append(dst, alphabet[w&0x3f])
		w >>= 6
	}
	return dst
}

// cutSalt returns the salt of a setting after prefix and options: up to
// the next '$' and at most max bytes.
func cutSalt(rest string, max int) string {
	if i := strings.IndexByte(rest, '$'); i >= 0 {
		rest = rest[:i]
	}
	if len(rest) > max {
		rest = rest[:max]
	}
	return rest
}

func errSetting(setting string, why string) error {
	// The setting holds no secret, but a whole hash may be passed: show
	// only its scheme.
	p := setting
	if len(p) > 3 {
		p = p[:3]
	}
	return fmt.Errorf("crypt setting %s...: %s", p, why)
}
