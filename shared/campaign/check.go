package campaign

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/mailferry/mailferry/shared/kvjson"
	"github.com/mailferry/mailferry/shared/subject"
)

// prefixCheck starts the keys of the mailboxes' last verification
// results: "check.<domain>.<mailbox>".
const prefixCheck = "check."

// Check is the last verification of a mailbox the campaign ran: its pass,
// when, and the verifier's report of the mailbox as JSON (the shape of
// cmd/mailferry/verify.MailboxReport, which shared cannot import), kept
// for the domain's report and `cutover status`.
type Check struct {
	Mailbox     string          `json:"mailbox"`
	Pass        string          `json:"pass"`
	At          time.Time       `json:"at"`
	OK          bool            `json:"ok"`
	Differences int64           `json:"differences"`
	Report      json.RawMessage `json:"report"`
}

// CheckKey is the key of the last verification result of a mailbox of
// domain.
func CheckKey(domain, mailbox string) string {
	return prefixCheck + subject.Key(NormalizeDomain(domain)) + "." + subject.Key(mailbox)
}

// PutCheck records c as its mailbox's last verification, replacing the
// one before.
func (s *Store) PutCheck(ctx context.Context, c Check) error {
	_, err := kvjson.Update(ctx, s.kv, CheckKey(s.Domains.Of(c.Mailbox), c.Mailbox), func(e *kvjson.Entry[Check]) error {
		e.V = c
		return nil
	}, kvjson.Attempts(8), kvjson.ResetUndecodable())
	if err != nil {
		return fmt.Errorf("record verification of %s: %w", c.Mailbox, err)
	}
	return nil
}

// Check reads the last verification result of a mailbox of domain; ok is
// false when the campaign has verified it never.
func (s *Store) Check(ctx context.Context, domain, mailbox string) (c Check, ok bool, err error) {
	e, err := kvjson.Get[Check](ctx, s.kv, CheckKey(domain, mailbox))
	if err != nil {
		return Check{}, false, fmt.Errorf("read verification of %s: %w", mailbox, err)
	}
	return e.V, e.Exists(), nil
}
