package mailscan

import "bytes"

// Non-mail items in a mail folder.
//
// MailEnable keeps a mailbox's contacts, calendar and tasks in its message
// store beside the mail: its knowledge base (article ME020705, "Recovery
// and repair information for email data") says mail is stored in the mdir
// format, one plain-text file per message (.MAI) under each folder with an
// _index.xml, and the store also holds .VCF, .CAL and .TSK items (issue
// 15). Served over IMAP, such an item is a "message" that is not RFC 5322
// mail: a bare vCard (RFC 6350; 2.1 and 3.0 begin alike) or
// iCalendar/vCalendar object (RFC 5545; vCalendar 1.0) with no header
// section. Appended to the new provider, it would show as an empty,
// senderless mail. MailEnable's own task format is not publicly
// documented: a task is recognised here only when it opens as a
// vCalendar/VTODO; anything else stays mail.
//
// The classification is narrow on purpose: what it calls not mail is not
// copied, so it must never take mail for an item. Mail, however odd, opens
// with a header field, an mbox "From " line, a blank line or whitespace;
// an invitation or a forwarded contact is mail with a header section and a
// text/calendar or text/vcard part. An item is only what opens (after an
// optional UTF-8 byte order mark, which Windows tools write) with a line
// that is exactly BEGIN:VCARD, BEGIN:VCALENDAR, BEGIN:VEVENT, BEGIN:VTODO
// or BEGIN:VJOURNAL (any case, trailing blanks allowed, ended by LF or
// CRLF), and in whose first NotMailHeadBytes no line up to the first empty
// one is an RFC 5322 or MIME header field (From, Date, Subject, Received,
// Content-Type, …): a vCard or iCalendar property never has those names.
// An item with leading whitespace, or one that does not fit, is copied as
// mail: the safe side.

// Kinds of non-mail items, as NotMail returns them.
const (
	// NotMailContact is a vCard.
	NotMailContact = "contact"
	// NotMailEvent is a calendar object whose first component is an
	// event (VEVENT), or a bare VEVENT.
	NotMailEvent = "event"
	// NotMailTask is a calendar object whose first component is a task
	// (VTODO), or a bare VTODO.
	NotMailTask = "task"
	// NotMailJournal is a calendar object whose first component is a
	// journal entry (VJOURNAL), or a bare VJOURNAL.
	NotMailJournal = "journal"
	// NotMailCalendar is a calendar object with no event, task or
	// journal entry in its first NotMailHeadBytes.
	NotMailCalendar = "calendar"
)

// NotMailHeadBytes is how many of a message's first bytes NotMail looks
// at: a reader keeps that many, never the whole body.
const NotMailHeadBytes = 2048

// NotMail returns what kind of non-mail item a message is, from its first
// bytes (head; only the first NotMailHeadBytes are looked at), or "" for
// mail. See the comment above for what counts as an item.
func NotMail(head []byte) string {
	if len(head) > NotMailHeadBytes {
		head = head[:NotMailHeadBytes]
	}
	head = bytes.TrimPrefix(head, []byte("\xef\xbb\xbf"))
	first, rest, ok := cutLine(head)
	if !ok {
		return "" // no whole first line: nothing to tell an item by
	}
	kind := ""
	switch string(bytes.ToUpper(bytes.TrimRight(first, " \t"))) {
	case "BEGIN:VCARD":
		kind = NotMailContact
	case "BEGIN:VCALENDAR":
		kind = NotMailCalendar
	case "BEGIN:VEVENT":
		kind = NotMailEvent
	case "BEGIN:VTODO":
		kind = NotMailTask
	case "BEGIN:VJOURNAL":
		kind = NotMailJournal
	default:
		return ""
	}
	for line, more := rest, true; more && len(line) > 0; {
		var l []byte
		l, line, more = cutLine(line)
		if !more {
			l = line // the last line, maybe cut short
		}
		if len(bytes.TrimRight(l, " \t")) == 0 {
			break // the end of what would be a header section
		}
		if isMailField(l) {
			return ""
		}
		if kind == NotMailCalendar {
			switch string(bytes.ToUpper(bytes.TrimRight(l, " \t"))) {
			case "BEGIN:VEVENT":
				kind = NotMailEvent
			case "BEGIN:VTODO":
				kind = NotMailTask
			case "BEGIN:VJOURNAL":
				kind = NotMailJournal
			}
		}
	}
	return kind
}

// cutLine returns b's first line without its LF or CRLF, the rest, and
// whether a line end was found (if not, line is nil and rest is b).
func cutLine(b []byte) (line, rest []byte, found bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, b, false
	}
	return bytes.TrimSuffix(b[:i], []byte("\r")), b[i+1:], true
}

// mailFields are the header fields of RFC 5322 (3.6) and MIME (RFC 2045)
// and the trace fields delivery adds, in lower case: no vCard (RFC 6350)
// or iCalendar (RFC 5545) property has one of these names.
var mailFields = map[string]bool{
	"return-path": true, "received": true, "delivered-to": true, "date": true, "from": true, "sender": true,
	"reply-to": true, "to": true, "cc": true, "bcc": true, "message-id": true, "in-reply-to": true,
	"references": true, "subject": true, "comments": true, "keywords": true, "resent-date": true,
	"resent-from": true, "resent-sender": true, "resent-to": true, "resent-cc": true, "resent-bcc": true,
	"resent-message-id": true, "mime-version": true, "content-type": true, "content-transfer-encoding": true,
}

// isMailField reports whether line is a mail header field: one of
// mailFields, then optional blanks and a colon.
func isMailField(line []byte) bool {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return false
	}
	name := bytes.ToLower(bytes.TrimRight(line[:i], " \t"))
	return mailFields[string(name)]
}

// Head keeps the first NotMailHeadBytes bytes written to it, for NotMail,
// while a body streams elsewhere.
type Head struct {
	b []byte
}

// Write keeps what is still missing of the first NotMailHeadBytes bytes.
func (h *Head) Write(p []byte) (int, error) {
	if room := NotMailHeadBytes - len(h.b); room > 0 {
		if h.b == nil {
			h.b = make([]byte, 0, NotMailHeadBytes)
		}
		h.b = append(h.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// NotMail is NotMail of the bytes kept.
func (h *Head) NotMail() string { return NotMail(h.b) }
