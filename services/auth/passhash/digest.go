package passhash

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
)

// digests maps the digest schemes to their hash function; the salted
// variant of each is S + its name.
var digests = map[string]func() hash.Hash{
	SHA1: sha1.New, SSHA: sha1.New,
	SHA256: sha256.New, SSHA256: sha256.New,
	SHA512: sha512.New, SSHA512: sha512.New,
}

// saltedDigest is {SSHA*}: base64(digest(password + salt) + salt), the
// salt being whatever follows the digest.
func saltedDigest(scheme string) verifier {
	size := digests[scheme]().Size()
	return verifier{
		encodable: true,
		split:     splitSalted(scheme),
		prepare:   prepareSalted(scheme),
		check: func(h Hash) error {
			raw, err := decodeDigest(h)
			if err != nil {
				return err
			}
			if len(raw) <= size {
				return fmt.Errorf("%d bytes: want a %d-byte digest and a salt", len(raw), size)
			}
			return nil
		},
		verify: func(password string, h Hash) (bool, error) {
			raw, err := decodeDigest(h)
			if err != nil || len(raw) <= size {
				return false, fmt.Errorf("verify {%s}: %w", scheme, ErrMalformed)
			}
			d := digests[scheme]()
			d.Write([]byte(password))
			d.Write(raw[size:])
			return subtle.ConstantTimeCompare(d.Sum(nil), raw[:size]) == 1, nil
		},
	}
}

// plainDigest is {SHA*}: base64(digest(password)).
func plainDigest(scheme string) verifier {
	size := digests[scheme]().Size()
	return verifier{
		encodable: true,
		split:     splitPlain(scheme),
		prepare:   preparePlain(scheme),
		check: func(h Hash) error {
			raw, err := decodeDigest(h)
			if err != nil {
				return err
			}
			if len(raw) != size {
				return fmt.Errorf("%d bytes: want %d", len(raw), size)
			}
			return nil
		},
		verify: func(password string, h Hash) (bool, error) {
			raw, err := decodeDigest(h)
			if err != nil || len(raw) != size {
				return false, fmt.Errorf("verify {%s}: %w", scheme, ErrMalformed)
			}
			d := digests[scheme]()
			d.Write([]byte(password))
			return subtle.ConstantTimeCompare(d.Sum(nil), raw) == 1, nil
		},
	}
}

func decodeDigest(h Hash) ([]byte, error) {
	if h.Encoding == "HEX" {
		raw, err := hex.DecodeString(h.Data)
		if err != nil {
			return nil, errors.New("not hexadecimal")
		}
		return raw, nil
	}
	raw, err := base64.StdEncoding.DecodeString(h.Data)
	if err != nil {
		return nil, errors.New("not base64")
	}
	return raw, nil
}
