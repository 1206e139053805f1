// Package mailenable reads what a MailEnable server keeps about its
// accounts: Config\AUTH.TAB, one account per line, tab-separated — the
// login (the mailbox name), the password, a column MailEnable does not
// use, the post office — and the operator's map from post office to mail
// domain, where the two differ. A MailEnable IMAP login is
// mailbox@postoffice.
//
// Passwords are secrets: nothing here puts one in an error.
package mailenable

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mailferry/mailferry/shared/config"
)

// Account is one line of AUTH.TAB.
type Account struct {
	// Line is its line number, for messages.
	Line int
	// Mailbox and PostOffice name it: the IMAP login is
	// Mailbox@PostOffice.
	Mailbox, PostOffice string
	// Password is the password in clear, "" when Usable is false.
	Password string
	// Usable is false when the password column is empty or cannot be a
	// password (an operator who enabled MailEnable's password encryption
	// leaves something else there): the user must prove a password at
	// sign-in instead.
	Usable bool
}

// Login is the account's IMAP login.
func (a Account) Login() string { return a.Mailbox + "@" + a.PostOffice }

// ReadAuthTab reads the AUTH.TAB at path, refusing it when its group or
// others may read it (the passwords may have leaked already).
func ReadAuthTab(path string) ([]Account, error) {
	raw, err := config.ReadSecretFile(path)
	if err != nil {
		return nil, fmt.Errorf("AUTH.TAB: %w", err)
	}
	return ParseAuthTab(raw)
}

// ParseAuthTab parses AUTH.TAB's content. Every bad line is reported, by
// number and reason, never by content.
func ParseAuthTab(raw []byte) ([]Account, error) {
	raw = bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf"))
	var out []Account
	var bad []string
	seen := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 64<<10), maxLineBytes)
	n := 1
	for ; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) < 4 {
			bad = append(bad, fmt.Sprintf("line %d: %d tab-separated columns, want 4 (login, password, unused, post office)", n, len(f)))
			continue
		}
		a := Account{Line: n, Mailbox: strings.TrimSpace(f[0]), PostOffice: strings.TrimSpace(f[3])}
		if why := badName(a.Mailbox); why != "" {
			bad = append(bad, fmt.Sprintf("line %d: mailbox name %s", n, why))
			continue
		}
		if why := badName(a.PostOffice); why != "" {
			bad = append(bad, fmt.Sprintf("line %d: post office %s", n, why))
			continue
		}
		key := strings.ToLower(a.Login())
		if prev, dup := seen[key]; dup {
			bad = append(bad, fmt.Sprintf("line %d: %s already on line %d", n, a.Login(), prev))
			continue
		}
		seen[key] = n
		if usablePassword(f[1]) {
			a.Password, a.Usable = f[1], true
		}
		out = append(out, a)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("AUTH.TAB line %d: longer than %d bytes: not an AUTH.TAB", n, maxLineBytes)
		}
		return nil, fmt.Errorf("AUTH.TAB line %d: %w", n, err)
	}
	if len(bad) > maxBadLines {
		bad = append(bad[:maxBadLines], fmt.Sprintf("and %d more bad lines", len(bad)-maxBadLines))
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("AUTH.TAB: %s", strings.Join(bad, "; "))
	}
	if len(out) == 0 {
		// Importing it would empty the mailboxes file and remove every
		// source password: a truncated copy must not end a migration.
		return nil, errors.New("AUTH.TAB lists no mailbox: an empty or truncated copy? Nothing was written")
	}
	return out, nil
}

// maxLineBytes bounds an AUTH.TAB line; real ones are far shorter.
const maxLineBytes = 1 << 20

// maxBadLines is how many bad lines an error names; the rest are counted.
const maxBadLines = 20

// badName says what is wrong with a mailbox or post office name, "" when
// nothing is.
func badName(s string) string {
	switch {
	case s == "":
		return "is empty"
	case !utf8.ValidString(s):
		return "is not UTF-8"
	case strings.ContainsAny(s, "@ \t"):
		return "holds '@' or a space"
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return "holds a control character"
	}
	return ""
}

// usablePassword reports whether p can be a password typed at a login:
// not empty, valid UTF-8 without control characters.
func usablePassword(p string) bool {
	return p != "" && utf8.ValidString(p) && strings.IndexFunc(p, unicode.IsControl) < 0
}

// PostOffices maps a post office to its mail domain; a post office it
// does not name is its own domain.
type PostOffices map[string]string

// Domain is the mail domain of post office po.
func (m PostOffices) Domain(po string) string {
	if d, ok := m[strings.ToLower(po)]; ok {
		return d
	}
	return strings.ToLower(po)
}

// ParsePostOffices parses a post office map: one "postoffice domain" pair
// per line (spaces, a tab or a comma between), '#' starting a comment.
func ParsePostOffices(raw []byte) (PostOffices, error) {
	m := PostOffices{}
	var bad []string
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.FieldsFunc(line, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
		switch {
		case len(f) == 0:
			continue
		case len(f) != 2:
			bad = append(bad, fmt.Sprintf("line %d: want a post office and its domain", n))
			continue
		}
		po, dom := strings.ToLower(f[0]), strings.ToLower(strings.TrimSuffix(f[1], "."))
		if !strings.Contains(dom, ".") || badName(dom) != "" {
			bad = append(bad, fmt.Sprintf("line %d: %q is no mail domain", n, f[1]))
			continue
		}
		if prev, dup := m[po]; dup && prev != dom {
			bad = append(bad, fmt.Sprintf("line %d: post office %s mapped twice", n, po))
			continue
		}
		m[po] = dom
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("post office map: %s", strings.Join(bad, "; "))
	}
	return m, nil
}
