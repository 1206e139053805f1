package passhash

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Bounds on argon2 parameters read from a hash: a crafted hash must not
// make one verification take gigabytes or minutes.
const (
	maxArgon2MemoryKiB = 1 << 20
	maxArgon2Time      = 64
)

const (
	argon2SaltLen = 16
	argon2KeyLen  = 32
)

// Argon2Params are the cost parameters of new argon2id hashes.
type Argon2Params struct {
	Time      uint32
	MemoryKiB uint32
	Threads   uint8
}

// phc is a parsed PHC string $argon2id$v=19$m=..,t=..,p=..$salt$key.
type phc struct {
	variant string
	params  Argon2Params
	salt    []byte
	key     []byte
}

func parsePHC(data string) (phc, error) {
	parts := strings.Split(data, "$")
	if len(parts) != 6 || parts[0] != "" {
		return phc{}, errors.New("want $argon2id$v=19$m=..,t=..,p=..$salt$hash")
	}
	p := phc{variant: parts[1]}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return phc{}, fmt.Errorf("version %q: want v=%d", parts[2], argon2.Version)
	}
	var m, t, th uint64
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &th); err != nil {
		return phc{}, errors.New("parameters: want m=..,t=..,p=..")
	}
	if m < 8 || m > maxArgon2MemoryKiB || t < 1 || t > maxArgon2Time || th < 1 || th > 255 || m < 8*th {
		return phc{}, errors.New("parameters out of range")
	}
	p.params = Argon2Params{Time: uint32(t), MemoryKiB: uint32(m), Threads: uint8(th)}
	var err error
	if p.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(p.salt) < 8 {
		return phc{}, errors.New("salt: want base64 of at least 8 bytes")
	}
	if p.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(p.key) < 16 {
		return phc{}, errors.New("hash: want base64 of at least 16 bytes")
	}
	return p, nil
}

func checkArgon2(variant string) func(Hash) error {
	return func(h Hash) error {
		p, err := parsePHC(h.Data)
		if err != nil {
			return err
		}
		if p.variant != variant {
			return fmt.Errorf("variant %q: want %s", p.variant, variant)
		}
		return nil
	}
}

func verifyArgon2(password string, h Hash) (bool, error) {
	p, err := parsePHC(h.Data)
	if err != nil {
		return false, fmt.Errorf("verify {%s}: %w", h.Scheme, ErrMalformed)
	}
	return subtle.ConstantTimeCompare(p.derive(password), p.key) == 1, nil
}

func (p phc) derive(password string) []byte {
	if p.variant == "argon2i" {
		return argon2.Key([]byte(password), p.salt, p.params.Time, p.params.MemoryKiB, p.params.Threads, uint32(len(p.key)))
	}
	return argon2.IDKey([]byte(password), p.salt, p.params.Time, p.params.MemoryKiB, p.params.Threads, uint32(len(p.key)))
}

// String is the PHC form Dovecot and libsodium read.
func (p phc) String() string {
	return fmt.Sprintf("$%s$v=%d$m=%d,t=%d,p=%d$%s$%s", p.variant, argon2.Version,
		p.params.MemoryKiB, p.params.Time, p.params.Threads,
		base64.RawStdEncoding.EncodeToString(p.salt), base64.RawStdEncoding.EncodeToString(p.key))
}

// Hash returns a new {ARGON2ID} hash of password with a random salt, in
// the PHC form Dovecot and libsodium read.
func (a Argon2Params) Hash(password string) string {
	p := phc{variant: "argon2id", params: a, salt: make([]byte, argon2SaltLen)}
	rand.Read(p.salt)
	p.key = make([]byte, argon2KeyLen) // derive takes the key length from it
	p.key = p.derive(password)
	return Hash{Scheme: Argon2ID, Data: p.String()}.String()
}

// NeedsUpdate reports whether stored should be replaced after a
// successful verification, as passlib's verify_and_update does: any
// scheme but argon2id, or argon2id weaker than a in any parameter.
func (a Argon2Params) NeedsUpdate(stored string) bool {
	h, err := Parse(stored)
	if err != nil || h.Scheme != Argon2ID {
		return true
	}
	p, err := parsePHC(h.Data)
	if err != nil {
		return true
	}
	return p.params.Time < a.Time || p.params.MemoryKiB < a.MemoryKiB || p.params.Threads < a.Threads
}
