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
	if got := SourceID("a@b.c", "Sent Items", 7, 42); got != "a@b%2Ec.Sent%20Items.7.42" {
		t.Errorf("SourceID = %q", got)
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
