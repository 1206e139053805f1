package mailscan

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
)

// Sums computes, in one pass over a message's bytes, the two fingerprints
// mailferry compares: the SHA-256 of the exact bytes and the SHA-256 with
// line endings normalised (see LineNormalizer).
type Sums struct {
	exact, lines hash.Hash
	norm         *LineNormalizer
}

// NewSums returns an empty Sums.
func NewSums() *Sums {
	s := &Sums{exact: sha256.New(), lines: sha256.New()}
	s.norm = NewLineNormalizer(s.lines)
	return s
}

// Write adds p to both sums.
func (s *Sums) Write(p []byte) (int, error) {
	s.exact.Write(p)
	return s.norm.Write(p)
}

// Hex returns both sums in hex; call it once, after the last Write.
func (s *Sums) Hex() (exact, lines string) {
	_ = s.norm.Close()
	return hex.EncodeToString(s.exact.Sum(nil)), hex.EncodeToString(s.lines.Sum(nil))
}
