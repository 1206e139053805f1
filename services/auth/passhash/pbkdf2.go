package passhash

import (
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// maxPBKDF2Rounds refuses hashes that would take minutes to check: a
// crafted import line must not become a denial of service.
const maxPBKDF2Rounds = 10_000_000

// pbkdf2Hash is Dovecot's {PBKDF2}$1$salt$rounds$hexdigest: PBKDF2 with
// HMAC-SHA1, the salt used as the literal characters, a 20-byte key.
type pbkdf2Hash struct {
	salt   string
	rounds int
	digest []byte
}

func parsePBKDF2(data string) (pbkdf2Hash, error) {
	parts := strings.Split(data, "$")
	if len(parts) != 5 || parts[0] != "" || parts[1] != "1" {
		return pbkdf2Hash{}, errors.New("want $1$salt$rounds$hexdigest")
	}
	rounds, err := strconv.Atoi(parts[3])
	if err != nil || rounds < 1 || rounds > maxPBKDF2Rounds {
		return pbkdf2Hash{}, fmt.Errorf("rounds %q: want 1..%d", parts[3], maxPBKDF2Rounds)
	}
	digest, err := hex.DecodeString(parts[4])
	if err != nil || len(digest) == 0 {
		return pbkdf2Hash{}, errors.New("digest is not hexadecimal")
	}
	return pbkdf2Hash{salt: parts[2], rounds: rounds, digest: digest}, nil
}

func checkPBKDF2(h Hash) error {
	_, err := parsePBKDF2(h.Data)
	return err
}

func verifyPBKDF2(password string, h Hash) (bool, error) {
	p, err := parsePBKDF2(h.Data)
	if err != nil {
		return false, fmt.Errorf("verify {%s}: %w", PBKDF2, ErrMalformed)
	}
	key, err := pbkdf2.Key(sha1.New, password, []byte(p.salt), p.rounds, len(p.digest))
	if err != nil {
		return false, fmt.Errorf("verify {%s}: %w", PBKDF2, err)
	}
	return subtle.ConstantTimeCompare(key, p.digest) == 1, nil
}
