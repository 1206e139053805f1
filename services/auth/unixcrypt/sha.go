package unixcrypt

import (
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// Rounds limits and default of SHA-crypt. The specification clamps counts
// below MinRounds and above 999,999,999; this package refuses counts above
// MaxRounds instead, as it refuses PBKDF2 and argon2 costs above theirs:
// a hash read from an import must not make one sign-in cost minutes of
// CPU (999,999,999 rounds of SHA-512 take about eight minutes here).
const (
	DefaultRounds = 5000
	MinRounds     = 1000
	MaxRounds     = 1_000_000
)

// ErrRounds is returned for a setting whose rounds exceed MaxRounds.
var ErrRounds = fmt.Errorf("rounds above %d", MaxRounds)

// maxSalt is SHA-crypt's salt length limit; longer salts are cut.
const maxSalt = 16

// variant is what differs between SHA-256-crypt and SHA-512-crypt: the
// hash, the prefix and the byte order of the final encoding.
type variant struct {
	prefix string
	new    func() hash.Hash
	// order lists byte triples encoded four characters each; tail is the
	// last, shorter group.
	order [][3]int
	tail  [3]int
	tailN int
}

var sha256Variant = &variant{
	prefix: PrefixSHA256,
	new:    sha256.New,
	order: [][3]int{
		{0, 10, 20}, {21, 1, 11}, {12, 22, 2}, {3, 13, 23}, {24, 4, 14},
		{15, 25, 5}, {6, 16, 26}, {27, 7, 17}, {18, 28, 8}, {9, 19, 29},
	},
	tail:  [3]int{-1, 31, 30},
	tailN: 3,
}

var sha512Variant = &variant{
	prefix: PrefixSHA512,
	new:    sha512.New,
	order: [][3]int{
		{0, 21, 42}, {22, 43, 1}, {44, 2, 23}, {3, 24, 45}, {25, 46, 4},
		{47, 5, 26}, {6, 27, 48}, {28, 49, 7}, {50, 8, 29}, {9, 30, 51},
		{31, 52, 10}, {53, 11, 32}, {12, 33, 54}, {34, 55, 13}, {56, 14, 35},
		{15, 36, 57}, {37, 58, 16}, {59, 17, 38}, {18, 39, 60}, {40, 61, 19},
		{62, 20, 41},
	},
	tail:  [3]int{-1, -1, 63},
	tailN: 2,
}

// shaSetting is a parsed SHA-crypt setting.
type shaSetting struct {
	rounds         int
	explicitRounds bool
	salt           []byte
}

func parseSHASetting(setting string, v *variant) (shaSetting, error) {
	rest := setting[len(v.prefix):]
	s := shaSetting{rounds: DefaultRounds}
	if opt, ok := strings.CutPrefix(rest, "rounds="); ok {
		num, after, found := strings.Cut(opt, "$")
		if !found {
			return s, errSetting(setting, "rounds= without salt")
		}
		n, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			return s, errSetting(setting, "rounds is not a number")
		}
		if n > MaxRounds {
			return s, fmt.Errorf("%w: %w", errSetting(setting, "rounds "+num), ErrRounds)
		}
		// The specification clamps counts that are too low rather than
		// failing.
		s.rounds = int(max(n, MinRounds))
		s.explicitRounds = true
		rest = after
	}
	s.salt = []byte(cutSalt(rest, maxSalt))
	return s, nil
}

// shaCrypt follows the numbered steps of Drepper's specification.
func shaCrypt(password []byte, setting string, v *variant) (string, error) {
	s, err := parseSHASetting(setting, v)
	if err != nil {
		return "", err
	}
	digest := shaDigest(password, s, v)

	out := []byte(v.prefix)
	if s.explicitRounds {
		out = append(out, "rounds="...)
		out = strconv.AppendInt(out, int64(s.rounds), 10)
		out = append(out, '$')
	}
	out = append(out, s.salt...)
	out = append(out, '$')
	for _, t := range v.order {
		out = encode24(out, digest[t[0]], digest[t[1]], digest[t[2]], 4)
	}
	out = encode24(out, byteAt(digest, v.tail[0]), byteAt(digest, v.tail[1]), byteAt(digest, v.tail[2]), v.tailN)
	return string(out), nil
}

func byteAt(b []byte, i int) byte {
	if i < 0 {
		return 0
	}
	return b[i]
}

func shaDigest(password []byte, s shaSetting, v *variant) []byte {
	size := v.new().Size()

	// Steps 4-8: digest B of password, salt, password.
	b := v.new()
	b.Write(password)
	b.Write(s.salt)
	b.Write(password)
	db := b.Sum(nil)

	// Steps 1-3 and 9-12: digest A.
	a := v.new()
	a.Write(password)
	a.Write(s.salt)
	n := len(password)
	for ; n > size; n -= size {
		a.Write(db)
	}
	a.Write(db[:n])
	for n = len(password); n > 0; n >>= 1 {
		if n&1 != 0 {
			a.Write(db)
		} else {
			a.Write(password)
		}
	}
	da := a.Sum(nil)

	// Steps 13-16: byte sequence P from the password repeated.
	dp := v.new()
	for range len(password) {
		dp.Write(password)
	}
	p := repeatTo(dp.Sum(nil), len(password))

	// Steps 17-20: byte sequence S from the salt repeated 16+A[0] times.
	ds := v.new()
	for range 16 + int(da[0]) {
		ds.Write(s.salt)
	}
	salt := repeatTo(ds.Sum(nil), len(s.salt))

	// Step 21: the rounds.
	c := da
	for i := 0; i < s.rounds; i++ {
		r := v.new()
		if i&1 != 0 {
			r.Write(p)
		} else {
			r.Write(c)
		}
		if i%3 != 0 {
			r.Write(salt)
		}
		if i%7 != 0 {
			r.Write(p)
		}
		if i&1 != 0 {
			r.Write(c)
		} else {
			r.Write(p)
		}
		c = r.Sum(c[:0])
	}
	return c
}

// repeatTo returns n bytes of digest repeated.
func repeatTo(digest []byte, n int) []byte {
	out := make([]byte, 0, n)
	for len(out) < n {
		out = append(out, digest[:min(len(digest), n-len(out))]...)
	}
	return out
}
