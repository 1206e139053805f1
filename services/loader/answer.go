package loader

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailferry/mailferry/services/loader/imapappend"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/imapdial"
	"github.com/mailferry/mailferry/shared/mailscan"
	"github.com/mailferry/mailferry/shared/record"
)

// The server's word first. A target that answered an APPEND said what it
// did: OK [APPENDUID v u] means the message is stored under UID u whatever
// bytes it made of it (Dovecot turns NUL into 0x80, Cyrus 8-bit header
// bytes into "X", both keeping the size), NO means it is not stored.
// Content matching would miss exactly the altered copies and append them
// again, so it is only the fallback for messages whose fate the answer
// leaves open: stored without a UID named, or sent with no answer before
// the connection failed (and, after a crash, the whole intent).

// takeAnswer records what the target stored of send, taking its answer at
// its word, and returns the messages it does not hold, to be appended
// again or dead-lettered. Stored copies with known UIDs are then read back
// (checkStored) so that an altered one is recorded as such.
func (ss *session) takeAnswer(ctx context.Context, send []pending, a attempt) ([]pending, error) {
	fr := ss.cur
	fates := fatesOf(len(send), a.err)
	uids := a.res.UIDs
	if len(uids) != len(send) {
		uids = nil
	}
	if uids != nil && a.res.UIDValidity != fr.st.V.TargetUIDValidity {
		ss.log.Warn().Str("target", fr.target).Uint32("uidvalidity", a.res.UIDValidity).Uint32("expected", fr.st.V.TargetUIDValidity).
			Msg("target named UIDs under another UIDVALIDITY, matching by content instead")
		uids = nil
	}
	uidOf := func(i int) uint32 {
		if uids == nil || fates[i] != imapappend.Stored {
			return 0
		}
		return uids[i]
	}
	claimed := map[uint32]bool{}
	var open []int
	for i, f := range fates {
		switch {
		case uidOf(i) != 0:
			claimed[uidOf(i)] = true
		case f == imapappend.Stored || f == imapappend.Unanswered:
			open = append(open, i)
		}
	}
	var found map[uint32]landedCopy
	if len(open) > 0 && a.intent != nil {
		var err error
		found, err = ss.landed(ctx, a.intent, func(j int) bool { return slices.Contains(open, j) }, claimed)
		if err != nil {
			return nil, err
		}
		ss.log.Info().Str("target", fr.target).Int("open", len(open)).Int("found", len(found)).
			Msg("the answer left messages' fate open: matched by content")
	}
	var got, left []pending
	var gotUIDs []uint32
	var risks []*mailscan.Risks
	seen := map[int]landedCopy{} // by index in got: copies the scan read
	for i, p := range send {
		u := uidOf(i)
		if cp, ok := found[p.rec.UID]; ok && u == 0 {
			u = cp.uid
			seen[len(got)] = cp
		}
		switch {
		case u != 0:
			got, gotUIDs, risks = append(got, p), append(gotUIDs, u), append(risks, a.risks[i])
		case fates[i] == imapappend.Stored:
			// Appending it again would make a second copy.
			ss.log.Warn().Str("id", p.rec.ID()).Str("target", fr.target).
				Msg("target stored the message without naming a UID and no copy matches its content: stored altered")
			got, gotUIDs, risks = append(got, p), append(gotUIDs, 0), append(risks, nil)
		default:
			left = append(left, p)
		}
	}
	fr.st.V.Pending = nil
	e, err := ss.recordEntry(ctx, got, gotUIDs, howAppended)
	if err != nil {
		return nil, err
	}
	if ss.next == nil {
		ss.next = map[string]uint32{}
	}
	if len(open) > 0 {
		// The scan looked at everything from the intent's UIDNEXT on.
		delete(ss.next, fr.target)
	} else if len(gotUIDs) > 0 {
		ss.next[fr.target] = max(ss.next[fr.target], slices.Max(gotUIDs)+1)
	}
	if e != nil {
		if err := ss.checkStored(ctx, e, got, risks, seen); err != nil {
			return nil, err
		}
	}
	return left, nil
}

// fatesOf says per message what an append's error tells of it.
func fatesOf(n int, err error) []imapappend.Fate {
	fates := make([]imapappend.Fate, n)
	var ae *imapappend.AppendError
	switch {
	case err == nil:
		for i := range fates {
			fates[i] = imapappend.Stored
		}
	case errors.As(err, &ae) && len(ae.Fates) == n:
		copy(fates, ae.Fates)
	case ae != nil:
		// Not expected; nothing is taken for granted.
		for i := range fates {
			fates[i] = imapappend.Unanswered
		}
	}
	// Any other error: nothing was appended (imapappend.Append).
	return fates
}

// deadRefused dead-letters the messages of send the server refused on
// their own, for good (a pipelined append answers each), and returns
// their source UIDs.
func (ss *session) deadRefused(ctx context.Context, send, left []pending, err error) (map[uint32]bool, error) {
	var ae *imapappend.AppendError
	if !errors.As(err, &ae) || len(ae.Refusals) != len(send) {
		return nil, nil
	}
	dead := map[uint32]bool{}
	for i, se := range ae.Refusals {
		p := send[i]
		if se == nil || !permanent(se) || !slices.ContainsFunc(left, func(q pending) bool { return q.rec.UID == p.rec.UID }) {
			continue
		}
		if err := ss.deadLetter(ctx, p, se); err != nil {
			return nil, err
		}
		dead[p.rec.UID] = true
	}
	return dead, nil
}

// landedCopy is the target copy content matching found for a message.
type landedCopy struct {
	uid    uint32
	sha256 string
	size   int64
}

// landed maps the source UIDs of the intent's items that want selects to
// the copies they got: target messages from the intent's UIDNEXT on,
// except the claimed ones (which the server named for other items), are
// matched in order against those items by content, exact or as the known
// rewrites leave it.
func (ss *session) landed(ctx context.Context, in *Intent, want func(int) bool, claimed map[uint32]bool) (map[uint32]landedCopy, error) {
	fr := ss.cur
	out := map[uint32]landedCopy{}
	i := 0
	_, err := mailscan.Scan(ctx, ss.c, fr.target, in.UIDNext, ss.svc.Config.Target.CommandTimeout.Std(), func(m mailscan.Message) error {
		if claimed[m.UID] {
			return nil
		}
		for j := i; j < len(in.Items); j++ {
			it := in.Items[j]
			if !want(j) {
				continue
			}
			// A target that rewrote line endings, NUL bytes or 8-bit
			// header bytes stored the same message under another hash.
			if it.SHA256 == m.SHA256 || (it.LinesSHA256 != "" && it.LinesSHA256 == m.LinesSHA256) ||
				(it.LooseSHA256 != "" && it.LooseSHA256 == mailscan.Loose(m.LooseSHA256, m.LinesSHA256)) {
				out[it.UID] = landedCopy{uid: m.UID, sha256: m.SHA256, size: m.Size}
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
// is appended to the folder. The answer, if any came, died with the
// process: content matching is all there is.
func (ss *session) resolvePending(ctx context.Context) error {
	fr := ss.cur
	in := fr.st.V.Pending
	uids, err := ss.landed(ctx, in, func(int) bool { return true }, nil)
	if err != nil {
		return err
	}
	ss.log.Info().Str("folder", fr.src).Int("intended", len(in.Items)).Int("landed", len(uids)).Msg("pending append reconciled")
	var got []pending
	var gotUIDs []uint32
	seen := map[int]landedCopy{}
	for _, it := range in.Items {
		cp, ok := uids[it.UID]
		if !ok {
			continue
		}
		seen[len(got)] = cp
		got = append(got, pending{rec: &record.Message{Mailbox: ss.j.SourceUser, Folder: fr.src, UIDValidity: fr.uidv, Epoch: fr.epoch,
			UID: it.UID, PrevUID: it.Prev, SHA256: it.SHA256, LinesSHA256: it.LinesSHA256, Size: it.Size}})
		gotUIDs = append(gotUIDs, cp.uid)
	}
	fr.st.V.Pending = nil
	e, err := ss.recordEntry(ctx, got, gotUIDs, howAppended)
	if err != nil || e == nil {
		return err
	}
	return ss.checkStored(ctx, e, got, make([]*mailscan.Risks, len(got)), seen)
}

// checkStored finds out which copies of the messages of e the target
// stored altered. Those content matching found (seen, by index in got)
// are known already; of the others stored under a known UID it reads back
// the size of each (one cheap FETCH), and the SHA-256 of those whose size
// differs or that hold bytes a server is known to rewrite at the same size
// (NUL, 8-bit header bytes: risks). A copy with other bytes is added to e as altered, with both
// hashes, compare-and-set on the revision just written, and reported.
// Reading every copy back would double the traffic; a copy altered
// without either sign is still paired with its source by verify through
// its target UID.
func (ss *session) checkStored(ctx context.Context, e *casEntry[Mapping], got []pending, risks []*mailscan.Risks, seen map[int]landedCopy) error {
	var altered []int
	byUID := map[uint32]int{}
	set := imap.UIDSet{}
	for i, it := range e.V.Items {
		if cp, ok := seen[i]; ok {
			if cp.sha256 != it.SHA256 {
				e.V.Items[i].StoredSHA256, e.V.Items[i].StoredSize = cp.sha256, cp.size
				altered = append(altered, i)
			}
			continue
		}
		if it.TargetUID != 0 {
			byUID[it.TargetUID] = i
			set.AddNum(imap.UID(it.TargetUID))
		}
	}
	if len(byUID) > 0 {
		if err := ss.readBack(ctx, e, got, risks, byUID, set, &altered); err != nil {
			return err
		}
	}
	return ss.noteAltered(ctx, e, got, risks, altered)
}

// readBack reads the sizes of the copies in set (target UID to index in
// got in byUID) and the hashes of the suspect ones; altered collects the
// indexes of copies with other bytes.
func (ss *session) readBack(ctx context.Context, e *casEntry[Mapping], got []pending, risks []*mailscan.Risks, byUID map[uint32]int, set imap.UIDSet, altered *[]int) error {
	fr := ss.cur
	idle := ss.svc.Config.Target.CommandTimeout.Std()
	wd := imapdial.Watch(ctx, ss.c, idle)
	// The appends went through the other connection: let this one see them.
	err := ss.c.Noop().Wait()
	var msgs []*imapclient.FetchMessageBuffer
	if err == nil {
		msgs, err = ss.c.Fetch(set, &imap.FetchOptions{UID: true, RFC822Size: true}).Collect()
	}
	wd.Stop()
	if err != nil {
		return fmt.Errorf("check stored copies in %q: %w", fr.target, err)
	}
	var suspect []uint32
	for _, m := range msgs {
		i, ok := byUID[uint32(m.UID)]
		if !ok {
			continue
		}
		if m.RFC822Size != got[i].rec.Size || (risks[i] != nil && risks[i].SameSize()) {
			suspect = append(suspect, uint32(m.UID))
		}
	}
	err = mailscan.Fetch(ctx, ss.c, fr.target, suspect, idle, func(m mailscan.Message) error {
		i, ok := byUID[m.UID]
		if !ok || m.SHA256 == got[i].rec.SHA256 {
			return nil
		}
		e.V.Items[i].StoredSHA256, e.V.Items[i].StoredSize = m.SHA256, m.Size
		*altered = append(*altered, i)
		return nil
	})
	if err != nil {
		return fmt.Errorf("check stored copies in %q: %w", fr.target, err)
	}
	return nil
}

// noteAltered writes the altered copies into e and reports each.
func (ss *session) noteAltered(ctx context.Context, e *casEntry[Mapping], got []pending, risks []*mailscan.Risks, altered []int) error {
	fr := ss.cur
	if len(altered) == 0 {
		return nil
	}
	if err := e.save(ctx, ss.svc.Broker.Ledger); err != nil {
		return fmt.Errorf("record altered copies: %w", err)
	}
	for _, i := range altered {
		p, it := got[i], e.V.Items[i]
		a := Altered{ID: p.rec.ID(), Folder: fr.src, TargetFolder: fr.target, UID: p.rec.UID, TargetUID: it.TargetUID,
			Size: p.rec.Size, StoredSize: it.StoredSize, SHA256: it.SHA256, StoredSHA256: it.StoredSHA256}
		if risks[i] != nil {
			a.Risks = risks[i].String()
		}
		ss.log.Warn().Str("id", a.ID).Uint32("target_uid", a.TargetUID).Int64("size", a.Size).Int64("stored_size", a.StoredSize).
			Str("sha256", a.SHA256).Str("stored_sha256", a.StoredSHA256).Str("risks", a.Risks).Msg("target stored the message altered")
		// Saved first: the ledger is what verify pairs copies by. A
		// publish that fails (after its own retries) fails the job; its
		// retry finds the batch recorded and does not report it again,
		// so the ledger alone then holds the fact.
		if err := ss.ev.Publish(ctx, event.Altered(ss.j.SourceUser, a)); err != nil {
			return err
		}
	}
	return nil
}

// Altered is a message the target accepted but stores with other bytes,
// as reported in a message.altered event.
type Altered = event.AlteredData
