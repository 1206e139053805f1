// Package subject holds the NATS subject scheme shared by every mailferry
// service, and the encoding that keeps a mailbox or folder name one token.
package subject

import (
	"fmt"
	"strconv"
	"strings"
)

// Subject prefixes. Streams are declared over these in package broker.
const (
	// MailPrefix carries mail records: mf.mail.<mailbox>.<kind>.<folder>.
	MailPrefix = "mf.mail"
	// JobPrefix carries mailbox jobs: mf.job.<mailbox> for passes,
	// mf.job.<mailbox>.loader for the loader alone.
	JobPrefix = "mf.job"
	// EventPrefix carries lifecycle events: mf.event.<type...>.<key>.
	EventPrefix = "mf.event"
	// DeadPrefix carries dead letters: mf.dead.<mailbox>.
	DeadPrefix = "mf.dead"
	// ProgressPrefix carries progress samples on core NATS (not stored):
	// mf.progress.<service>.<mailbox>.
	ProgressPrefix = "mf.progress"
)

// Kinds of mail records, the token after the mailbox.
const (
	KindFolder  = "f"
	KindMessage = "m"
	KindEnd     = "end"
	KindListing = "list"
)

// Token encodes s so that it is exactly one NATS subject token: bytes
// outside [A-Za-z0-9@_+=-] become %XX. Domains contain dots, which would
// otherwise split a mailbox into several tokens; '*' and '>' would become
// wildcards. The encoding is reversible with Untoken.
func Token(s string) string {
	if s == "" {
		return "%"
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if keep(c) {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

func keep(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	case c == '@', c == '_', c == '+', c == '=', c == '-':
		return true
	}
	return false
}

// Untoken reverses Token.
func Untoken(t string) (string, error) {
	if t == "%" {
		return "", nil
	}
	var b strings.Builder
	for i := 0; i < len(t); i++ {
		if t[i] != '%' {
			b.WriteByte(t[i])
			continue
		}
		if i+2 >= len(t) {
			return "", fmt.Errorf("untoken %q: truncated escape at %d", t, i)
		}
		c, err := strconv.ParseUint(t[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("untoken %q: bad escape at %d: %w", t, i, err)
		}
		b.WriteByte(byte(c))
		i += 2
	}
	return b.String(), nil
}

// Mailbox returns the filter subject of every mail record of a mailbox.
func Mailbox(mailbox string) string {
	return MailPrefix + "." + Token(mailbox) + ".>"
}

// Folder returns the subject of a folder description record.
func Folder(mailbox, folder string) string {
	return MailPrefix + "." + Token(mailbox) + "." + KindFolder + "." + Token(folder)
}

// Message returns the subject of a message record.
func Message(mailbox, folder string) string {
	return MailPrefix + "." + Token(mailbox) + "." + KindMessage + "." + Token(folder)
}

// MessagesOfFolder returns the filter subject of one folder's records of
// both kinds.
func MessagesOfFolder(mailbox, folder string) string {
	return MailPrefix + "." + Token(mailbox) + ".*." + Token(folder)
}

// Listing returns the subject of the record listing a mailbox's folders.
func Listing(mailbox string) string {
	return MailPrefix + "." + Token(mailbox) + "." + KindListing
}

// End returns the subject of the record that closes one extraction pass.
// The pass is in the subject so that whether a pass's extraction finished,
// and where its end lies in the stream, is one lookup. It takes six tokens,
// so the five-token folder filters never match it.
func End(mailbox, pass string) string {
	return MailPrefix + "." + Token(mailbox) + ".pass." + Token(pass) + "." + KindEnd
}

// Job returns the subject of a mailbox's pass jobs (extract, then load).
// The last message on it is the mailbox's newest pass, which supersedes
// every older one.
func Job(mailbox string) string { return JobPrefix + "." + Token(mailbox) }

// LoaderJob returns the subject of a mailbox's loader-only jobs (retries of
// dead letters, replays), which supersede no pass.
func LoaderJob(mailbox string) string { return JobPrefix + "." + Token(mailbox) + ".loader" }

// Event returns the subject of a lifecycle event of the given type (e.g.
// "mailbox.extracted") about key (a mailbox, a domain).
func Event(typ, key string) string { return EventPrefix + "." + typ + "." + Token(key) }

// Progress returns the subject of a service's progress for a mailbox.
func Progress(service, mailbox string) string {
	return ProgressPrefix + "." + service + "." + Token(mailbox)
}

// Dead returns the subject of a dead letter for a mailbox.
func Dead(mailbox string) string { return DeadPrefix + "." + Token(mailbox) }

// SourceID is the stable identity of a source message: the Nats-Msg-Id of
// its record, the loader's ledger key and the name every report uses. Its
// third part is the folder's Numbering.
func SourceID(mailbox, folder string, uidValidity, epoch, uid uint32) string {
	return fmt.Sprintf("%s.%s.%s.%d", Token(mailbox), Token(folder), Numbering(uidValidity, epoch), uid)
}

// Numbering names one numbering of a source folder's UIDs, one token in
// both a subject and a key-value key: its UIDVALIDITY, and when the
// extractor found the folder renumbered under that same UIDVALIDITY
// (epoch > 0; MailEnable renumbers a folder whose index it rebuilds),
// "-e" and the epoch: "1234", "1234-e2". Epoch 0 is the UIDVALIDITY
// alone, as every identity was written before epochs existed.
func Numbering(uidValidity, epoch uint32) string {
	if epoch == 0 {
		return strconv.FormatUint(uint64(uidValidity), 10)
	}
	return fmt.Sprintf("%d-e%d", uidValidity, epoch)
}

// ParseNumbering reverses Numbering.
func ParseNumbering(s string) (uidValidity, epoch uint32, err error) {
	v, e, renumbered := strings.Cut(s, "-e")
	uv, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("numbering %q: %w", s, err)
	}
	if !renumbered {
		return uint32(uv), 0, nil
	}
	ep, err := strconv.ParseUint(e, 10, 32)
	if err != nil || ep == 0 {
		return 0, 0, fmt.Errorf("numbering %q: bad epoch", s)
	}
	return uint32(uv), uint32(ep), nil
}

// Key encodes s as one token of a JetStream key-value key, whose alphabet
// is narrower than a subject's: bytes outside [A-Za-z0-9_-] become =XX.
func Key(s string) string {
	if s == "" {
		return "="
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "=%02X", c)
	}
	return b.String()
}
