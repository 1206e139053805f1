// Package mailgen makes random mail for tests and dev tools (the demo, the
// end-to-end tests, bench and chaos): RFC 5322 messages with CRLF lines
// only, of a wanted size (plain text when small, text plus a base64
// attachment when large), with names and subjects in several scripts,
// dates in several zones, flags and keywords, spread over nested and
// non-ASCII folders. Everything is drawn from the *rand.Rand it is given,
// in a fixed order: the same seed gives the same mail.
package mailgen

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"mime"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Rand returns the generator for seed.
func Rand(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// Special are folders every mailbox has; they are special-use on the
// test servers. Some stay empty.
var Special = []string{"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"}

// Nested are folders to draw from: nested, non-ASCII, with spaces and with
// '&' (escaped in modified UTF-7). None contains '.', a target's
// separator, so every tool can reproduce every name.
var Nested = []string{
	"Archive/2019", "Archive/2019/Q1", "Archive/2020", "Archive/2021/Projekte",
	"Entwürfe", "Projekte/Überblick", "日本語/メール", "Kunden/Müller & Söhne",
	"Newsletter", "Receipts 2023", "Lists/golang-nuts", "Reisen/Zürich",
}

// Keywords are the IMAP keywords Flags draws from.
var Keywords = []string{"$Forwarded", "$Label1", "$MDNSent", "Work", "NonJunk"}

var words = strings.Fields(`the of and to in is that for it with as was on be by this are from or
have an they which one you had not but what all were when we there can more if out so said
use each she do how their time will up other about many then them these some her would make
like him into has look two more write go see number no way could people my than first water
been call who oil its now find long down day did get come made may part Angebot Rechnung
Grüße Bestellung Lieferung Übersicht Straße Größe naïve café résumé 会議 資料 よろしく
quarterly report invoice meeting agenda budget project release deadline review draft`)

var names = []string{"Anna Schmidt", "Bob Miller", "Chloé Dubois", "Dmitri Ivanov", "Eva Müller",
	"Frank Weber", "Grace Hopper", "Hiro Tanaka", "Ingrid Berg", "Jamal Khan"}

var zones = []*time.Location{time.UTC, time.FixedZone("", 3600), time.FixedZone("", 7200), time.FixedZone("", -5*3600), time.FixedZone("", 9*3600)}

// Sizes is a long-tailed (lognormal) size distribution: half of the draws
// are below Median, and Sigma sets how far the tail reaches; draws are
// clamped to [Min, Max].
type Sizes struct {
	Median int64
	Sigma  float64
	Min    int64
	Max    int64
}

// Draw returns one size.
func (s Sizes) Draw(rng *rand.Rand) int64 {
	n := int64(math.Exp(math.Log(float64(s.Median)) + s.Sigma*rng.NormFloat64()))
	return min(max(n, s.Min), s.Max)
}

// Flags draws system flags and at most one keyword, as a mailbox has
// them: most mail seen, some answered or flagged, drafts in Drafts, a
// rare \Deleted.
func Flags(rng *rand.Rand, folder string) []string {
	var out []string
	if rng.IntN(10) < 7 {
		out = append(out, `\Seen`)
	}
	if rng.IntN(100) < 15 {
		out = append(out, `\Answered`)
	}
	if rng.IntN(100) < 8 {
		out = append(out, `\Flagged`)
	}
	if folder == "Drafts" || rng.IntN(100) < 1 {
		out = append(out, `\Draft`)
	}
	if rng.IntN(100) < 1 {
		out = append(out, `\Deleted`)
	}
	if rng.IntN(5) == 0 {
		out = append(out, Keywords[rng.IntN(len(Keywords))])
	}
	return out
}

// Date is a whole second between 2005 and 2025.
func Date(rng *rand.Rand) time.Time {
	return time.Unix(1104537600+rng.Int64N(631_152_000), 0)
}

// Spec says what message to make.
type Spec struct {
	// To is the recipient.
	To string
	// Size is about how many bytes the message has (never fewer than its
	// headers).
	Size int64
	// Date is the Date header's instant, written in a random zone.
	Date time.Time
	// Subject is the subject; a random sentence when empty.
	Subject string
	// ID, with a random suffix, makes the Message-ID unique; without
	// one, NoID leaves the header out (as some real mail does).
	ID   string
	NoID bool
	// Attachment names the attachment of a large message
	// ("document.pdf" when empty).
	Attachment string
}

// Message returns an RFC 5322 message as spec says, with CRLF line
// endings only: plain text below 48 KiB, otherwise text plus a base64
// attachment of random bytes.
func Message(rng *rand.Rand, spec Spec) []byte {
	var b bytes.Buffer
	b.Grow(int(spec.Size) + 256)
	from := names[rng.IntN(len(names))]
	fromAddr := strings.ToLower(strings.Fields(from)[1]) + "@partner.example"
	zone := zones[rng.IntN(len(zones))]
	subject := spec.Subject
	if subject == "" {
		subject = sentence(rng, 3+rng.IntN(6))
	}
	crlf := func(format string, args ...any) {
		fmt.Fprintf(&b, format, args...)
		b.WriteString("\r\n")
	}
	date := spec.Date.In(zone).Format(time.RFC1123Z)
	crlf("Return-Path: <%s>", fromAddr)
	crlf("Received: from mx.partner.example (mx.partner.example [192.0.2.%d])", 1+rng.IntN(254))
	crlf("\tby imap.old.example with ESMTPS id %016x", rng.Uint64())
	crlf("\tfor <%s>; %s", spec.To, date)
	crlf("From: %s <%s>", mime.QEncoding.Encode("utf-8", from), fromAddr)
	crlf("To: <%s>", spec.To)
	crlf("Subject: %s", mime.QEncoding.Encode("utf-8", subject))
	crlf("Date: %s", date)
	if !spec.NoID {
		crlf("Message-ID: <%s.%016x@old.example>", spec.ID, rng.Uint64())
	}
	crlf("MIME-Version: 1.0")
	if spec.Size < 48<<10 {
		crlf("Content-Type: text/plain; charset=utf-8")
		crlf("Content-Transfer-Encoding: 8bit")
		crlf("")
		writeText(&b, rng, int(spec.Size))
		return b.Bytes()
	}
	boundary := fmt.Sprintf("=_%016x", rng.Uint64())
	crlf("Content-Type: multipart/mixed; boundary=\"%s\"", boundary)
	crlf("")
	crlf("This is a multi-part message in MIME format.")
	crlf("")
	crlf("--%s", boundary)
	crlf("Content-Type: text/plain; charset=utf-8")
	crlf("Content-Transfer-Encoding: 8bit")
	crlf("")
	writeText(&b, rng, b.Len()+300+rng.IntN(3000))
	crlf("")
	crlf("--%s", boundary)
	name := spec.Attachment
	if name == "" {
		name = "document.pdf"
	}
	crlf("Content-Type: application/pdf; name=\"%s\"", name)
	crlf("Content-Disposition: attachment; filename=\"%s\"", name)
	crlf("Content-Transfer-Encoding: base64")
	crlf("")
	closing := len(boundary) + 8
	var raw [57]byte
	line := make([]byte, base64.StdEncoding.EncodedLen(len(raw)))
	for int64(b.Len()+closing) < spec.Size {
		for i := 0; i < len(raw); i += 8 {
			var w [8]byte
			binary.LittleEndian.PutUint64(w[:], rng.Uint64())
			copy(raw[i:], w[:])
		}
		base64.StdEncoding.Encode(line, raw[:])
		b.Write(line)
		b.WriteString("\r\n")
	}
	crlf("")
	crlf("--%s--", boundary)
	return b.Bytes()
}

// Big returns a message of about size bytes, the same for the same size
// and tag (its Subject and Message-ID): one base64 body, no randomness.
func Big(size int, tag string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: big@old.example\r\nTo: user@old.example\r\nSubject: %s\r\nMessage-ID: <%s@old.example>\r\n"+
		"MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n", tag, tag)
	line := []byte("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n")
	for b.Len() < size {
		b.Write(line)
	}
	return b.Bytes()
}

// writeText appends lines of words (at most 76 bytes, CRLF) until b holds
// about until bytes.
func writeText(b *bytes.Buffer, rng *rand.Rand, until int) {
	for b.Len() < until {
		n := 0
		for n < 60 {
			w := words[rng.IntN(len(words))]
			if n > 0 {
				b.WriteByte(' ')
				n++
			}
			b.WriteString(w)
			n += len(w)
		}
		b.WriteString("\r\n")
	}
}

func sentence(rng *rand.Rand, n int) string {
	ws := make([]string, n)
	for i := range ws {
		ws[i] = words[rng.IntN(len(words))]
	}
	s := strings.Join(ws, " ")
	r, n0 := utf8.DecodeRuneInString(s)
	return string(unicode.ToUpper(r)) + s[n0:]
}
