package verify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/campaign"
	"github.com/mailferry/mailferry/shared/kvjson"
	"github.com/mailferry/mailferry/shared/subject"
)

// An accepted difference is a difference a person looked at, explained
// and let stand (`mailferry verify accept`), so that the mailbox, and its
// domain, can close. It is kept in the campaign bucket and matches the
// same difference in every later verification: a difference matches an
// accepted one when both are of the same mailbox, kind and folder (the
// source folder; for extra the target folder) and name the same message,
// that is when
//
//   - their content hashes (SHA256: the source message's, an extra one's
//     the target's) are equal, or
//   - both carry a Message-ID and it is the same,
//
// never by UID: a message appended again gets another UID at the target,
// and the source's UIDs change when a folder is rebuilt. The Message-ID
// keeps an acceptance when a server rewrote the bytes of a copy made
// again; a message without one matches by its hash alone. Every copy of
// an accepted message (same bytes, same folder and kind) is accepted with
// it. A difference of another kind of the same message is not: a missing
// message accepted does not accept its flags once it arrives.
type Accepted struct {
	// Mailbox is the source mailbox the difference is of.
	Mailbox   string `json:"mailbox"`
	Kind      string `json:"kind"`
	Folder    string `json:"folder"`
	SHA256    string `json:"sha256"`
	MessageID string `json:"message_id,omitempty"`
	// UID, Subject, Want and Got are what the difference was when it was
	// accepted, for people; they are not matched on.
	UID     uint32 `json:"uid,omitempty"`
	Subject string `json:"subject,omitempty"`
	Want    string `json:"want,omitempty"`
	Got     string `json:"got,omitempty"`
	// Reason is why the difference may stand, By who accepted it (the
	// operating-system user) and At when.
	Reason string    `json:"reason"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
}

// Accept is the acceptance of d, a difference of mailbox, for reason,
// by by at at.
func Accept(mailbox string, d Diff, reason, by string, at time.Time) Accepted {
	return Accepted{Mailbox: mailbox, Kind: d.Kind, Folder: d.Folder, SHA256: d.SHA256, MessageID: d.MessageID,
		UID: d.UID, Subject: d.Subject, Want: d.Want, Got: d.Got, Reason: reason, By: by, At: at.UTC()}
}

// Matches reports whether d, a difference of mailbox, is the one a
// accepted (see Accepted for the rule).
func (a Accepted) Matches(mailbox string, d Diff) bool {
	if a.Mailbox != mailbox || a.Kind != d.Kind || a.Folder != d.Folder {
		return false
	}
	return a.SHA256 != "" && a.SHA256 == d.SHA256 || a.MessageID != "" && a.MessageID == d.MessageID
}

// same reports whether a and b accept the same differences: one of them
// is enough.
func (a Accepted) same(b Accepted) bool {
	return a.Mailbox == b.Mailbox && a.Kind == b.Kind && a.Folder == b.Folder && a.SHA256 == b.SHA256 && a.MessageID == b.MessageID
}

// AcceptedDiff is a difference found and accepted: it does not make its
// mailbox differ.
type AcceptedDiff struct {
	Diff
	Reason     string    `json:"reason"`
	AcceptedBy string    `json:"accepted_by"`
	AcceptedAt time.Time `json:"accepted_at"`
}

// Acceptances is a mailbox's record of accepted differences, in the
// campaign bucket under AcceptedKey.
type Acceptances struct {
	Mailbox  string     `json:"mailbox"`
	Accepted []Accepted `json:"accepted"`
}

// prefixAccepted starts the keys of the accepted differences:
// "accepted.<domain>.<mailbox>", each a subject.Key token, like the
// campaign's own keys (shared/campaign).
const prefixAccepted = "accepted."

// AcceptedKey is the key of a mailbox's accepted differences in the
// campaign bucket (broker.BucketCampaign).
func AcceptedKey(mailbox string) string {
	return prefixAccepted + subject.Key(campaign.DomainOf(mailbox)) + "." + subject.Key(mailbox)
}

// LoadAccepted reads a mailbox's accepted differences from the campaign
// bucket; none when there are none.
func LoadAccepted(ctx context.Context, kv kvjson.Bucket, mailbox string) ([]Accepted, error) {
	e, err := kvjson.Get[Acceptances](ctx, kv, AcceptedKey(mailbox))
	if err != nil {
		return nil, fmt.Errorf("read the accepted differences of %s: %w", mailbox, err)
	}
	return e.V.Accepted, nil
}

// acceptAttempts bounds StoreAccepted's compare-and-set: every writer of
// a mailbox may collide with every other, and a crowd of them must all
// get through.
const acceptAttempts = 256

// StoreAccepted adds as to their mailbox's record by compare-and-set, so
// that any number of processes may accept differences of one mailbox at
// once and none is lost; one already accepted (the same message, kind and
// folder) is kept as it was, not added twice. It returns those it added.
// Every element of as must be of mailbox.
func StoreAccepted(ctx context.Context, kv kvjson.Bucket, mailbox string, as []Accepted) ([]Accepted, error) {
	for _, a := range as {
		if a.Mailbox != mailbox {
			return nil, fmt.Errorf("accept a difference of %s as one of %s", a.Mailbox, mailbox)
		}
	}
	var added []Accepted
	_, err := kvjson.Update(ctx, kv, AcceptedKey(mailbox), func(e *kvjson.Entry[Acceptances]) error {
		added = nil
		e.V.Mailbox = mailbox
		for _, a := range as {
			if slices.ContainsFunc(e.V.Accepted, a.same) {
				continue
			}
			e.V.Accepted = append(e.V.Accepted, a)
			added = append(added, a)
		}
		if len(added) == 0 {
			return kvjson.ErrSkip
		}
		return nil
	}, kvjson.Attempts(acceptAttempts))
	if err != nil {
		return nil, fmt.Errorf("record the accepted differences of %s: %w", mailbox, err)
	}
	return added, nil
}

// AcceptedBucket binds the campaign bucket, where accepted differences
// are kept, for reading; nil and no error when nobody has created it yet
// (nothing was ever accepted).
func AcceptedBucket(ctx context.Context, b *broker.Broker) (jetstream.KeyValue, error) {
	var missing *broker.MissingError
	err := b.Use(ctx, broker.Needs{Reads: []string{broker.BucketCampaign}})
	if errors.As(err, &missing) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("accepted differences: %w", err)
	}
	kv, err := b.JS.KeyValue(ctx, broker.BucketCampaign)
	if err != nil {
		return nil, fmt.Errorf("accepted differences: open bucket %s: %w", broker.BucketCampaign, err)
	}
	return kv, nil
}

// WithAccepted makes verify report the differences list accepted as
// accepted (FolderReport.Accepted), not as differences: they do not make
// a mailbox differ. Each applies only to its own mailbox.
func WithAccepted(list []Accepted) Option {
	return func(o *options) { o.accepted = append(o.accepted, list...) }
}

// WithAcceptedFrom is WithAccepted with each mailbox's accepted
// differences read from kv, the campaign bucket (see AcceptedBucket), as
// it is verified; a record that cannot be read is the mailbox's error.
func WithAcceptedFrom(kv kvjson.Bucket) Option {
	return func(o *options) { o.acceptedKV = kv }
}

// applyAccepted moves the differences of mr that were accepted to the
// Accepted lists of their folders.
func applyAccepted(mr *MailboxReport, accepted []Accepted) {
	for i := range mr.Folders {
		f := &mr.Folders[i]
		var keep []Diff
		for _, d := range f.Differences {
			j := slices.IndexFunc(accepted, func(a Accepted) bool { return a.Matches(mr.Source, d) })
			if j < 0 {
				keep = append(keep, d)
				continue
			}
			a := accepted[j]
			f.Accepted = append(f.Accepted, AcceptedDiff{Diff: d, Reason: a.Reason, AcceptedBy: a.By, AcceptedAt: a.At})
		}
		f.Differences = keep
		mr.Accepted += len(f.Accepted)
	}
}
