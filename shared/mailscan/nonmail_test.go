package mailscan_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/shared/mailscan"
	"github.com/mailferry/mailferry/shared/testenv/corpus"
)

// crlf turns the LFs of s into CRLFs.
func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

const vcard = `BEGIN:VCARD
VERSION:3.0
N:Doe;John;;;
FN:John Doe
EMAIL;TYPE=INTERNET:john@example.com
TEL;TYPE=WORK:+1 555 0100
NOTE:Met at the fair\, call in May
END:VCARD
`

const vevent = `BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//MailEnable//Calendar//EN
BEGIN:VTIMEZONE
TZID:W. Europe Standard Time
END:VTIMEZONE
BEGIN:VEVENT
UID:0123@example.com
DTSTART:20260105T090000Z
SUMMARY:Dentist
ORGANIZER:mailto:john@example.com
END:VEVENT
END:VCALENDAR
`

const vtodoCal = `BEGIN:VCALENDAR
VERSION:1.0
BEGIN:VTODO
SUMMARY:Renew the domain
DUE:20260301T000000Z
STATUS:NEEDS-ACTION
END:VTODO
END:VCALENDAR
`

const vtodo = `BEGIN:VTODO
UID:42
SUMMARY:Call the bank
END:VTODO
`

// invitation is an invitation as Outlook sends one: mail with a
// text/calendar part.
const invitation = `From: John Doe <john@example.com>
To: jane@example.com
Subject: Invitation: Dentist
Date: Mon, 5 Jan 2026 08:00:00 +0000
Message-ID: <inv-1@example.com>
MIME-Version: 1.0
Content-Type: text/calendar; method=REQUEST; charset=UTF-8

BEGIN:VCALENDAR
METHOD:REQUEST
BEGIN:VEVENT
SUMMARY:Dentist
END:VEVENT
END:VCALENDAR
`

func TestNotMailTellsItemsFromMail(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"vCard", crlf(vcard), mailscan.NotMailContact},
		{"vCard with LF line ends", vcard, mailscan.NotMailContact},
		{"vCard in lower case with a byte order mark", "\xef\xbb\xbf" + strings.ToLower(crlf(vcard)), mailscan.NotMailContact},
		{"vCard 2.1 with trailing blanks", "BEGIN:VCARD  \r\nVERSION:2.1\r\nN:Doe;John\r\nEND:VCARD\r\n", mailscan.NotMailContact},
		{"iCalendar event after a time zone", crlf(vevent), mailscan.NotMailEvent},
		{"vCalendar task", crlf(vtodoCal), mailscan.NotMailTask},
		{"bare VTODO", crlf(vtodo), mailscan.NotMailTask},
		{"bare VEVENT", "BEGIN:VEVENT\r\nSUMMARY:x\r\nEND:VEVENT\r\n", mailscan.NotMailEvent},
		{"journal", "BEGIN:VCALENDAR\r\nBEGIN:VJOURNAL\r\nSUMMARY:x\r\nEND:VJOURNAL\r\nEND:VCALENDAR\r\n", mailscan.NotMailJournal},
		{"calendar of time zones only", "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n", mailscan.NotMailCalendar},
		{"vCard whose photo runs past the head", "BEGIN:VCARD\r\nVERSION:3.0\r\nPHOTO;ENCODING=b:" + strings.Repeat("QUJD", 1000), mailscan.NotMailContact},

		{"invitation with a text/calendar body", crlf(invitation), ""},
		{"mail whose body is a vCard", crlf("From: a@example.com\nSubject: my card\n\n" + vcard), ""},
		{"vCard with a mail header field is mail", "BEGIN:VCARD\r\nFrom: a@example.com\r\nEND:VCARD\r\n", ""},
		{"vCard whose header field has blanks before the colon", "BEGIN:VCARD\r\nSubject : x\r\n", ""},
		{"calendar with a Content-Type field", "BEGIN:VCALENDAR\r\ncontent-type: text/calendar\r\n", ""},
		{"empty", "", ""},
		{"only a line end", "\r\n", ""},
		{"BEGIN:VCARD without a line end", "BEGIN:VCARD", ""},
		{"vCard after a blank line", "\r\n" + crlf(vcard), ""},
		{"vCard after leading blanks", "  " + crlf(vcard), ""},
		{"mail with leading whitespace", " From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n", ""},
		{"mail with an odd first header", "X-Weird: BEGIN:VCARD\r\nFrom: a@example.com\r\n\r\nbody\r\n", ""},
		{"mbox From line", "From a@example.com Mon Jan  5 08:00:00 2026\r\nFrom: a@example.com\r\n\r\nb\r\n", ""},
		{"header-less text", "just some text\r\n", ""},
		{"BEGIN:VCARDS is no vCard", "BEGIN:VCARDS\r\nN:x\r\n", ""},
		{"a header field named BEGIN with another value", "BEGIN: VCARD\r\nN:x\r\n", ""},
		{"a vCard behind a mail field after the head is still told by its head", "BEGIN:VCARD\r\nNOTE:" + strings.Repeat("x", mailscan.NotMailHeadBytes) + "\r\nFrom: a@example.com\r\n", mailscan.NotMailContact},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mailscan.NotMail([]byte(tt.in)); got != tt.want {
				t.Errorf("NotMail(%.60q) = %q, want %q", tt.in, got, tt.want)
			}
			// The same through Head, written in pieces, as readers
			// stream a body.
			var h mailscan.Head
			for b := []byte(tt.in); len(b) > 0; {
				n := min(len(b), 7)
				h.Write(b[:n])
				b = b[n:]
			}
			if got := h.NotMail(); got != tt.want {
				t.Errorf("Head.NotMail(%.60q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// Every message of the shared corpus of real-world hard mail (its
// invitation with a text/calendar part among them) is mail.
func TestNotMailTakesEveryCorpusMessageForMail(t *testing.T) {
	files := corpus.FilesT(t)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if k := mailscan.NotMail(b); k != "" {
			t.Errorf("%s: classified %q, want mail", filepath.Base(f), k)
		}
		// The same with CRLF line ends, as an IMAP server serves it.
		if k := mailscan.NotMail(bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))); k != "" {
			t.Errorf("%s with CRLF: classified %q, want mail", filepath.Base(f), k)
		}
	}
	t.Logf("%d corpus messages, all mail", len(files))
}

var (
	beginLine = regexp.MustCompile(`(?i)^BEGIN:V(CARD|CALENDAR|EVENT|TODO|JOURNAL)[ \t]*\r?\n`)
	mailField = regexp.MustCompile(`(?i)^(return-path|received|delivered-to|date|from|sender|reply-to|to|cc|bcc|message-id|in-reply-to|references|subject|comments|keywords|resent-(date|from|sender|to|cc|bcc|message-id)|mime-version|content-type|content-transfer-encoding)[ \t]*:`)
)

// NotMail never panics, looks only at the head, and anything it calls an
// item opens with a BEGIN line and has no mail header field before its
// first blank line.
func FuzzNotMail(f *testing.F) {
	for _, s := range []string{crlf(vcard), crlf(vevent), vtodo, crlf(invitation), "", "\r\n", "BEGIN:VCARD\r\nFrom: x\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		k := mailscan.NotMail(b)
		if len(b) > mailscan.NotMailHeadBytes && mailscan.NotMail(b[:mailscan.NotMailHeadBytes]) != k {
			t.Fatalf("NotMail looked past its head")
		}
		if k == "" {
			return
		}
		head := b[:min(len(b), mailscan.NotMailHeadBytes)]
		text := string(bytes.TrimPrefix(head, []byte("\xef\xbb\xbf")))
		if !beginLine.MatchString(text) {
			t.Fatalf("%q classified %q without a BEGIN line", b, k)
		}
		// No mail header field before the first blank line (a
		// reference written apart from NotMail's own scan).
		for _, line := range strings.Split(text, "\n")[1:] {
			line = strings.TrimSuffix(line, "\r")
			if strings.Trim(line, " \t") == "" {
				break
			}
			if mailField.MatchString(line) {
				t.Fatalf("%q classified %q with the mail header field %q", b, k, line)
			}
		}
	})
}
