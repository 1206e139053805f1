package loader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/services/loader/imapappend"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/subject"
)

// How a message was dealt with, as written in its ledger entry.
const (
	howAppended = "appended"
	howPresent  = "present"
	howDead     = "dead"
)

// record writes the ledger entry of got (target UIDs in uids when
// appended) and moves the folder's watermark along the PrevUID chain.
func (ss *session) record(ctx context.Context, got []pending, uids []uint32, how string) error {
	_, err := ss.recordEntry(ctx, got, uids, how)
	return err
}

// recordEntry is record, returning the mapping entry it wrote (nil for no
// messages) so that what a read-back of the stored copies finds can be
// added to it.
func (ss *session) recordEntry(ctx context.Context, got []pending, uids []uint32, how string) (*casEntry[Mapping], error) {
	fr := ss.cur
	var e *casEntry[Mapping]
	if len(got) > 0 {
		var err error
		if e, err = ss.writeEntries(ctx, got, uids, how); err != nil {
			return nil, err
		}
	}
	for i, p := range got {
		// A message counts as loaded once: when first dealt with, or
		// when a retry loads the dead letter it was.
		if how != howDead && (!fr.done(p.rec.UID) || len(ss.j.Retry) > 0) {
			fr.st.V.Loaded++
			fr.st.V.LoadedBytes += p.rec.Size
		}
		fr.st.V.Done = append(fr.st.V.Done, DoneItem{UID: p.rec.UID, Prev: p.rec.PrevUID})
		switch how {
		case howAppended:
			fr.st.V.Appended++
			fr.st.V.LastTargetUID = max(fr.st.V.LastTargetUID, uids[i])
			ss.stats.Appended++
			ss.stats.Bytes += p.rec.Size
		case howDead:
			fr.st.V.Dead++
			ss.stats.Dead++
		}
	}
	settle(&fr.st.V)
	if err := fr.st.save(ctx, ss.svc.Broker.Ledger); err != nil {
		return e, err
	}
	if how == howAppended {
		var size int64
		for _, p := range got {
			size += p.rec.Size
		}
		ss.svc.Metrics.Appended(len(got), size)
	}
	return e, nil
}

// settle moves LastUID along the chain: a done message whose predecessor
// is at or below LastUID closes the gap up to itself, since the source had
// nothing between the two. Messages whose chain is still open stay in Done.
func settle(st *FolderState) {
	for moved := true; moved; {
		moved = false
		keep := st.Done[:0]
		for _, d := range st.Done {
			switch {
			case d.UID <= st.LastUID:
			case d.Prev <= st.LastUID:
				st.LastUID, moved = d.UID, true
			default:
				keep = append(keep, d)
			}
		}
		st.Done = keep
	}
	slices.SortFunc(st.Done, func(a, b DoneItem) int { return int(a.UID) - int(b.UID) })
	st.Done = slices.CompactFunc(st.Done, func(a, b DoneItem) bool { return a.UID == b.UID })
	if len(st.Done) == 0 {
		st.Done = nil
	}
}

// writeEntries records where got landed, in one ledger entry. The key is
// the batch's first source UID; a batch dealt with again (a retry, a
// replay) overwrites it, hence a plain put. The entry returned holds the
// revision written, so later additions are compare-and-set.
func (ss *session) writeEntries(ctx context.Context, got []pending, uids []uint32, how string) (*casEntry[Mapping], error) {
	fr := ss.cur
	m := Mapping{Folder: fr.src, UIDValidity: fr.uidv, Epoch: fr.epoch, TargetFolder: fr.target, How: how, Items: make([]MappingItem, 0, len(got))}
	if uids != nil {
		m.TargetUIDValidity = fr.st.V.TargetUIDValidity
	}
	for i, p := range got {
		it := MappingItem{UID: p.rec.UID, SHA256: p.rec.SHA256}
		if uids != nil {
			it.TargetUID = uids[i]
		}
		m.Items = append(m.Items, it)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode mapping: %w", err)
	}
	key := MappingKey(ss.j.SourceUser, fr.src, fr.uidv, fr.epoch, got[0].rec.UID)
	kv := ss.svc.Broker.Ledger
	var rev uint64
	if how == howPresent {
		// Found again by a replay: an appended entry under this key says
		// where the copies are (and which the target altered), which
		// "present" must not erase.
		old, gerr := kv.Get(ctx, key)
		var prev Mapping
		switch {
		case errors.Is(gerr, jetstream.ErrKeyNotFound):
			rev, err = kv.Create(ctx, key, b)
		case gerr != nil:
			return nil, fmt.Errorf("read ledger %s: %w", key, gerr)
		case json.Unmarshal(old.Value(), &prev) == nil && prev.How == howAppended:
			return nil, nil
		default:
			rev, err = kv.Update(ctx, key, b, old.Revision())
		}
	} else {
		rev, err = kv.Put(ctx, key, b)
	}
	if err != nil {
		return nil, fmt.Errorf("write ledger %s: %w", key, err)
	}
	return &casEntry[Mapping]{key: key, rev: rev, V: m}, nil
}

// permanent says whether a refusal will not go away by retrying the same
// bytes: the message is too big, over quota, or its bytes are refused.
func permanent(se *imapappend.ServerError) bool {
	if se.Status == "BAD" {
		return true
	}
	switch strings.ToUpper(se.Code) {
	case "UNAVAILABLE", "INUSE", "SERVERBUG", "TRYCREATE", "EXPUNGEISSUED", "NOPERM", "AUTHORIZATIONFAILED":
		// LIMIT (Dovecot's answer to a message over its size limit)
		// and TOOBIG are about this message and stay.
		return false
	}
	return true
}

// DeadLetter is a message the target refused for good, as recorded in
// the dead-letter stream and reported in a message.dead_lettered event.
type DeadLetter = event.DeadLetteredData

func (ss *session) deadLetter(ctx context.Context, p pending, se *imapappend.ServerError) error {
	return ss.deadLetterFor(ctx, p, se.Line, se.Code, se.Text)
}

// deadLetterFor dead-letters p: response and code are the target's answer
// ("" when the message never reached it), reason says why.
func (ss *session) deadLetterFor(ctx context.Context, p pending, response, code, reason string) error {
	fr := ss.cur
	dl := DeadLetter{
		ID: p.rec.ID(), Mailbox: ss.j.SourceUser, TargetUser: ss.j.TargetUser, Folder: fr.src, TargetFolder: fr.target,
		UIDValidity: fr.uidv, Epoch: fr.epoch, UID: p.rec.UID, Size: p.rec.Size, SHA256: p.rec.SHA256, StreamSeq: p.seq,
		Response: response, Code: code, Reason: reason, Time: time.Now().UTC(),
	}
	if err := ss.publishDead(ctx, dl); err != nil {
		return err
	}
	l := ss.log.Error().Str("id", dl.ID).Str("folder", fr.src).Uint32("uid", dl.UID).Int64("size", dl.Size)
	if response != "" {
		l = l.Str("response", response)
	} else {
		l = l.Str("reason", reason)
	}
	l.Msg("message dead-lettered")
	if err := ss.ev.Publish(ctx, event.DeadLettered(ss.j.SourceUser, dl)); err != nil {
		return err
	}
	return ss.record(ctx, []pending{p}, nil, howDead)
}

func (ss *session) publishDead(ctx context.Context, dl DeadLetter) error {
	b, err := json.Marshal(dl)
	if err != nil {
		return fmt.Errorf("encode dead letter: %w", err)
	}
	m := nats.NewMsg(subject.Dead(dl.Mailbox))
	m.Header.Set(nats.MsgIdHdr, "dead."+dl.ID+"."+ss.j.Pass)
	m.Data = b
	if _, err := ss.svc.Broker.JS.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("publish dead letter %s: %w", dl.ID, err)
	}
	ss.svc.Metrics.DeadLettered()
	return nil
}

// deadRecord reports a mail record that cannot even be decoded; the
// stream position moves past it only once the report is stored.
func (ss *session) deadRecord(ctx context.Context, subj string, seq uint64, cause error) error {
	dl := DeadLetter{ID: fmt.Sprintf("%s#%d", subj, seq), Mailbox: ss.j.SourceUser, TargetUser: ss.j.TargetUser,
		StreamSeq: seq, Reason: cause.Error(), Time: time.Now().UTC()}
	if err := ss.publishDead(ctx, dl); err != nil {
		return fmt.Errorf("dead-letter undecodable record %d: %w", seq, err)
	}
	ss.log.Error().Err(cause).Str("subject", subj).Uint64("seq", seq).Msg("undecodable record dead-lettered")
	return nil
}
