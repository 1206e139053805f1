package mailscan

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestParseHeaderGivesDisplayTextAndNeverFails(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want Header
	}{
		{"plain", "Date: Sat, 2 Jan 2016 03:04:05 +0000\r\nFrom: Alice <a@old.example>\r\nSubject: hello\r\nMessage-ID: <1@old.example>\r\n\r\n",
			Header{Date: "Sat, 2 Jan 2016 03:04:05 +0000", From: "Alice <a@old.example>", Subject: "hello", MessageID: "<1@old.example>"}},
		{"RFC 2047 words decoded", "Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=\r\nFrom: =?ISO-8859-1?Q?J=F6rg?= <j@old.example>\r\n\r\n",
			Header{Subject: "Grüße aus Köln", From: "Jörg <j@old.example>"}},
		{"no Message-ID", "Subject: no id\r\n\r\n", Header{Subject: "no id"}},
		{"folded, field names in any case", "SUBJECT: a long\r\n\tsubject\r\nmessage-id:\r\n <2@x>\r\n\r\n", Header{Subject: "a long subject", MessageID: "<2@x>"}},
		{"bare LF and bare CR line ends", "Subject: lf\nFrom: cr\rDate: d\n\n", Header{Subject: "lf", From: "cr", Date: "d"}},
		{"the first of repeated fields", "Subject: one\r\nSubject: two\r\n\r\n", Header{Subject: "one"}},
		{"lines without a colon skipped", "garbage line\r\n: no name\r\nSubject: kept\r\n\r\n", Header{Subject: "kept"}},
		{"8-bit and control bytes made printable", "Subject: K\xe4se\x00\x07 und \xc3\xa4\r\n\r\n", Header{Subject: "K\uFFFDse und ä"}},
		{"unknown charset left as it is", "Subject: =?x-unknown?Q?abc?=\r\n\r\n", Header{Subject: "=?x-unknown?Q?abc?="}},
		{"malformed word left as it is", "Subject: =?UTF-8?B?***?=\r\n\r\n", Header{Subject: "=?UTF-8?B?***?="}},
		{"the body is not read", "Subject: s\r\n\r\nFrom: body@x\r\n", Header{Subject: "s"}},
		{"nothing", "", Header{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseHeader([]byte(tt.raw)); got != tt.want {
				t.Errorf("ParseHeader(%q) = %+v, want %+v", tt.raw, got, tt.want)
			}
		})
	}
	for _, words := range []string{strings.Repeat("x", 1000), strings.Repeat("x ", 500), "xxxxx " + strings.Repeat("x", 995)} {
		long := ParseHeader([]byte("Subject: " + words + "\r\n\r\n")).Subject
		if n := len([]rune(long)); n != maxFieldRunes+1 || !strings.HasSuffix(long, "…") {
			t.Errorf("a 1000-character subject %q... is shown as %d runes (%q...), want %d and an ellipsis", words[:10], n, long[:10], maxFieldRunes+1)
		}
	}
}

// FuzzParseHeader checks that any bytes give printable UTF-8 fields, each
// within its bound, and never a panic.
func FuzzParseHeader(f *testing.F) {
	for _, s := range []string{"Subject: a\r\n\r\n", "Subject: =?UTF-8?B?w6Q=?=\r\n =?UTF-8?Q?=C3=A4?=\r\n", "From:\r\r\n\x00\xff: x\n\tSubject: y", ": \r\n Subject: =?"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		h := ParseHeader(raw)
		for _, v := range []string{h.Date, h.From, h.Subject, h.MessageID} {
			if !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl) || utf8.RuneCountInString(v) > maxFieldRunes+1 {
				t.Fatalf("ParseHeader(%q) gives field %q", raw, v)
			}
		}
	})
}
