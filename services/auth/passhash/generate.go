package passhash

import (
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"fmt"

	"golang.org/x/crypto/bcrypt"

	"github.com/mailferry/mailferry/services/auth/unixcrypt"
)

// bcryptCost of new BLF-CRYPT hashes; Dovecot's doveadm writes 5, which is
// too cheap for a hash that may leak.
const bcryptCost = 12

// Generate returns a new hash of password in scheme, one Dovecot's passdb
// accepts: SHA512-CRYPT, SHA256-CRYPT, BLF-CRYPT, SSHA512 or ARGON2ID (with
// argon's parameters).
func Generate(password, scheme string, argon Argon2Params) (string, error) {
	switch scheme {
	case SHA512Crypt, SHA256Crypt:
		prefix := unixcrypt.PrefixSHA512
		if scheme == SHA256Crypt {
			prefix = unixcrypt.PrefixSHA256
		}
		h, err := unixcrypt.Generate([]byte(password), prefix, 0)
		if err != nil {
			return "", fmt.Errorf("generate {%s}: %w", scheme, err)
		}
		return Hash{Scheme: scheme, Data: h}.String(), nil
	case BLFCrypt:
		h, err := bcrypt.GenerateFromPassword([]byte(password), bcryptCost)
		if err != nil {
			// Only a password over bcrypt's 72 bytes fails.
			return "", fmt.Errorf("generate {%s}: %w", scheme, err)
		}
		return Hash{Scheme: scheme, Data: string(h)}.String(), nil
	case SSHA512:
		salt := make([]byte, 16)
		rand.Read(salt)
		d := sha512.New()
		d.Write([]byte(password))
		d.Write(salt)
		return Hash{Scheme: scheme, Data: base64.StdEncoding.EncodeToString(append(d.Sum(nil), salt...))}.String(), nil
	case Argon2ID:
		return argon.Hash(password), nil
	}
	return "", fmt.Errorf("generate {%s}: %w", scheme, ErrUnsupported)
}
