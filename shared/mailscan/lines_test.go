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

func TestSumsMatchOnlyInLineEndingsWhenLineEndingsDiffer(t *testing.T) {
	sum := func(s string) (string, string) {
		x := NewSums()
		x.Write([]byte(s))
		return x.Hex()
	}
	e1, l1 := sum("a\r\r\nb\r\n")
	e2, l2 := sum("a\r\nb\r\n")
	if e1 == e2 || l1 != l2 {
		t.Errorf("exact %v equal, lines %v equal; want exact different, lines equal", e1 == e2, l1 == l2)
	}
}
