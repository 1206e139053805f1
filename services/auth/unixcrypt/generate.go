package unixcrypt

import (
	"crypto/rand"
	"fmt"
	"strconv"
)

// Generate hashes password with a fresh random salt under prefix
// (PrefixSHA256 or PrefixSHA512; MD5-crypt is too weak to write). rounds 0
// means DefaultRounds, which is then left out of the setting as Dovecot's
// own doveadm pw does.
func Generate(password []byte, prefix string, rounds int) (string, error) {
	if prefix != PrefixSHA256 && prefix != PrefixSHA512 {
		return "", fmt.Errorf("generate %q: %w", prefix, ErrUnsupported)
	}
	setting := prefix
	if rounds != 0 && rounds != DefaultRounds {
		setting += "rounds=" + strconv.Itoa(rounds) + "$"
	}
	return Hash(password, setting+rand.Text()[:maxSalt])
}
