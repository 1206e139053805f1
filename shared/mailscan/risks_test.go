package mailscan

import (
	"bytes"
	"testing"
)

func TestRisksNameWhatServersRewrite(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Subject: a\r\n\r\nbody\r\n", ""},
		{"Subject: a\r\n\r\nbody gr\xc3\xbc\xc3\x9fe\r\n", ""},
		{"Subject: gr\xc3\xbc\xc3\x9fe\r\n\r\nbody\r\n", "8bit-header"},
		{"Subject: a\r\n\r\nNUL \x00 here\r\n", "nul"},
		{"Subject: a\n\nbody\n", "line-endings"},
		{"Subject: a\r\n\r\nbody\r\r\n", "line-endings"},
		{"Subject: a\r\n\r\nbare\rCR\r\n", "line-endings"},
		{"Subject: a\r\n\r\nends with CR\r", "line-endings"},
		{"\r\nno header, 8-bit \xff body\r\n", ""},
		{"Subject: \x00\xff\n", "nul,line-endings,8bit-header"},
	}
	for _, tt := range tests {
		var whole, bytewise Risks
		whole.Write([]byte(tt.in))
		for i := range len(tt.in) {
			bytewise.Write([]byte{tt.in[i]})
		}
		if whole.String() != tt.want || bytewise.String() != tt.want || whole.Any() != (tt.want != "") {
			t.Errorf("risks of %q: %q (byte by byte %q, any %v), want %q", tt.in, whole.String(), bytewise.String(), whole.Any(), tt.want)
		}
	}
}

func TestLooseFormMatchesCopiesServersAlteredAndNothingElse(t *testing.T) {
	loose := func(b []byte) string {
		s := NewSums()
		s.Write(b)
		_, lines := s.Hex()
		return Loose(s.LooseHex(), lines)
	}
	nul := []byte("Subject: nul \x00 in the header\r\n\r\nand \x00 in the body\r\n")
	dovecot := bytes.ReplaceAll(nul, []byte{0}, []byte{0x80})
	crcr := []byte("Subject: nul\r\r\n\r\nand \x00 and CRCRLF\r\r\n")
	crcrStored := []byte("Subject: nul\r\n\r\nand \x80 and CRCRLF\r\n")
	raw := []byte("From: J\xc3\xb6rg <j@example.org>\r\nSubject: Gr\xc3\xbc\xc3\x9fe\r\n\r\nK\xc3\xa4se\r\n")
	cyrus := []byte("From: JXXrg <j@example.org>\r\nSubject: GrXXXXe\r\n\r\nK\xc3\xa4se\r\n")
	endsCR := []byte("Subject: a\r\n\r\nends with CR\r")
	bareCR := []byte("Subject: a\rb\r\n\r\nbare\rCR\r\r\n")
	for _, tc := range []struct {
		name     string
		sent     []byte
		stored   []byte
		same     bool
		hasLoose bool
	}{
		{"Dovecot: NUL to 0x80", nul, dovecot, true, true},
		{"Dovecot: NUL and line endings", crcr, crcrStored, true, true},
		{"Cyrus: 8-bit header bytes to X", raw, cyrus, true, true},
		{"Dovecot: the CR that ends the message dropped", endsCR, []byte("Subject: a\r\n\r\nends with CR"), true, true},
		{"bare CRs dropped", bareCR, []byte("Subject: ab\r\n\r\nbareCR\r\n"), true, true},
		{"bare CRs dropped, line endings and NUL rewritten", []byte("S: a\r\n\r\nx\ry\n\x00\r"), []byte("S: a\r\n\r\nxy\r\n\x80"), true, true},
		{"a bare CR is not a line's end", bareCR, []byte("Subject: a\r\nb\r\n\r\nbare\r\nCR\r\n"), false, true},
		{"another body", nul, []byte("Subject: nul \x00 in the header\r\n\r\nand \x00 in the BODY\r\n"), false, true},
		{"8-bit body bytes are not rewritten", raw, []byte("From: JXXrg <j@example.org>\r\nSubject: GrXXXXe\r\n\r\nKXXse\r\n"), false, true},
	} {
		if got := loose(tc.sent) == loose(tc.stored); got != tc.same {
			t.Errorf("%s: loose forms equal %v, want %v", tc.name, got, tc.same)
		}
		if got := LooseSHA256(tc.sent) != ""; got != tc.hasLoose {
			t.Errorf("%s: LooseSHA256 set %v, want %v", tc.name, got, tc.hasLoose)
		}
	}
	if LooseSHA256([]byte("Subject: plain\r\n\r\nK\xc3\xa4se\r\n")) != "" {
		t.Error("a message with nothing to rewrite has a loose sum of its own")
	}
	// State carries across writes.
	s := NewSums()
	for i := range crcr {
		s.Write(crcr[i : i+1])
	}
	if s.LooseHex() != LooseSHA256(crcr) {
		t.Error("loose sum differs when written byte by byte")
	}
}

// FuzzLooseForm checks that the shortcut LooseSHA256 takes agrees with the
// streaming sums, whatever the bytes and however they are split.
func FuzzLooseForm(f *testing.F) {
	for _, s := range []string{"", "Subject: a\r\n\r\nb\r\n", "S: \xff\r\n\r\n", "S: a\r\n\r\n\x00", "\r\r\n\xff", "a\rb\n\n\x00", "S: x\n\r\r\n\xc3\xa4\x00", "S: a\rb\r\n\r\nx\r", "\r\r", "S: \xff\r\n\r\n\ra\r\r\nb\r"} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, b []byte, split uint8) {
		s := NewSums()
		for rest := b; len(rest) > 0; {
			n := min(len(rest), int(split%17)+1)
			s.Write(rest[:n])
			rest = rest[n:]
		}
		exact, lines := s.Hex()
		whole := NewSums()
		whole.Write(b)
		e2, l2 := whole.Hex()
		if exact != e2 || lines != l2 || s.LooseHex() != whole.LooseHex() {
			t.Fatalf("sums of %q depend on how it is split", b)
		}
		if LooseSHA256(b) != s.LooseHex() {
			t.Fatalf("LooseSHA256(%q) = %q, streaming gives %q", b, LooseSHA256(b), s.LooseHex())
		}
	})
}

// FuzzRisks checks the vectorised body path against the byte-by-byte
// reading, however the bytes are split.
func FuzzRisks(f *testing.F) {
	for _, s := range []string{"Subject: a\r\n\r\nb\r\n", "S: \xff\r\n\r\nx\r", "S: a\r\n\r\n\x00\r\r\n", "\r\n\r\r", "a\nb\n\nc\rd\r\n", "S: x\r\n\r\n\r"} {
		f.Add([]byte(s), uint8(2))
	}
	f.Fuzz(func(t *testing.T, b []byte, split uint8) {
		var ref Risks
		for _, c := range b {
			ref.note(c)
		}
		var got Risks
		for rest := b; len(rest) > 0; {
			n := min(len(rest), int(split%13)+1)
			got.Write(rest[:n])
			rest = rest[n:]
		}
		if got.String() != ref.String() || got.Any() != ref.Any() {
			t.Fatalf("risks of %q split by %d: %q (any %v), byte by byte %q (any %v)", b, split%13+1, got.String(), got.Any(), ref.String(), ref.Any())
		}
	})
}
