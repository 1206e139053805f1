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
	"github.com/mailferry/mailferry/shared/imapdial"
	"github.com/mailferry/mailferry/shared/mailscan"
	"github.com/mailferry/mailferry/shared/record"
)

func (ss *session) add(ctx context.Context, rec *record.Message, body []byte, seq uint64) error {
	if !ss.cur.is(rec.Folder, rec.UIDValidity, rec.Epoch) {
		if err := ss.flush(ctx); err != nil {
			return err
		}
		if err := ss.startFolder(ctx, rec.Folder, rec.Delim, rec.UIDValidity, rec.Epoch); err != nil {
			return err
		}
	}
	if rec.NotMail != "" {
		return ss.passNotMail(ctx, rec, seq)
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
	lc := ss.svc.Settings
	if len(ss.batch) >= lc.BatchMessages || ss.bBytes >= lc.BatchBytes {
		return ss.flush(ctx)
	}
	return nil
}

// passNotMail deals with the record of a source message that is no mail
// (record.Message.NotMail; the extractor reports it): nothing is appended,
// its UID only joins the folder's PrevUID chain, so that the watermark
// moves past it once what came before it is loaded.
func (ss *session) passNotMail(ctx context.Context, rec *record.Message, seq uint64) error {
	fr := ss.cur
	if !fr.done(rec.UID) {
		fr.st.V.Done = append(fr.st.V.Done, DoneItem{UID: rec.UID, Prev: rec.PrevUID})
		fr.st.V.NotMail++
		settle(&fr.st.V)
		if err := fr.st.save(ctx, ss.svc.Broker.Ledger); err != nil {
			return err
		}
	}
	ss.lastSeq = seq
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

// appendBatch appends items exactly once: record the intent, append, take
// the target's answer at its word (what it acknowledged with a UID landed
// there, what it refused did not), look for the rest by content only where
// the answer leaves their fate open, and then decide what to retry, what
// to dead-letter and what to report.
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
		a, err := ss.appendOnce(ctx, send, multi)
		if err != nil {
			return err
		}
		if a.err != nil {
			if ctx.Err() != nil {
				// The intent stays pending: the next session settles it.
				return ctx.Err()
			}
			if err := ss.redialIfBroken(ctx); err != nil {
				return errors.Join(fmt.Errorf("append to %q: %w", fr.target, a.err), err)
			}
		}
		left, err := ss.takeAnswer(ctx, send, a)
		if err != nil {
			if a.err != nil {
				err = errors.Join(fmt.Errorf("append to %q: %w", fr.target, a.err), err)
			}
			return err
		}
		items = append(left, items[len(send):]...)
		if a.err == nil || len(left) == 0 {
			continue
		}
		dead, err := ss.deadRefused(ctx, send, left, a.err)
		if err != nil {
			return err
		}
		if len(dead) > 0 {
			items = slices.DeleteFunc(items, func(p pending) bool { return dead[p.rec.UID] })
			continue
		}
		if bodyUnsound(a.err) {
			// A large body read other than its record says: its
			// message is dead-lettered once it stays so (deadUnsound),
			// until then the append is retried.
			dead, err := ss.deadUnsound(ctx, left)
			if err != nil {
				return errors.Join(fmt.Errorf("append to %q: %w", fr.target, a.err), err)
			}
			if len(dead) > 0 {
				items = slices.DeleteFunc(items, func(p pending) bool { return dead[p.rec.UID] })
				continue
			}
		}
		var se *imapappend.ServerError
		if !errors.As(a.err, &se) || !permanent(se) {
			return fmt.Errorf("append to %q: %w", fr.target, a.err)
		}
		if multi {
			// MULTIAPPEND is all or nothing: find the culprit alone.
			multi = false
			continue
		}
		bad, named := refused(a.err, a.intent, left)
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

// attempt is one append command (or pipelined series) and its answer.
type attempt struct {
	intent *Intent
	res    imapappend.Result
	// err is the append's own error.
	err error
	// risks has, per message, what in its bytes a server may rewrite,
	// noted while they were sent.
	risks []*mailscan.Risks
}

// appendOnce records the intent and sends one append command (or one
// pipelined series). err is a failure to record; the append's own is in
// the attempt.
func (ss *session) appendOnce(ctx context.Context, send []pending, multi bool) (attempt, error) {
	fr := ss.cur
	uidNext, err := ss.uidNext(ctx, fr.target)
	if err != nil {
		return attempt{}, err
	}
	fr.st.V.Pending = newIntent(uidNext, send)
	if err := fr.st.save(ctx, ss.svc.Broker.Ledger); err != nil {
		return attempt{}, err
	}
	a := attempt{intent: fr.st.V.Pending}
	if err := ss.svc.crash(pointIntentSaved); err != nil {
		return attempt{}, err
	}
	var msgs []imapappend.Message
	msgs, a.risks = ss.outgoing(ctx, send)
	a.res, a.err = ss.app.Append(ctx, fr.target, msgs, multi)
	if err := ss.svc.crash(pointAppended); err != nil {
		return attempt{}, err
	}
	return a, nil
}

// redialIfBroken replaces an append connection that can carry no more
// commands, so that its last error is not mistaken for later refusals.
func (ss *session) redialIfBroken(ctx context.Context) error {
	if !ss.app.Broken() {
		return nil
	}
	ss.app.Close()
	app, err := ss.dialAppend(ctx)
	if err != nil {
		return fmt.Errorf("reconnect for appends: %w", err)
	}
	ss.app = app
	return nil
}

// dialAppend opens the connection that carries the appends: imapdial
// connects and logs in, imapappend takes it over.
func (ss *session) dialAppend(ctx context.Context) (*imapappend.Client, error) {
	o, err := imapdial.OptionsFor(ss.svc.Config.Target)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", ss.svc.Config.Target.Address, err)
	}
	o.Observer = ss.svc.Metrics.IMAP("target")
	var conn *imapdial.Conn
	err = ss.login(ctx, func(cred imapdial.Credentials) (err error) {
		conn, err = imapdial.DialConn(ctx, o, cred)
		return err
	})
	if err != nil {
		return nil, err
	}
	return imapappend.New(conn), nil
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
	if m := ss.svc.Settings.MultiAppend; m != nil && !*m {
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

// newIntent describes an append about to be sent. A body held in memory
// also gets its loose hash, so that after a crash, or an answer that named
// no UID, a copy the target altered in the known ways is still found;
// bodies in the object store are not read twice for it.
func newIntent(uidNext uint32, items []pending) *Intent {
	in := &Intent{UIDNext: uidNext, Started: time.Now().UTC()}
	for _, p := range items {
		it := IntentItem{UID: p.rec.UID, Prev: p.rec.PrevUID, SHA256: p.rec.SHA256, LinesSHA256: p.rec.LinesSHA256, Size: p.rec.Size}
		if p.body != nil {
			it.LooseSHA256 = mailscan.LooseSHA256(p.body)
		}
		in.Items = append(in.Items, it)
	}
	return in
}

// outgoing turns records into messages to append. Large bodies stream from
// the object store when sent; keywords the folder refuses are dropped and
// reported. Each message's bytes are looked at on their way out for what a
// server may rewrite (risks, one per message).
func (ss *session) outgoing(ctx context.Context, items []pending) ([]imapappend.Message, []*mailscan.Risks) {
	out := make([]imapappend.Message, 0, len(items))
	risks := make([]*mailscan.Risks, 0, len(items))
	for _, p := range items {
		r := &mailscan.Risks{}
		open := ss.opener(ctx, p)
		out = append(out, imapappend.Message{
			Flags: ss.flags(p.rec),
			Date:  p.rec.InternalDate,
			Size:  p.rec.Size,
			Open: func() (io.ReadCloser, error) {
				rc, err := open()
				if err != nil {
					return nil, err
				}
				return noting{ReadCloser: rc, risks: r}, nil
			},
		})
		risks = append(risks, r)
	}
	return out, risks
}

// noting passes a message's bytes through its Risks as they are read.
type noting struct {
	io.ReadCloser
	risks *mailscan.Risks
}

func (n noting) Read(p []byte) (int, error) {
	k, err := n.ReadCloser.Read(p)
	n.risks.Write(p[:k])
	return k, err
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
		return newVerifiedBody(r, name, p.rec.Size, p.rec.SHA256), nil
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
