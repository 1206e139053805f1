package passhash

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/mailferry/mailferry/services/auth/unixcrypt"
)

// bcryptPrefixes are the bcrypt versions Dovecot and libxcrypt write.
var bcryptPrefixes = []string{"$2a$", "$2b$", "$2y$", "$2x$"}

func isBcrypt(data string) bool {
	for _, p := range bcryptPrefixes {
		if strings.HasPrefix(data, p) {
			return true
		}
	}
	return false
}

func checkBcrypt(h Hash) error {
	if !isBcrypt(h.Data) {
		return errors.New("want a $2a$, $2b$ or $2y$ hash")
	}
	cost, err := bcrypt.Cost([]byte(h.Data))
	if err != nil {
		return errors.New("not a bcrypt hash")
	}
	if cost > maxBcryptCost {
		// Each step doubles the work; 31 would take hours per sign-in.
		return fmt.Errorf("cost %d: want at most %d", cost, maxBcryptCost)
	}
	return nil
}

func verifyBcrypt(password string, h Hash) (bool, error) {
	if err := checkBcrypt(h); err != nil {
		return false, fmt.Errorf("verify {%s}: %w", h.Scheme, ErrMalformed)
	}
	err := bcrypt.CompareHashAndPassword([]byte(h.Data), []byte(password))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword), errors.Is(err, bcrypt.ErrPasswordTooLong):
		return false, nil
	}
	return false, fmt.Errorf("verify {%s}: %w", h.Scheme, ErrMalformed)
}

// checkCrypt accepts crypt strings with the given prefix and a salt and
// digest part.
func checkCrypt(prefix string) func(Hash) error {
	return func(h Hash) error {
		if !strings.HasPrefix(h.Data, prefix) {
			return fmt.Errorf("want a %s hash", prefix)
		}
		if strings.Count(h.Data, "$") < 3 {
			return errors.New("no salt and digest")
		}
		// Rounds above the cap: a crafted line must not cost minutes.
		// The error shows the scheme and the rounds, not the hash.
		return unixcrypt.Check(h.Data)
	}
}

func verifyCrypt(password string, h Hash) (bool, error) {
	ok, err := unixcrypt.Verify([]byte(password), h.Data)
	if err != nil {
		return false, fmt.Errorf("verify {%s}: %w", h.Scheme, ErrMalformed)
	}
	return ok, nil
}

func checkAnyCrypt(h Hash) error {
	switch {
	case isBcrypt(h.Data):
		return checkBcrypt(h)
	case unixcrypt.Supported(h.Data):
		return checkCrypt(h.Data[:3])(h)
	}
	// DES crypt and yescrypt are not supported: the platforms
	// never wrote them, and DES would accept only 8 characters anyway.
	return errors.New("crypt variant not supported (want $1$, $5$, $6$ or $2y$)")
}

func verifyAnyCrypt(password string, h Hash) (bool, error) {
	if isBcrypt(h.Data) {
		return verifyBcrypt(password, h)
	}
	return verifyCrypt(password, h)
}
