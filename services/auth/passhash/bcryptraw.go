package passhash

import (
	"encoding/base64"
	"errors"
	"fmt"

	"golang.org/x/crypto/blowfish"
)

// maxBcryptCost refuses bcrypt hashes whose cost would make one sign-in
// take seconds (cost 14 takes about a second here, each step doubles it;
// the format allows 31, which takes hours).
const maxBcryptCost = 14

var errBcryptCost = fmt.Errorf("bcrypt cost out of range 4..%d", maxBcryptCost)

// bcryptAlphabet is bcrypt's base-64 alphabet, which is neither RFC
// 4648's nor crypt(3)'s.
const bcryptAlphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

var bcryptEncoding = base64.NewEncoding(bcryptAlphabet).WithPadding(base64.NoPadding)

// bcryptMagic is "OrpheanBeholderScryDoubt", the block bcrypt encrypts.
var bcryptMagic = []byte("OrpheanBeholderScryDoubt")

// bcryptSettingLen is the length of "$2y$05$" plus the 22-character salt.
const bcryptSettingLen = 29

// bcryptDigest computes bcrypt's encoded digest (the 31 characters after
// the salt) of password under a setting "$2?$NN$<22-character salt>".
// golang.org/x/crypto/bcrypt compares whole hashes only; wrapping a legacy
// hash needs the digest of a given salt. It follows that package step by
// step (the key's trailing NUL, 2^cost expansions, 64 encryptions of the
// magic block, 23 of its 24 bytes encoded), and TestBcryptDigestMatches
// checks it against it.
func bcryptDigest(password []byte, cost int, salt22 string) (string, error) {
	// The salt's last character carries 4 unused bits: decoded leniently,
	// as x/crypto does.
	salt, err := bcryptEncoding.DecodeString(salt22)
	if err != nil || len(salt) != 16 {
		return "", errors.New("bcrypt salt is not 22 characters of base 64")
	}
	if cost < 4 || cost > maxBcryptCost {
		return "", errBcryptCost
	}
	key := append(password[:len(password):len(password)], 0)
	c, err := blowfish.NewSaltedCipher(key, salt)
	if err != nil {
		return "", err
	}
	for i := uint64(0); i < 1<<uint(cost); i++ {
		blowfish.ExpandKey(key, c)
		blowfish.ExpandKey(salt, c)
	}
	block := make([]byte, len(bcryptMagic))
	copy(block, bcryptMagic)
	for i := 0; i < 24; i += 8 {
		for range 64 {
			c.Encrypt(block[i:i+8], block[i:i+8])
		}
	}
	return bcryptEncoding.EncodeToString(block[:23]), nil
}
