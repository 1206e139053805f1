package subject

import "testing"

func TestTokenKeepsNamesOneTokenAndReversible(t *testing.T) {
	tests := []struct{ in, want string }{
		{"alice@example.com", "alice@example%2Ecom"},
		{"", "%"},
		{"a.b*c>d e", "a%2Eb%2Ac%3Ed%20e"},
		{"Entwürfe/2010", "Entw%C3%BCrfe%2F2010"},
		{"100%", "100%25"},
	}
	for _, tt := range tests {
		got := Token(tt.in)
		if got != tt.want {
			t.Errorf("Token(%q) = %q, want %q", tt.in, got, tt.want)
		}
		back, err := Untoken(got)
		if err != nil || back != tt.in {
			t.Errorf("Untoken(%q) = %q, %v; want %q", got, back, err, tt.in)
		}
	}
}

func TestUntokenRejectsBrokenEscapes(t *testing.T) {
	for _, in := range []string{"abc%", "abc%4", "abc%ZZ"} {
		if _, err := Untoken(in); err == nil {
			t.Errorf("Untoken(%q) succeeded", in)
		}
	}
}

func TestSubjectsForDottedMailbox(t *testing.T) {
	if got := Message("a@b.c", "INBOX"); got != "mf.mail.a@b%2Ec.m.INBOX" {
		t.Errorf("Message = %q", got)
	}
	if got := Mailbox("a@b.c"); got != "mf.mail.a@b%2Ec.>" {
		t.Errorf("Mailbox = %q", got)
	}
	if got := SourceID("a@b.c", "Sent Items", 7, 0, 42); got != "a@b%2Ec.Sent%20Items.7.42" {
		t.Errorf("SourceID = %q", got)
	}
}

func TestSourceIDOfARenumberedFolderDiffersAndEpochZeroKeepsTheOldForm(t *testing.T) {
	tests := []struct {
		uidv, epoch uint32
		want        string
	}{
		{7, 0, "7"},
		{7, 1, "7-e1"},
		{4294967295, 12, "4294967295-e12"},
	}
	for _, tt := range tests {
		got := Numbering(tt.uidv, tt.epoch)
		if got != tt.want {
			t.Errorf("Numbering(%d, %d) = %q, want %q", tt.uidv, tt.epoch, got, tt.want)
		}
		if Key(got) != got || Token(got) != got {
			t.Errorf("Numbering %q is not one key and subject token as it is", got)
		}
		v, e, err := ParseNumbering(got)
		if err != nil || v != tt.uidv || e != tt.epoch {
			t.Errorf("ParseNumbering(%q) = %d, %d, %v", got, v, e, err)
		}
	}
	if SourceID("a", "INBOX", 7, 1, 3) == SourceID("a", "INBOX", 7, 0, 3) {
		t.Error("a renumbered message has the identity of the message its UID named before")
	}
	for _, bad := range []string{"", "x", "7-e", "7-e0", "7-ex"} {
		if _, _, err := ParseNumbering(bad); err == nil {
			t.Errorf("ParseNumbering(%q) accepted", bad)
		}
	}
}

func TestKeyUsesOnlyKeyValueAlphabet(t *testing.T) {
	tests := []struct{ in, want string }{
		{"alice@example.com", "alice=40example=2Ecom"},
		{"Sent Items", "Sent=20Items"},
		{"", "="},
	}
	for _, tt := range tests {
		if got := Key(tt.in); got != tt.want {
			t.Errorf("Key(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
