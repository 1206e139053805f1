package mailscan

import (
	"bytes"
	"crypto/sha256"
	"io"
	"testing"
)

// benchMessage is about 1 MB of ordinary mail: a header, then CRLF lines
// of text.
func benchMessage() []byte {
	var b bytes.Buffer
	b.WriteString("From: a@example.test\r\nTo: b@example.test\r\nSubject: bench\r\n\r\n")
	for b.Len() < 1<<20 {
		b.WriteString("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n")
	}
	return b.Bytes()
}

// BenchmarkSums measures the fingerprints of a message read in 32 KiB
// chunks, as io.Copy hands them over; BenchmarkSHA256 is the floor.
func BenchmarkSums(b *testing.B) {
	msg := benchMessage()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		s := NewSums()
		if _, err := io.CopyBuffer(s, bytes.NewReader(msg), make([]byte, 32<<10)); err != nil {
			b.Fatal(err)
		}
		s.Hex()
		s.LooseHex()
	}
}

func BenchmarkSHA256(b *testing.B) {
	msg := benchMessage()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		sha256.Sum256(msg)
	}
}
