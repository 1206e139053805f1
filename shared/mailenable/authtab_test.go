package mailenable

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAuthTabLinesBecomeAccounts(t *testing.T) {
	raw := "\xef\xbb\xbf" + strings.Join([]string{
		"alice\tSecret-1\t\tcompany",
		"bob\t\t\tcompany",       // no password: must sign in
		"carol\tp\x01w\t\tother", // not a typable password
		"",
		"dave\tpass word with spaces\tx\tOther\r",
	}, "\n")
	got, err := ParseAuthTab([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	want := []Account{
		{Line: 1, Mailbox: "alice", PostOffice: "company", Password: "Secret-1", Usable: true},
		{Line: 2, Mailbox: "bob", PostOffice: "company"},
		{Line: 3, Mailbox: "carol", PostOffice: "other"},
		{Line: 5, Mailbox: "dave", PostOffice: "Other", Password: "pass word with spaces", Usable: true},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d accounts, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: %+v, want %+v", want[i].Line, got[i], want[i])
		}
	}
	if got[0].Login() != "alice@company" {
		t.Errorf("login %q", got[0].Login())
	}
}

func TestABadAuthTabIsReportedByLineWithoutItsPasswords(t *testing.T) {
	tests := []struct{ name, raw, want string }{
		{"too few columns", "alice\tTopSecret\n", "line 1: 2 tab-separated columns"},
		{"no post office", "alice\tTopSecret\t\t\n", "line 1: post office is empty"},
		{"an @ in the mailbox", "al@ice\tTopSecret\t\tpo\n", "line 1: mailbox name holds '@'"},
		{"the same login twice", "alice\tTopSecret\t\tpo\nALICE\tTopSecret\t\tPO\n", "line 2: ALICE@PO already on line 1"},
		{"every bad line at once", "a\tTopSecret\nb\tTopSecret\n", "line 1: 2 tab-separated columns, want 4 (login, password, unused, post office); line 2"},
		{"no mailbox at all (a truncated copy)", "\r\n\r\n", "lists no mailbox"},
		{"empty", "", "lists no mailbox"},
		{"a line of 2 MiB", "alice\tTopSecret\t\tpo\n" + strings.Repeat("x", 2<<20) + "\n", "AUTH.TAB line 2: longer than 1048576 bytes"},
		{"thousands of bad lines: twenty named, the rest counted", strings.Repeat("a\tTopSecret\n", 3000), "line 20: 2 tab-separated columns, want 4 (login, password, unused, post office); and 2980 more bad lines"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseAuthTab([]byte(tt.raw))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to say %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "TopSecret") {
				t.Errorf("the error shows a password: %v", err)
			}
		})
	}
}

func TestAnAuthTabOthersMayReadIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "AUTH.TAB")
	if err := os.WriteFile(path, []byte("alice\tSecret-1\t\tcompany\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadAuthTab(path); err == nil || !strings.Contains(err.Error(), "0644") || strings.Contains(err.Error(), "Secret-1") {
		t.Fatalf("err = %v, want the mode named and no password", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if a, err := ReadAuthTab(path); err != nil || len(a) != 1 {
		t.Fatalf("0600: %v, %v", a, err)
	}
}

func TestPostOfficesMapToMailDomains(t *testing.T) {
	m, err := ParsePostOffices([]byte("# post office -> domain\ncompany example.com\nOther,other.example.\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	for po, want := range map[string]string{"company": "example.com", "COMPANY": "example.com", "other": "other.example", "example.org": "example.org"} {
		if got := m.Domain(po); got != want {
			t.Errorf("Domain(%q) = %q, want %q", po, got, want)
		}
	}
	for _, bad := range []string{"company\n", "company nodots\n", "a x.example\na y.example\n"} {
		if _, err := ParsePostOffices([]byte(bad)); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

func FuzzParseAuthTab(f *testing.F) {
	f.Add([]byte("alice\tSecret-1\t\tcompany\nbob\t\t\tcompany\n"))
	f.Add([]byte("\xef\xbb\xbfa\tb\tc\td\te\r\n\n"))
	f.Add([]byte("a@b\t\t\t\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		accounts, err := ParseAuthTab(raw)
		if err != nil {
			return
		}
		for _, a := range accounts {
			if strings.Count(a.Login(), "@") != 1 || a.Mailbox == "" || a.PostOffice == "" {
				t.Fatalf("account %+v: not mailbox@postoffice", a)
			}
			if a.Usable != (a.Password != "") {
				t.Fatalf("account %+v: usable without a password, or a password unusable", a)
			}
		}
	})
}
