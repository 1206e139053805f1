package passhash

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"

	"github.com/mailferry/mailferry/services/auth/unixcrypt"
)

// WrappedArgon2ID is the scheme of an imported legacy hash wrapped in
// argon2id: the legacy scheme's setting (salt, rounds) is kept, its digest
// is replaced by argon2id of that digest. Verifying a password computes
// the legacy digest of the password under the setting, then argon2id of
// it: argon2id(legacy(password)). The legacy digest itself is never
// stored, so a copy of the bucket costs an attacker argon2id per guess,
// and every account's verification costs one argon2id with the service's
// parameters, whatever its legacy scheme.
//
// The form is {WRAPPED-ARGON2ID}SCHEME$base64(setting)$argon2id$v=19$m=..,t=..,p=..$salt$key,
// a notation of this service only: Dovecot never reads it.
const WrappedArgon2ID = "WRAPPED-ARGON2ID"

// Wrap returns legacy (a hash in any verified scheme) wrapped in argon2id
// with parameters a. A hash already wrapped is returned unchanged.
func (a Argon2Params) Wrap(legacy string) (string, error) {
	h, err := Parse(legacy)
	if err != nil {
		return "", err
	}
	if h.Scheme == WrappedArgon2ID {
		return legacy, nil
	}
	setting, digest, err := split(h)
	if err != nil {
		return "", fmt.Errorf("wrap {%s}: %w", h.Scheme, err)
	}
	p := phc{variant: "argon2id", params: a, salt: make([]byte, argon2SaltLen)}
	rand.Read(p.salt)
	p.key = argon2.IDKey(digest, p.salt, a.Time, a.MemoryKiB, a.Threads, argon2KeyLen)
	return wrapped{scheme: h.Scheme, setting: setting, outer: p}.String(), nil
}

// CheckWrappable checks that legacy is a hash Wrap accepts: one this
// package verifies, within its cost limits, in a form it can split into
// setting and digest. It computes nothing.
func CheckWrappable(legacy string) error {
	h, err := Parse(legacy)
	if err != nil {
		return err
	}
	if h.Scheme == WrappedArgon2ID {
		return nil
	}
	setting, _, err := split(h)
	if err != nil {
		return fmt.Errorf("%w: {%s}: %v", ErrMalformed, h.Scheme, err)
	}
	if _, err := verifiers[h.Scheme].prepare(setting); err != nil {
		return fmt.Errorf("%w: {%s}: %v", ErrMalformed, h.Scheme, err)
	}
	return nil
}

// Wraps reports whether stored is legacy wrapped (by Wrap, with any salt):
// an import can then tell an unchanged legacy hash from a new one without
// the password. It costs one argon2id.
func Wraps(stored, legacy string) bool {
	sh, err := Parse(stored)
	if err != nil || sh.Scheme != WrappedArgon2ID {
		return false
	}
	w, err := parseWrapped(sh.Data)
	if err != nil {
		return false
	}
	lh, err := Parse(legacy)
	if err != nil || lh.Scheme != w.scheme {
		return false
	}
	setting, digest, err := split(lh)
	if err != nil || setting != w.setting {
		return false
	}
	return subtle.ConstantTimeCompare(w.outer.derive(string(digest)), w.outer.key) == 1
}

// Argon2Of returns the argon2id parameters a verification of stored
// computes with: those of an {ARGON2ID} hash or of a wrapped hash's outer
// argon2id. ok is false for other schemes.
func Argon2Of(stored string) (p Argon2Params, ok bool) {
	h, err := Parse(stored)
	if err != nil {
		return Argon2Params{}, false
	}
	switch h.Scheme {
	case Argon2ID:
		ph, err := parsePHC(h.Data)
		return ph.params, err == nil
	case WrappedArgon2ID:
		w, err := parseWrapped(h.Data)
		return w.outer.params, err == nil
	}
	return Argon2Params{}, false
}

// MemoryKiB is the memory one verification of stored takes, in KiB: what
// its argon2 computations need (an imported argon2 hash wrapped in
// argon2id needs both), or 0 for schemes that need next to none.
func MemoryKiB(stored string) uint64 {
	h, err := Parse(stored)
	if err != nil {
		return 0
	}
	switch h.Scheme {
	case Argon2ID, Argon2I:
		ph, err := parsePHC(h.Data)
		if err != nil {
			return 0
		}
		return uint64(ph.params.MemoryKiB)
	case WrappedArgon2ID:
		w, err := parseWrapped(h.Data)
		if err != nil {
			return 0
		}
		m := uint64(w.outer.params.MemoryKiB)
		if w.scheme == Argon2ID || w.scheme == Argon2I {
			if inner, err := innerArgon2(w.setting); err == nil {
				m += uint64(inner.params.MemoryKiB)
			}
		}
		return m
	}
	return 0
}

// wrapped is a parsed {WRAPPED-ARGON2ID} hash.
type wrapped struct {
	scheme  string
	setting string
	outer   phc
	// inner computes the legacy digest (set by parseWrapped).
	inner digester
}

func (w wrapped) String() string {
	return Hash{Scheme: WrappedArgon2ID, Data: w.scheme + "$" + base64.RawStdEncoding.EncodeToString([]byte(w.setting)) + w.outer.String()}.String()
}

func parseWrapped(data string) (wrapped, error) {
	scheme, rest, ok := strings.Cut(data, "$")
	if !ok {
		return wrapped{}, errors.New("want SCHEME$setting$argon2id$...")
	}
	enc, rest, ok := strings.Cut(rest, "$")
	if !ok {
		return wrapped{}, errors.New("want SCHEME$setting$argon2id$...")
	}
	setting, err := base64.RawStdEncoding.DecodeString(enc)
	if err != nil {
		return wrapped{}, errors.New("setting is not base64")
	}
	v, ok := verifiers[scheme]
	if !ok || v.prepare == nil {
		return wrapped{}, fmt.Errorf("inner scheme %q: %w", scheme, ErrUnsupported)
	}
	outer, err := parsePHC("$" + rest)
	if err != nil {
		return wrapped{}, fmt.Errorf("outer argon2id: %w", err)
	}
	if outer.variant != "argon2id" {
		return wrapped{}, fmt.Errorf("outer variant %q: want argon2id", outer.variant)
	}
	w := wrapped{scheme: scheme, setting: string(setting), outer: outer}
	if w.inner, err = v.prepare(w.setting); err != nil {
		return wrapped{}, fmt.Errorf("inner {%s} setting: %w", scheme, err)
	}
	return w, nil
}

func checkWrapped(h Hash) error {
	_, err := parseWrapped(h.Data)
	return err
}

func verifyWrapped(password string, h Hash) (bool, error) {
	w, err := parseWrapped(h.Data)
	if err != nil {
		return false, fmt.Errorf("verify {%s}: %w", WrappedArgon2ID, ErrMalformed)
	}
	return subtle.ConstantTimeCompare(w.outer.derive(string(w.inner(password))), w.outer.key) == 1, nil
}

// split divides a legacy hash into the setting its scheme computes with
// and the digest it stores.
func split(h Hash) (setting string, digest []byte, err error) {
	v := verifiers[h.Scheme]
	if v.split == nil {
		return "", nil, ErrUnsupported
	}
	return v.split(h)
}

// A digester computes a legacy scheme's digest of a password under a
// setting checked beforehand.
type digester func(password string) []byte

// Crypt family: the setting is everything up to the digest, the digest
// its encoded characters (crypt's alphabet has no '$').

func splitCrypt(h Hash) (string, []byte, error) {
	if isBcrypt(h.Data) {
		if len(h.Data) != bcryptSettingLen+31 {
			return "", nil, errors.New("not a bcrypt hash")
		}
		return h.Data[:bcryptSettingLen], []byte(h.Data[bcryptSettingLen:]), nil
	}
	i := strings.LastIndexByte(h.Data, '$')
	if i < 0 || i == len(h.Data)-1 {
		return "", nil, errors.New("no digest")
	}
	return h.Data[:i+1], []byte(h.Data[i+1:]), nil
}

func prepareCrypt(setting string) (digester, error) {
	if isBcrypt(setting) {
		if len(setting) != bcryptSettingLen || setting[6] != '$' {
			return nil, errors.New("bcrypt setting: want $2y$NN$ and 22 characters of salt")
		}
		cost, err := strconv.Atoi(setting[4:6])
		if err != nil || cost < 4 || cost > maxBcryptCost {
			return nil, fmt.Errorf("bcrypt cost: want 4..%d", maxBcryptCost)
		}
		salt := setting[7:]
		if _, err := bcryptDigest(nil, 0, salt); err != nil && !errors.Is(err, errBcryptCost) {
			return nil, err
		}
		return func(password string) []byte {
			d, _ := bcryptDigest([]byte(password), cost, salt)
			return []byte(d)
		}, nil
	}
	if err := unixcrypt.Check(setting); err != nil {
		return nil, err
	}
	return func(password string) []byte {
		full, _ := unixcrypt.Hash([]byte(password), setting)
		return []byte(full[strings.LastIndexByte(full, '$')+1:])
	}, nil
}

// Digests: {SSHA*} keeps its salt as the setting, {SHA*} has none.

func splitSalted(scheme string) func(Hash) (string, []byte, error) {
	return func(h Hash) (string, []byte, error) {
		size := digests[scheme]().Size()
		raw, err := decodeDigest(h)
		if err != nil || len(raw) <= size {
			return "", nil, errors.New("not a salted digest")
		}
		return string(raw[size:]), raw[:size], nil
	}
}

func prepareSalted(scheme string) func(string) (digester, error) {
	return func(setting string) (digester, error) {
		if setting == "" {
			return nil, errors.New("salted digest without a salt")
		}
		return func(password string) []byte {
			d := digests[scheme]()
			d.Write([]byte(password))
			d.Write([]byte(setting))
			return d.Sum(nil)
		}, nil
	}
}

func splitPlain(scheme string) func(Hash) (string, []byte, error) {
	return func(h Hash) (string, []byte, error) {
		raw, err := decodeDigest(h)
		if err != nil || len(raw) != digests[scheme]().Size() {
			return "", nil, errors.New("not a digest")
		}
		return "", raw, nil
	}
}

func preparePlain(scheme string) func(string) (digester, error) {
	return func(setting string) (digester, error) {
		if setting != "" {
			return nil, errors.New("unsalted digest with a setting")
		}
		return func(password string) []byte {
			d := digests[scheme]()
			d.Write([]byte(password))
			return d.Sum(nil)
		}, nil
	}
}

// PBKDF2: the setting is $1$salt$rounds$ and the digest's length.

func splitPBKDF2(h Hash) (string, []byte, error) {
	p, err := parsePBKDF2(h.Data)
	if err != nil {
		return "", nil, err
	}
	return fmt.Sprintf("$1$%s$%d$%d", p.salt, p.rounds, len(p.digest)), p.digest, nil
}

func preparePBKDF2(setting string) (digester, error) {
	i := strings.LastIndexByte(setting, '$')
	if i < 0 {
		return nil, errors.New("want $1$salt$rounds$length")
	}
	n, err := strconv.Atoi(setting[i+1:])
	if err != nil || n < 1 || n > 64 {
		return nil, errors.New("digest length out of range")
	}
	p, err := parsePBKDF2(setting[:i+1] + strings.Repeat("00", n))
	if err != nil {
		return nil, err
	}
	return func(password string) []byte {
		key, _ := pbkdf2.Key(sha1.New, password, []byte(p.salt), p.rounds, n)
		return key
	}, nil
}

// Argon2: the setting is the PHC string up to the key, then the key's
// length.

func splitArgon2(h Hash) (string, []byte, error) {
	p, err := parsePHC(h.Data)
	if err != nil {
		return "", nil, err
	}
	s := p.String()
	return s[:strings.LastIndexByte(s, '$')+1] + strconv.Itoa(len(p.key)), p.key, nil
}

// innerArgon2 parses an argon2 setting; its key is zeros of the length.
func innerArgon2(setting string) (phc, error) {
	i := strings.LastIndexByte(setting, '$')
	if i < 0 {
		return phc{}, errors.New("want a PHC string and a length")
	}
	n, err := strconv.Atoi(setting[i+1:])
	if err != nil || n < 16 || n > 64 {
		return phc{}, errors.New("key length out of range")
	}
	return parsePHC(setting[:i+1] + base64.RawStdEncoding.EncodeToString(make([]byte, n)))
}

func prepareArgon2(setting string) (digester, error) {
	p, err := innerArgon2(setting)
	if err != nil {
		return nil, err
	}
	return p.derive, nil
}
