package opensrs

import (
	"crypto/rand"
	"strings"
)

// Character classes of unusable passwords, all inside OpenSRS's allowed
// password characters.
const (
	lowers  = "abcdefghijkmnopqrstuvwxyz"
	uppers  = "ABCDEFGHJKLMNPQRSTUVWXYZ"
	digits  = "23456789"
	symbols = "#-!"
)

// unusablePassword returns 40 random letters and digits plus a digit, an
// upper-case letter and a symbol, so it passes OpenSRS's rules. OpenSRS
// refuses a password containing the mailbox name: leaving the name's
// first character out of every class makes that impossible (the domain
// has a dot, which no class has).
func unusablePassword(email string) string {
	local, _, _ := strings.Cut(email, "@")
	drop := func(class string) string {
		if local == "" {
			return class
		}
		first := strings.ToLower(local[:1])
		return strings.Map(func(r rune) rune {
			if strings.ToLower(string(r)) == first {
				return -1
			}
			return r
		}, class)
	}
	all := drop(lowers + uppers + digits)
	var b strings.Builder
	for range 40 {
		b.WriteByte(pick(all))
	}
	b.WriteByte(pick(drop(digits)))
	b.WriteByte(pick(drop(uppers)))
	b.WriteByte(pick(drop(symbols)))
	return b.String()
}

// pick returns a uniformly random byte of class.
func pick(class string) byte {
	var b [1]byte
	for {
		rand.Read(b[:])
		// Rejecting the top of the range keeps the choice uniform.
		if limit := 256 - 256%len(class); int(b[0]) < limit {
			return class[int(b[0])%len(class)]
		}
	}
}
