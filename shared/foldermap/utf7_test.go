package foldermap

import (
	"errors"
	"math/rand"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestUTF7RoundTrips(t *testing.T) {
	tests := []struct {
		name, utf8, utf7 string
	}{
		{"empty name stays empty", "", ""},
		{"plain ASCII represents itself", "INBOX/Sent Items", "INBOX/Sent Items"},
		{"ampersand is escaped as &-", "&", "&-"},
		{"ampersands inside text are escaped", "R&D && Co", "R&-D &-&- Co"},
		{"RFC 3501 example with CJK levels", "~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"},
		{"latin-1 umlaut is one base64 section", "Entwürfe", "Entw&APw-rfe"},
		{"adjacent non-ASCII characters share one section", "Gelöschte Elemente ÄÖÜ", "Gel&APY-schte Elemente &AMQA1gDc-"},
		{"emoji uses a surrogate pair", "😀", "&2D3eAA-"},
		{"control character is base64 encoded", "a\tb", "a&AAk-b"},
		{"ampersand between sections stays escaped", "ä&ä", "&AOQ-&-&AOQ-"},
		{"comma of the modified alphabet appears", "台", "&U,A-"},
		{"each run between ASCII is its own section", "Ünïcødé", "&ANw-n&AO8-c&APg-d&AOk-"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := EncodeUTF7(tc.utf8); got != tc.utf7 {
				t.Errorf("EncodeUTF7(%q) = %q, want %q", tc.utf8, got, tc.utf7)
			}
			got, err := DecodeUTF7(tc.utf7)
			if err != nil || got != tc.utf8 {
				t.Errorf("DecodeUTF7(%q) = %q, %v; want %q", tc.utf7, got, err, tc.utf8)
			}
		})
	}
}

func TestDecodeUTF7RejectsMalformedInput(t *testing.T) {
	tests := []struct {
		name, in string
	}{
		{"lone ampersand is unterminated", "&"},
		{"base64 running to end of string is unterminated", "&U,BTFw"},
		{"section ended by other character is unterminated", "&U,BTFw/x"},
		{"character outside modified alphabet", "&U/BTFw-"},
		{"standard base64 padding is not allowed", "&AOQ=-"},
		{"printable ASCII must not be base64 encoded", "&AGE-"},
		{"ampersand must not be base64 encoded", "&ACY-"},
		{"non-zero padding bits", "&AOR-"},
		{"sextets not ending on a UTF-16 unit", "&AA-"},
		{"extra trailing sextet", "&AOQA-"},
		{"unpaired high surrogate", "&2D0-"},
		{"unpaired low surrogate", "&3gA-"},
		{"high surrogate followed by non-surrogate", "&2D0A5A-"},
		{"adjacent base64 sections", "&AOQ-&AOQ-"},
		{"raw 8-bit UTF-8", "Entwürfe"},
		{"raw control character", "a\tb"},
		{"raw DEL", "a\x7fb"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeUTF7(tc.in)
			if !errors.Is(err, ErrMalformedUTF7) {
				t.Fatalf("DecodeUTF7(%q) = %q, %v; want ErrMalformedUTF7", tc.in, got, err)
			}
		})
	}
}

func TestEncodeUTF7ReplacesInvalidUTF8(t *testing.T) {
	got, err := DecodeUTF7(EncodeUTF7("a\xffb"))
	if err != nil || got != "a\uFFFDb" {
		t.Fatalf("round trip of invalid UTF-8 = %q, %v; want U+FFFD substituted", got, err)
	}
}

// TestUTF7RandomRoundTrip runs the fuzz properties over a fixed pseudo-random
// corpus biased towards the tricky characters, so plain `go test` covers
// more than the seed corpus.
func TestUTF7RandomRoundTrip(t *testing.T) {
	pieces := []string{"a", "&", "-", "A", "O", "Q", "R", "2", "D", "3", "g", "+", ",", "/", " ",
		"ä", "台", "😀", "\t", "\x00", "\x7f", "\xff"}
	rng := rand.New(rand.NewSource(1))
	for range 200000 {
		var b strings.Builder
		for range rng.Intn(10) {
			b.WriteString(pieces[rng.Intn(len(pieces))])
		}
		checkUTF7Properties(t, b.String())
	}
}

// FuzzUTF7RoundTrip checks the properties of checkUTF7Properties on any
// input. Plain `go test` runs the seeds below and the corpus committed in
// testdata/fuzz/FuzzUTF7RoundTrip; scripts/test fuzzes it briefly.
func FuzzUTF7RoundTrip(f *testing.F) {
	for _, s := range []string{"", "&", "&-", "~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-",
		"&AGE-", "&AOR-", "&AOQ-&AOQ-", "😀", "a\tb", "&2D0-"} {
		f.Add(s)
	}
	f.Fuzz(checkUTF7Properties)
}

// checkUTF7Properties asserts that encoding valid UTF-8 yields printable
// ASCII that decodes back, and that anything accepted by DecodeUTF7 is the
// canonical encoding of its result.
func checkUTF7Properties(t *testing.T, s string) {
	if utf8.ValidString(s) {
		enc := EncodeUTF7(s)
		if i := strings.IndexFunc(enc, func(r rune) bool { return !direct(r) }); i >= 0 {
			t.Fatalf("EncodeUTF7(%q) = %q contains non-printable at %d", s, enc, i)
		}
		dec, err := DecodeUTF7(enc)
		if err != nil || dec != s {
			t.Fatalf("DecodeUTF7(EncodeUTF7(%q)) = %q, %v", s, dec, err)
		}
	}
	dec, err := DecodeUTF7(s)
	if err != nil {
		return
	}
	if !utf8.ValidString(dec) {
		t.Fatalf("DecodeUTF7(%q) = %q is not valid UTF-8", s, dec)
	}
	if enc := EncodeUTF7(dec); enc != s {
		t.Fatalf("DecodeUTF7 accepted non-canonical %q (canonical %q)", s, enc)
	}
}
