// Package mailscan reads a folder's messages as fingerprints: UID, SHA-256
// of the exact bytes, size, flags and INTERNALDATE, streaming each body
// through the hash so no message is ever held in memory. The loader
// reconciles against it and the verifier compares with it.
package mailscan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailferry/mailferry/shared/imapdial"
)

// Message is a message's fingerprint.
type Message struct {
	UID    uint32
	SHA256 string
	// LinesSHA256 is the SHA-256 of the bytes with line endings
	// normalised to CRLF (see LineNormalizer).
	LinesSHA256 string
	// LooseSHA256 is the SHA-256 of the loose form (see LooseSHA256), ""
	// when it is the same as the line-normalised one.
	LooseSHA256  string
	Size         int64
	Flags        []string // sorted, without \Recent
	InternalDate time.Time
	// NotMail is the kind of non-mail item the message is (see
	// NotMail), "" for mail.
	NotMail string
}

// Scan selects folder read-only and calls fn for every message with a UID
// of at least from, in UID order. idle bounds the time without progress.
func Scan(ctx context.Context, c *imapclient.Client, folder string, from uint32, idle time.Duration, fn func(Message) error) (*imap.SelectData, error) {
	wd := imapdial.Watch(ctx, c, idle)
	defer wd.Stop()
	sel, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return nil, fmt.Errorf("examine %q: %w", folder, wd.Err(err))
	}
	if sel.NumMessages == 0 {
		return sel, nil
	}
	if from == 0 {
		from = 1
	}
	set := imap.UIDSet{}
	set.AddRange(imap.UID(from), 0)
	err = fetch(c, wd, folder, set, func(m Message) error {
		if m.UID < from {
			return nil // "UID n:*" returns the last message even below n
		}
		return fn(m)
	})
	return sel, err
}

// Fetch calls fn with the fingerprint of each of uids that the folder c
// has selected still holds, in the server's order. idle bounds the time
// without progress. The loader reads back with it what a target stored.
func Fetch(ctx context.Context, c *imapclient.Client, folder string, uids []uint32, idle time.Duration, fn func(Message) error) error {
	if len(uids) == 0 {
		return nil
	}
	wd := imapdial.Watch(ctx, c, idle)
	defer wd.Stop()
	set := imap.UIDSet{}
	for _, u := range uids {
		set.AddNum(imap.UID(u))
	}
	return fetch(c, wd, folder, set, fn)
}

func fetch(c *imapclient.Client, wd *imapdial.Watchdog, folder string, set imap.UIDSet, fn func(Message) error) error {
	cmd := c.Fetch(set, &imap.FetchOptions{
		UID: true, Flags: true, InternalDate: true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	})
	var ferr error
	for {
		msg := cmd.Next()
		if msg == nil {
			break
		}
		wd.Kick()
		if ferr != nil {
			continue
		}
		m, err := read(msg)
		if errors.Is(err, errBodyRead) {
			// Draining would make go-imap read the failed literal
			// again, racing with its own reader: end the connection
			// (it is broken anyway) and leave the command alone.
			imapdial.Abort(c)
			return fmt.Errorf("fetch %q: %w", folder, wd.Err(err))
		}
		if err != nil {
			ferr = fmt.Errorf("fetch %q: %w", folder, err)
			continue
		}
		ferr = fn(m)
	}
	if err := cmd.Close(); err != nil && ferr == nil {
		ferr = fmt.Errorf("fetch %q: %w", folder, wd.Err(err))
	}
	return ferr
}

// errBodyRead marks a failed read of a message's literal.
var errBodyRead = errors.New("read body")

func read(msg *imapclient.FetchMessageData) (Message, error) {
	var m Message
	body := false
	for {
		item := msg.Next()
		if item == nil {
			break
		}
		switch it := item.(type) {
		case imapclient.FetchItemDataUID:
			m.UID = uint32(it.UID)
		case imapclient.FetchItemDataFlags:
			m.Flags = NormalizeFlags(it.Flags)
		case imapclient.FetchItemDataInternalDate:
			m.InternalDate = it.Time
		case imapclient.FetchItemDataBodySection:
			if it.Literal == nil {
				return m, fmt.Errorf("seq %d: NIL body", msg.SeqNum)
			}
			sums := NewSums()
			var head Head
			n, err := io.Copy(io.MultiWriter(sums, &head), it.Literal)
			if err != nil {
				return m, fmt.Errorf("seq %d: %w: %w", msg.SeqNum, errBodyRead, err)
			}
			m.Size, body = n, true
			m.SHA256, m.LinesSHA256 = sums.Hex()
			m.LooseSHA256 = sums.LooseHex()
			m.NotMail = head.NotMail()
		}
	}
	if !body {
		return m, fmt.Errorf("seq %d: no body", msg.SeqNum)
	}
	return m, nil
}

// NormalizeFlags sorts flags, drops \Recent, spells system flags the
// standard way and keywords in lower case (flag names are
// case-insensitive, RFC 3501 2.3.2), so two servers' answers compare equal.
func NormalizeFlags(in []imap.Flag) []string {
	out := make([]string, 0, len(in))
	for _, f := range in {
		s := string(f)
		if strings.HasPrefix(s, `\`) && len(s) > 1 {
			if strings.EqualFold(s, `\Recent`) {
				continue
			}
			s = `\` + strings.ToUpper(s[1:2]) + strings.ToLower(s[2:])
		} else {
			s = strings.ToLower(s)
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
