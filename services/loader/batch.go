package loader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/services/loader/imapappend"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/imapdial"
	"github.com/mailferry/mailferry/shared/mailscan"
	"github.com/mailferry/mailferry/shared/record"
)

func (ss *session) add(ctx context.Context, rec *record.Message, body []byte, seq uint64) error {
	if ss.cur == nil || ss.cur.src != rec.Folder || ss.cur.uidv != rec.UIDValidity {
		if err := ss.flush(ctx); err != nil {
			return err
		}
		if err := ss.startFolder(ctx, rec.Folder, rec.Delim, rec.UIDValidity); err != nil {
			return err
		}
	}
	if (ss.replay == nil && ss.cur.done(rec.UID)) || slices.ContainsFunc(ss.batch, func(p pending) bool { return p.rec.UID == rec.UID }) {
		// Already loaded, or a record published twice outside the
		// broker's duplicate window.
		ss.stats.Skipped++
		ss.lastSeq = seq
		return nil
	}
	ss.batch = append(ss.batch, pending{rec: rec, body: body, seq: seq})
	ss.bBytes += rec.Size
	ss.lastSeq = seq
	lc := ss.svc.Config.Loader
	if len(ss.batch) >= lc.BatchMessages || ss.bBytes >= lc.BatchBytes {
		return ss.flush(ctx)
	}
	return nil
}

// flush appends the current batch and commits the stream position.
func (ss *session) flush(ctx context.Context) error {
	if len(ss.batch) > 0 {
		b := ss.batch
		ss.batch, ss.bBytes = nil, 0
		// Every write to the target happens under a live lease.
		if err := ss.lease.hold(ctx, func(ctx context.Context) error { return ss.load(ctx, b) }); err != nil {
			return err
		}
		ss.progress(ctx, false)
	}
	if ss.lastSeq > ss.mbx.V.Seq {
		return ss.advance(ctx, ss.lastSeq)
	}
	return nil
}

// progress reports the session's counters.
func (ss *session) progress(ctx context.Context, final bool) {
	p := &ss.prog.Current
	p.Messages, p.Bytes = ss.stats.Appended+ss.stats.Skipped+ss.stats.Dead, ss.stats.Bytes
	p.Appended, p.Skipped, p.Dead = ss.stats.Appended, ss.stats.Skipped, ss.stats.Dead
	ss.prog.Send(ctx, final)
}

// load appends a batch, after taking out what the target already holds.
func (ss *session) load(ctx context.Context, b []pending) error {
	fr := ss.cur
	if err := ss.scanGap(ctx); err != nil {
		return err
	}
	var todo []pending
	var present []pending
	for _, p := range b {
		if fr.present[p.rec.SHA256] > 0 {
			fr.present[p.rec.SHA256]--
			present = append(present, p)
			continue
		}
		todo = append(todo, p)
	}
	if len(present) > 0 {
		ss.stats.Skipped += int64(len(present))
		fr.st.V.Present += int64(len(present))
		if err := ss.record(ctx, present, nil, howPresent); err != nil {
			return err
		}
	}
	if len(todo) == 0 {
		return nil
	}
	return ss.appendBatch(ctx, todo)
}

// scanGap indexes target messages the ledger cannot account for: mail
// that arrived in the target folder beyond what this folder's ledger
// entry last saw (a lost ledger write, another writer, a merged source
// folder). Their content is then not appended again.
func (ss *session) scanGap(ctx context.Context) error {
	fr := ss.cur
	if ss.next == nil {
		ss.next = map[string]uint32{}
	}
	expected, ok := ss.next[fr.target]
	if !ok {
		expected = fr.st.V.LastTargetUID + 1
	}
	now, err := ss.uidNext(ctx, fr.target)
	if err != nil {
		return err
	}
	if !fr.st.exists() || fr.indexed || now <= expected {
		ss.next[fr.target] = now
		return nil
	}
	if fr.present == nil {
		fr.present = map[string]int{}
	}
	n := 0
	_, err = mailscan.Scan(ctx, ss.c, fr.target, expected, ss.svc.Config.Target.CommandTimeout.Std(), func(m mailscan.Message) error {
		fr.present[m.SHA256]++
		n++
		return nil
	})
	if err != nil {
		return fmt.Errorf("index unaccounted mail in %q: %w", fr.target, err)
	}
	if err := ss.leaveAccounted(ctx, fr.present, fr.target, expected); err != nil {
		return err
	}
	if _, err := ss.selectTarget(ctx, fr.target); err != nil {
		return err
	}
	if n > 0 {
		ss.log.Info().Str("target", fr.target).Uint32("from_uid", expected).Int("messages", n).Msg("target holds mail the ledger does not account for, matching content")
	}
	ss.next[fr.target] = now
	return nil
}

// appendBatch appends items exactly once: record the intent, append, and
// on any failure find out from the target what landed before deciding
// what to retry, what to dead-letter and what to report.
func (ss *session) appendBatch(ctx context.Context, items []pending) error {
	fr := ss.cur
	multi := ss.useMulti()
	one := false // a refusal named no message: find it one at a time
	for attempt := 0; len(items) > 0; attempt++ {
		if attempt > len(items)+3 {
			return fmt.Errorf("append to %q: giving up after %d attempts", fr.target, attempt)
		}
		send := items
		if one {
			send = items[:1]
		}
		res, intent, aerr, err := ss.appendOnce(ctx, send, multi)
		if err != nil {
			return err
		}
		if aerr == nil && len(res.UIDs) == len(send) && res.UIDValidity == fr.st.V.TargetUIDValidity {
			fr.st.V.Pending = nil
			if err := ss.record(ctx, send, res.UIDs, howAppended); err != nil {
				return err
			}
			ss.next[fr.target] = max(ss.next[fr.target], slices.Max(res.UIDs)+1)
			items = items[len(send):]
			if err := ss.checkStored(ctx, send, res.UIDs); err != nil {
				return err
			}
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := ss.redialIfBroken(ctx); err != nil {
			return errors.Join(fmt.Errorf("append to %q: %w", fr.target, aerr), err)
		}
		left, err := ss.reconcile(ctx, send, aerr == nil)
		if err != nil {
			return errors.Join(fmt.Errorf("append to %q: %w", fr.target, aerr), err)
		}
		// reconcile scanned everything from the intent's UIDNEXT on.
		delete(ss.next, fr.target)
		items = append(left, items[len(send):]...)
		if aerr == nil || len(left) == 0 {
			continue
		}
		var se *imapappend.ServerError
		if !errors.As(aerr, &se) || !permanent(se) {
			return fmt.Errorf("append to %q: %w", fr.target, aerr)
		}
		if multi {
			// MULTIAPPEND is all or nothing: find the culprit alone.
			multi = false
			continue
		}
		bad, named := refused(aerr, intent, left)
		if !named && len(send) > 1 {
			one = true
			continue
		}
		items = slices.DeleteFunc(items, func(p pending) bool { return p.rec.UID == bad.rec.UID })
		if err := ss.deadLetter(ctx, bad, se); err != nil {
			return err
		}
	}
	return nil
}

// appendOnce records the intent and sends one append command (or one
// pipelined series). err is a failure to record; aerr the append's own.
func (ss *session) appendOnce(ctx context.Context, send []pending, multi bool) (imapappend.Result, *Intent, error, error) {
	fr := ss.cur
	uidNext, err := ss.uidNext(ctx, fr.target)
	if err != nil {
		return imapappend.Result{}, nil, nil, err
	}
	fr.st.V.Pending = newIntent(uidNext, send)
	if err := fr.st.save(ctx, ss.svc.Broker.Ledger); err != nil {
		return imapappend.Result{}, nil, nil, err
	}
	intent := fr.st.V.Pending
	if err := ss.svc.crash(pointIntentSaved); err != nil {
		return imapappend.Result{}, nil, nil, err
	}
	res, aerr := ss.app.Append(ctx, fr.target, ss.outgoing(ctx, send), multi)
	if err := ss.svc.crash(pointAppended); err != nil {
		return imapappend.Result{}, nil, nil, err
	}
	return res, intent, aerr, nil
}

// redialIfBroken replaces an append connection that can carry no more
// commands, so that its last error is not mistaken for later refusals.
func (ss *session) redialIfBroken(ctx context.Context) error {
	if !ss.app.Broken() {
		return nil
	}
	ss.app.Close()
	app, err := imapappend.Dial(ctx, ss.svc.Config.Target, ss.cred)
	if err != nil {
		return fmt.Errorf("reconnect for appends: %w", err)
	}
	ss.app = app
	return nil
}

// refused finds the message a pipelined append's error is about; named
// is false when the error does not say (then items[0] is returned).
func refused(err error, in *Intent, items []pending) (pending, bool) {
	var ae *imapappend.AppendError
	if errors.As(err, &ae) && ae.Index < len(in.Items) {
		uid := in.Items[ae.Index].UID
		for _, p := range items {
			if p.rec.UID == uid {
				return p, true
			}
		}
	}
	return items[0], len(items) == 1 && len(in.Items) == 1
}

func (ss *session) useMulti() bool {
	if m := ss.svc.Config.Loader.MultiAppend; m != nil && !*m {
		return false
	}
	return ss.app.Has("MULTIAPPEND")
}

func (ss *session) uidNext(ctx context.Context, target string) (uint32, error) {
	defer imapdial.Watch(ctx, ss.c, ss.svc.Config.Target.CommandTimeout.Std()).Stop()
	sd, err := ss.c.Status(target, &imap.StatusOptions{UIDNext: true, UIDValidity: true}).Wait()
	if err != nil {
		return 0, fmt.Errorf("status %q: %w", target, err)
	}
	if sd.UIDValidity != ss.cur.st.V.TargetUIDValidity {
		return 0, fmt.Errorf("target folder %q changed UIDVALIDITY during the load (%d to %d)", target, ss.cur.st.V.TargetUIDValidity, sd.UIDValidity)
	}
	return uint32(sd.UIDNext), nil
}

func newIntent(uidNext uint32, items []pending) *Intent {
	in := &Intent{UIDNext: uidNext, Started: time.Now().UTC()}
	for _, p := range items {
		in.Items = append(in.Items, IntentItem{UID: p.rec.UID, Prev: p.rec.PrevUID, SHA256: p.rec.SHA256, LinesSHA256: p.rec.LinesSHA256, Size: p.rec.Size})
	}
	return in
}

// outgoing turns records into messages to append. Large bodies stream from
// the object store when sent; keywords the folder refuses are dropped and
// reported.
func (ss *session) outgoing(ctx context.Context, items []pending) []imapappend.Message {
	out := make([]imapappend.Message, 0, len(items))
	for _, p := range items {
		out = append(out, imapappend.Message{
			Flags: ss.flags(p.rec),
			Date:  p.rec.InternalDate,
			Size:  p.rec.Size,
			Open:  ss.opener(ctx, p),
		})
	}
	return out
}

func (ss *session) opener(ctx context.Context, p pending) func() (io.ReadCloser, error) {
	if p.rec.Object == "" {
		body := p.body
		return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	name := p.rec.Object
	return func() (io.ReadCloser, error) {
		r, err := ss.svc.Broker.Bodies.Get(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("read large body %s: %w", name, err)
		}
		return r, nil
	}
}

func (ss *session) flags(rec *record.Message) []string {
	out := make([]string, 0, len(rec.Flags))
	for _, f := range rec.Flags {
		if strings.EqualFold(f, `\Recent`) {
			continue
		}
		if !strings.HasPrefix(f, `\`) && ss.cur.keywords != nil && !ss.cur.keywords[strings.ToLower(f)] {
			ss.log.Warn().Str("id", rec.ID()).Str("keyword", f).Str("target", ss.cur.target).Msg("keyword refused by target folder, dropped")
			continue
		}
		out = append(out, f)
	}
	return out
}

// reconcile settles the pending intent against the target: messages of
// the intent found (in order, by content) from its UIDNEXT on are
// committed as appended; the rest are returned to be appended again.
//
// confirmed says the server answered OK to every message: what the scan
// cannot recognise was stored altered, and is recorded without a UID
// instead of being appended again.
func (ss *session) reconcile(ctx context.Context, items []pending, confirmed bool) ([]pending, error) {
	fr := ss.cur
	in := fr.st.V.Pending
	if in == nil {
		return items, nil
	}
	uids, err := ss.landed(ctx, in)
	if err != nil {
		return nil, err
	}
	var got, left []pending
	var gotUIDs []uint32
	for _, p := range items {
		if u, ok := uids[p.rec.UID]; ok {
			got = append(got, p)
			gotUIDs = append(gotUIDs, u)
			continue
		}
		left = append(left, p)
	}
	if confirmed && len(left) > 0 {
		for _, p := range left {
			ss.log.Warn().Str("id", p.rec.ID()).Str("target", fr.target).Msg("appended but not found by content: the target stored it altered")
			got = append(got, p)
			gotUIDs = append(gotUIDs, 0)
		}
		left = nil
	}
	fr.st.V.Pending = nil
	if err := ss.record(ctx, got, gotUIDs, howAppended); err != nil {
		return nil, err
	}
	return left, nil
}

// landed maps the intent's source UIDs to the target UIDs they got,
// matching target messages from UIDNEXT on, in order, by SHA-256.
func (ss *session) landed(ctx context.Context, in *Intent) (map[uint32]uint32, error) {
	fr := ss.cur
	out := map[uint32]uint32{}
	i := 0
	_, err := mailscan.Scan(ctx, ss.c, fr.target, in.UIDNext, ss.svc.Config.Target.CommandTimeout.Std(), func(m mailscan.Message) error {
		for j := i; j < len(in.Items); j++ {
			it := in.Items[j]
			// A target that rewrote line endings stored the same
			// message under another hash.
			if it.SHA256 == m.SHA256 || (it.LinesSHA256 != "" && it.LinesSHA256 == m.LinesSHA256) {
				out[in.Items[j].UID] = m.UID
				i = j + 1
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reconcile %q: %w", fr.target, err)
	}
	if _, err := ss.selectTarget(ctx, fr.target); err != nil {
		return nil, err
	}
	return out, nil
}

// resolvePending settles an intent left by a crash, before anything else
// is appended to the folder.
func (ss *session) resolvePending(ctx context.Context) error {
	fr := ss.cur
	in := fr.st.V.Pending
	uids, err := ss.landed(ctx, in)
	if err != nil {
		return err
	}
	ss.log.Info().Str("folder", fr.src).Int("intended", len(in.Items)).Int("landed", len(uids)).Msg("pending append reconciled")
	var got, left []pending
	var gotUIDs []uint32
	for _, it := range in.Items {
		p := pending{rec: &record.Message{Mailbox: ss.j.SourceUser, Folder: fr.src, UIDValidity: fr.uidv,
			UID: it.UID, PrevUID: it.Prev, SHA256: it.SHA256, LinesSHA256: it.LinesSHA256, Size: it.Size}}
		if u, ok := uids[it.UID]; ok {
			got = append(got, p)
			gotUIDs = append(gotUIDs, u)
			continue
		}
		left = append(left, p)
	}
	fr.st.V.Pending = nil
	return ss.record(ctx, got, gotUIDs, howAppended)
}

// checkStored compares the size the target gives each appended message
// with the size sent: a target that rewrites bytes (line endings, NULs)
// must not pass unnoticed until verification.
func (ss *session) checkStored(ctx context.Context, items []pending, uids []uint32) error {
	set := imap.UIDSet{}
	for _, u := range uids {
		set.AddNum(imap.UID(u))
	}
	defer imapdial.Watch(ctx, ss.c, ss.svc.Config.Target.CommandTimeout.Std()).Stop()
	// The appends went through the other connection: let this one see them.
	if err := ss.c.Noop().Wait(); err != nil {
		return fmt.Errorf("check stored sizes in %q: %w", ss.cur.target, err)
	}
	msgs, err := ss.c.Fetch(set, &imap.FetchOptions{UID: true, RFC822Size: true}).Collect()
	if err != nil {
		return fmt.Errorf("check stored sizes in %q: %w", ss.cur.target, err)
	}
	stored := make(map[uint32]int64, len(msgs))
	for _, m := range msgs {
		stored[uint32(m.UID)] = m.RFC822Size
	}
	for i, p := range items {
		got, ok := stored[uids[i]]
		if !ok || got == p.rec.Size {
			continue
		}
		a := Altered{ID: p.rec.ID(), Folder: ss.cur.src, TargetFolder: ss.cur.target, UID: p.rec.UID,
			TargetUID: uids[i], Size: p.rec.Size, StoredSize: got}
		ss.log.Warn().Str("id", a.ID).Int64("size", a.Size).Int64("stored_size", got).Msg("target stored the message altered")
		_ = ss.ev.Publish(ctx, event.MessageAltered, ss.j.SourceUser, "altered."+a.ID, a)
	}
	return nil
}

// Altered is a message the target accepted but stores with other bytes.
type Altered struct {
	ID           string `json:"id"`
	Folder       string `json:"folder"`
	TargetFolder string `json:"target_folder"`
	UID          uint32 `json:"uid"`
	TargetUID    uint32 `json:"target_uid"`
	Size         int64  `json:"size"`
	StoredSize   int64  `json:"stored_size"`
}
