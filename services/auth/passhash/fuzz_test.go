package passhash

import (
	"strings"
	"testing"
)

// FuzzParseAndWrap feeds arbitrary stored hashes to the parser and to
// wrapping: nothing may panic, an error never quotes what follows the
// scheme (it may name the scheme), and what
// CheckWrappable accepts wraps into a hash that parses, carries the
// wrapping parameters and is recognised as wrapping its source.
func FuzzParseAndWrap(f *testing.F) {
	for _, h := range doveadmHashes {
		f.Add(h)
	}
	f.Add("{WRAPPED-ARGON2ID}SHA512-CRYPT$JDYkcm91bmRzPTk5OTk5OTk5OSRzYWx0JA$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5")
	f.Add("{PBKDF2}$1$salt$5000$00ff")
	f.Add("{CRYPT}$2y$04$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz01234")
	tiny := Argon2Params{Time: 1, MemoryKiB: 8, Threads: 1}
	f.Fuzz(func(t *testing.T, stored string) {
		_, perr := Parse(stored)
		err := CheckWrappable(stored)
		name, data, _ := strings.Cut(stored, "}")
		for _, e := range []error{perr, err} {
			if e == nil {
				continue
			}
			// What follows "want" is the fixed shape a hash must have,
			// not the stored value: a hash may begin like it.
			msg, _, _ := strings.Cut(e.Error(), "want ")
			// The scheme may be named, as {SCHEME} (upper case, without
			// an encoding suffix), even when the hash repeats its text.
			scheme := strings.ToUpper(strings.TrimPrefix(name, "{"))
			base, _, _ := strings.Cut(scheme, ".")
			msg = strings.ReplaceAll(strings.ReplaceAll(msg, "{"+scheme+"}", "{}"), "{"+base+"}", "{}")
			if len(data) >= 12 && strings.Contains(msg, data) && !strings.Contains(strings.ToUpper(name), strings.ToUpper(data)) {
				t.Fatalf("error quotes the hash: %v", e)
			}
		}
		if err != nil {
			return
		}
		w, err := tiny.Wrap(stored)
		if err != nil {
			t.Fatalf("CheckWrappable accepted what Wrap refuses: %v", err)
		}
		if _, err := Parse(w); err != nil {
			t.Fatalf("wrapped hash does not parse: %v", err)
		}
		if h, _ := Parse(stored); h.Scheme == WrappedArgon2ID {
			return
		}
		if p, ok := Argon2Of(w); !ok || p != tiny {
			t.Fatalf("Argon2Of(wrapped) = %+v, %v", p, ok)
		}
		if !Wraps(w, stored) {
			t.Fatal("Wraps(wrapped, source) = false")
		}
	})
}
