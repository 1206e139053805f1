package mailscan

import (
	"bytes"
	"testing"
)

func TestLineNormalizerSpellsEveryLineEndingCRLF(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a\r\nb\r\n", "a\r\nb\r\n"},
		{"a\nb\n", "a\r\nb\r\n"},
		{"a\r\r\nb", "a\r\nb"},
		{"a\rb\r", "a\rb\r"},
		{"\r\r\r\n", "\r\n"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		n := NewLineNormalizer(&out)
		// Feed byte by byte: state must carry across writes.
		for i := range len(tt.in) {
			n.Write([]byte{tt.in[i]})
		}
		n.Close()
		if out.String() != tt.want {
			t.Errorf("normalize(%q) = %q, want %q", tt.in, out.String(), tt.want)
		}
	}
}
