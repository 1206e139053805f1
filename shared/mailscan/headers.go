package mailscan

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"strings"
	"time"
	"unicode"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailferry/mailferry/shared/imapdial"
)

// Header is what a person needs to recognise a message in a report: its
// Date, From, Subject and Message-ID header fields as display text
// (RFC 2047 words decoded, control bytes and invalid UTF-8 replaced). A
// field that is absent is "", one that cannot be decoded is shown as it
// is: a header is never a reason to fail.
type Header struct {
	Date      string `json:"date,omitempty"`
	From      string `json:"from,omitempty"`
	Subject   string `json:"subject,omitempty"`
	MessageID string `json:"message_id,omitempty"`
}

// headerFields are the fields Headers asks for.
var headerFields = []string{"Date", "From", "Subject", "Message-ID"}

// headerBatch bounds the UIDs of one FETCH, so that a scattered set does
// not make a command line longer than servers accept.
const headerBatch = 500

// maxHeaderBytes bounds what is read of one message's header fields; the
// rest is skipped.
const maxHeaderBytes = 16 << 10

// maxFieldRunes bounds one field's display text.
const maxFieldRunes = 300

// Headers selects folder read-only and returns the Header of each of uids
// it still holds, fetching only those fields (BODY.PEEK[HEADER.FIELDS]),
// so that a report can name a few messages of a folder it scanned without
// holding the folder's headers. The caller compares the returned
// UIDVALIDITY with the one it scanned. idle bounds the time without
// progress.
func Headers(ctx context.Context, c *imapclient.Client, folder string, uids []uint32, idle time.Duration) (map[uint32]Header, *imap.SelectData, error) {
	wd := imapdial.Watch(ctx, c, idle)
	defer wd.Stop()
	sel, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return nil, nil, fmt.Errorf("examine %q: %w", folder, wd.Err(err))
	}
	out := make(map[uint32]Header, len(uids))
	for len(uids) > 0 {
		n := min(len(uids), headerBatch)
		set := imap.UIDSet{}
		for _, u := range uids[:n] {
			set.AddNum(imap.UID(u))
		}
		uids = uids[n:]
		if err := fetchHeaders(c, wd, folder, set, out); err != nil {
			return nil, nil, err
		}
	}
	return out, sel, nil
}

func fetchHeaders(c *imapclient.Client, wd *imapdial.Watchdog, folder string, set imap.UIDSet, out map[uint32]Header) error {
	cmd := c.Fetch(set, &imap.FetchOptions{
		UID:         true,
		BodySection: []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierHeader, HeaderFields: headerFields, Peek: true}},
	})
	for {
		msg := cmd.Next()
		if msg == nil {
			break
		}
		wd.Kick()
		var uid uint32
		var h Header
		for {
			item := msg.Next()
			if item == nil {
				break
			}
			switch it := item.(type) {
			case imapclient.FetchItemDataUID:
				uid = uint32(it.UID)
			case imapclient.FetchItemDataBodySection:
				if it.Literal == nil {
					continue
				}
				raw, err := io.ReadAll(io.LimitReader(it.Literal, maxHeaderBytes))
				if err == nil {
					_, err = io.Copy(io.Discard, it.Literal)
				}
				if err != nil {
					imapdial.Abort(c)
					return fmt.Errorf("fetch headers of %q: %w", folder, wd.Err(err))
				}
				h = ParseHeader(raw)
			}
		}
		if uid != 0 {
			out[uid] = h
		}
	}
	if err := cmd.Close(); err != nil {
		return fmt.Errorf("fetch headers of %q: %w", folder, wd.Err(err))
	}
	return nil
}

// ParseHeader reads Date, From, Subject and Message-ID from a message's
// header (or the start of one), leniently: lines end in LF, CRLF or a
// lone CR, folded lines are joined, a line without a colon is skipped and
// the first of repeated fields counts.
func ParseHeader(raw []byte) Header {
	var h Header
	seen := map[string]bool{}
	var name string
	var value []byte
	flush := func() {
		if name == "" || seen[name] {
			name = ""
			return
		}
		seen[name] = true
		v := string(value)
		switch name {
		case "date":
			h.Date = display(v, false)
		case "from":
			h.From = display(v, true)
		case "subject":
			h.Subject = display(v, true)
		case "message-id":
			h.MessageID = display(v, false)
		}
		name = ""
	}
	for _, line := range splitLines(raw) {
		if len(line) == 0 {
			break // the header's end
		}
		if line[0] == ' ' || line[0] == '\t' {
			if name != "" {
				value = append(value, line...)
			}
			continue
		}
		flush()
		i := bytes.IndexByte(line, ':')
		if i <= 0 {
			continue
		}
		name = strings.ToLower(strings.TrimSpace(string(line[:i])))
		value = append(value[:0], line[i+1:]...)
	}
	flush()
	return h
}

// splitLines splits b at LF, CRLF and lone CR.
func splitLines(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := bytes.IndexAny(b, "\r\n")
		if i < 0 {
			out = append(out, b)
			break
		}
		out = append(out, b[:i])
		if b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n' {
			i++
		}
		b = b[i+1:]
	}
	return out
}

var wordDecoder = &mime.WordDecoder{}

// display makes a field's value printable: RFC 2047 words decoded when
// decode is set and they can be (words in charsets Go does not know stay
// as they are), invalid UTF-8 and control characters replaced, runs of
// white space made one space, and the text cut to maxFieldRunes.
func display(v string, decode bool) string {
	if decode && strings.Contains(v, "=?") {
		if d, err := wordDecoder.DecodeHeader(v); err == nil {
			v = d
		}
	}
	v = strings.ToValidUTF8(v, "\uFFFD")
	var b strings.Builder
	space, n := false, 0
	for _, r := range v {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			space = b.Len() > 0
			continue
		}
		// The space a run of white space became counts too.
		if space && n < maxFieldRunes {
			b.WriteByte(' ')
			n++
		}
		space = false
		if n == maxFieldRunes {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}
