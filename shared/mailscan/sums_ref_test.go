package mailscan

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// refSums are the three fingerprints computed the plain way, byte by
// byte over the whole message: what Sums must give however its input is
// cut into pieces.
func refSums(b []byte) (exact, lines, loose string) {
	var norm []byte
	crs := 0
	for _, c := range b {
		switch c {
		case '\r':
			crs++
		case '\n':
			norm, crs = append(norm, '\r', '\n'), 0
		default:
			for ; crs > 0; crs-- {
				norm = append(norm, '\r')
			}
			norm = append(norm, c)
		}
	}
	for ; crs > 0; crs-- {
		norm = append(norm, '\r')
	}
	var lf []byte
	body, lineLen := false, 0
	for i, c := range norm {
		if !(c == '\r' && (i+1 == len(norm) || norm[i+1] != '\n')) {
			lf = append(lf, looseByte(c, body))
		}
		body, lineLen = headerState(c, body, lineLen)
	}
	sum := func(p []byte) string { s := sha256.Sum256(p); return hex.EncodeToString(s[:]) }
	exact, lines = sum(b), sum(norm)
	if !bytes.Equal(lf, norm) {
		loose = sum(lf)
	}
	return exact, lines, loose
}

var sumSeeds = []string{
	"From: a\r\nSubject: plain\r\n\r\nbody line\r\nmore\r\n",
	"From: a\nSubject: bare LF\n\nbody\n",
	"From: a\r\n\r\nbody\r\r\nCR CR LF\r\n",
	"From: a\r\n\r\nbody with \x00 NUL\r\n",
	"From: J\xc3\xb6rg\r\n\r\n8-bit header\r\n",
	"From: a\r\n\r\nends with a bare CR\r",
	"From: a\r\n\r\na bare\rCR inside\r\n",
	"no header end\r\nat all",
	"\r\n\r\n",
	"",
}

func checkSums(t *testing.T, msg []byte, cuts []int) {
	t.Helper()
	s := NewSums()
	prev := 0
	for _, c := range cuts {
		if c > prev && c < len(msg) {
			s.Write(msg[prev:c])
			prev = c
		}
	}
	s.Write(msg[prev:])
	exact, lines := s.Hex()
	loose := s.LooseHex()
	wExact, wLines, wLoose := refSums(msg)
	if exact != wExact || lines != wLines || loose != wLoose {
		t.Fatalf("%q cut at %v: sums %s %s %q, want %s %s %q", msg, cuts, exact[:8], lines[:8], loose, wExact[:8], wLines[:8], wLoose)
	}
}

func TestSumsAreTheSameHoweverTheMessageIsCut(t *testing.T) {
	for _, seed := range sumSeeds {
		msg := []byte(seed)
		checkSums(t, msg, nil)
		for i := range len(msg) + 1 {
			checkSums(t, msg, []int{i})
			checkSums(t, msg, []int{i, i + 1, i + 2})
		}
	}
}

func FuzzSumsMatchTheirReference(f *testing.F) {
	for _, seed := range sumSeeds {
		f.Add([]byte(seed), uint8(3), uint8(7))
	}
	f.Fuzz(func(t *testing.T, msg []byte, a, b uint8) {
		var cuts []int
		step := int(a%16) + 1
		for i := int(b % 8); i < len(msg); i += step {
			cuts = append(cuts, i)
		}
		checkSums(t, msg, cuts)
		checkSums(t, msg, nil)
	})
}
