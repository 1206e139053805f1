package loader

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/foldermap"
	"github.com/mailferry/mailferry/shared/imapdial"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/kvjson"
	"github.com/mailferry/mailferry/shared/mailscan"
	"github.com/mailferry/mailferry/shared/record"
	"github.com/mailferry/mailferry/shared/subject"
)

// folderRun is the loading of one source folder (one UIDVALIDITY and
// epoch: one numbering of its UIDs).
type folderRun struct {
	src    string
	uidv   uint32
	epoch  uint32
	target string
	st     *casEntry[FolderState]
	// present counts content already in the target folder when the
	// ledger knew nothing of this folder (a lost ledger, a changed
	// UIDVALIDITY, a folder renumbered under the same one, a merge):
	// such messages are not appended again.
	present map[string]int
	// keywords the target accepts; nil means any (PERMANENTFLAGS \*).
	keywords map[string]bool
	// indexed is set when present covers the whole target folder.
	indexed bool
}

// is reports whether fr loads source folder name numbered by uidv and
// epoch (false for no folder).
func (fr *folderRun) is(name string, uidv, epoch uint32) bool {
	return fr != nil && fr.src == name && fr.uidv == uidv && fr.epoch == epoch
}

// done reports whether a source UID is already dealt with.
func (fr *folderRun) done(uid uint32) bool {
	return uid <= fr.st.V.LastUID || slices.ContainsFunc(fr.st.V.Done, func(d DoneItem) bool { return d.UID == uid })
}

// startFolder makes source folder name, numbered by uidv and epoch, the
// one being loaded.
func (ss *session) startFolder(ctx context.Context, name, delim string, uidv, epoch uint32) error {
	if ss.cur.is(name, uidv, epoch) {
		return nil
	}
	target, err := ss.targetName(ctx, name, delim)
	if err != nil {
		return err
	}
	st, err := loadEntry[FolderState](ctx, ss.svc.Broker.Ledger, FolderKey(ss.j.SourceUser, name, uidv, epoch))
	if err != nil {
		return err
	}
	fr := &folderRun{src: name, uidv: uidv, epoch: epoch, target: target, st: st}
	if st.exists() && st.V.Target != "" {
		fr.target = st.V.Target
	}
	if !ss.tgt.exists[fr.target] {
		// Deleted on the target since the listing (a replay rebuilds it).
		if err := ss.ensureFolder(ctx, fr.target, ss.mbx.V.Subscribed[name]); err != nil {
			return err
		}
	}
	sel, err := ss.selectTarget(ctx, fr.target)
	if err != nil {
		return err
	}
	if st.exists() && st.V.TargetUIDValidity != 0 && st.V.TargetUIDValidity != sel.UIDValidity {
		// The target folder was deleted and created again: what the
		// ledger says is in it is gone. Start over and let the content
		// index keep what the new folder already holds.
		ss.log.Warn().Str("folder", name).Str("target", fr.target).Uint32("old_uidvalidity", st.V.TargetUIDValidity).
			Uint32("uidvalidity", sel.UIDValidity).Msg("target folder recreated: replaying the folder from the stream")
		if ss.replay == nil {
			if err := ss.requestReplay(ctx, name, sel.UIDValidity); err != nil {
				return err
			}
		}
		st.V = FolderState{}
	}
	fr.keywords = acceptedKeywords(sel.PermanentFlags)
	st.V.Target, st.V.TargetUIDValidity = fr.target, sel.UIDValidity
	ss.cur = fr
	if st.V.Pending != nil {
		if err := ss.resolvePending(ctx); err != nil {
			return err
		}
	}
	resumed := st.exists() && ss.replay == nil && st.V.Matching
	if (!st.exists() || ss.replay != nil || resumed) && sel.NumMessages > 0 {
		if fr.present, err = ss.contentIndex(ctx, fr.target); err != nil {
			return err
		}
		if resumed {
			// What this numbering's own messages found or put there
			// before is theirs: only the rest can match.
			if err := ss.leaveDone(ctx, fr.present); err != nil {
				return err
			}
		}
		if ss.replay == nil {
			st.V.Matching = true
			if ss.matching == nil {
				ss.matching = map[string]bool{}
			}
			ss.matching[st.key] = true
		}
		fr.indexed = true
		ss.log.Info().Str("folder", name).Str("target", fr.target).Uint32("present", sel.NumMessages).
			Msg("target folder not empty, matching content before appending")
	}
	return nil
}

// targetName is the mapped name of a source folder; a folder the listing
// did not name (records older than the ledger) is mapped on its own.
func (ss *session) targetName(ctx context.Context, name, delim string) (string, error) {
	if t, ok := ss.mbx.V.Folders[name]; ok {
		return t, nil
	}
	m, err := foldermap.New(foldermap.Target{Delim: ss.tgt.delim, Folders: ss.tgt.folders, Special: ss.specialFor(ctx), Prefix: ss.tgt.prefix},
		foldermap.Options{Substitute: ss.svc.Settings.Substitute, Table: ss.svc.Settings.FolderMap})
	if err != nil {
		return "", fmt.Errorf("folder mapping: %w", err)
	}
	t := m.Map(SourceFolder(record.Folder{Name: name, Delim: delim})).Target
	if err := ss.ensureFolder(ctx, t, true); err != nil {
		return "", err
	}
	if ss.mbx.V.Folders == nil {
		ss.mbx.V.Folders = map[string]string{}
	}
	ss.mbx.V.Folders[name] = t
	return t, nil
}

func (ss *session) selectTarget(ctx context.Context, name string) (*imap.SelectData, error) {
	defer imapdial.Watch(ctx, ss.c, ss.svc.Config.Target.CommandTimeout.Std()).Stop()
	sel, err := ss.c.Select(name, nil).Wait()
	if err != nil {
		return nil, fmt.Errorf("select target folder %q: %w", name, err)
	}
	return sel, nil
}

// acceptedKeywords returns the keywords a folder takes, nil for any.
func acceptedKeywords(perm []imap.Flag) map[string]bool {
	out := map[string]bool{}
	for _, f := range perm {
		if f == imap.FlagWildcard {
			return nil
		}
		out[strings.ToLower(string(f))] = true
	}
	return out
}

func (ss *session) contentIndex(ctx context.Context, target string) (map[string]int, error) {
	idx := map[string]int{}
	_, err := mailscan.Scan(ctx, ss.c, target, 1, ss.svc.Config.Target.CommandTimeout.Std(), func(m mailscan.Message) error {
		idx[m.SHA256]++
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index target folder %q: %w", target, err)
	}
	if err := ss.leaveAccounted(ctx, idx, target, 1); err != nil {
		return nil, err
	}
	// Scan examined the folder read-only; appends go through another
	// connection, but later folder commands expect it selected.
	if _, err := ss.selectTarget(ctx, target); err != nil {
		return nil, err
	}
	return idx, nil
}

// leaveAccounted takes out of a content index what the ledger says other
// source messages put there, so that only the messages being loaded can
// match: during a normal load, what other source folders appended (merged
// special-use folders); during a retry or a replay, everything but the
// messages delivered again (an identical twin appended earlier is not the
// one being retried).
func (ss *session) leaveAccounted(ctx context.Context, idx map[string]int, target string, from uint32) error {
	own := func(folder string, uid uint32) bool { return folder == ss.cur.src }
	if ss.replay != nil {
		own = func(folder string, uid uint32) bool { return ss.again[againKey(folder, uid)] }
	}
	acc, err := ss.accounted(ctx, target, from, own)
	if err != nil {
		return err
	}
	subtract(idx, acc)
	return nil
}

// matchedWholly ends the content matching (FolderState.Matching) of the
// folders an end record lists: their records up to it hold every message
// the folder had when it was extracted, all dealt with now.
func (ss *session) matchedWholly(ctx context.Context, end *record.End) error {
	for _, f := range end.Folders {
		key := FolderKey(ss.j.SourceUser, f.Name, f.UIDValidity, f.Epoch)
		if !ss.matching[key] {
			continue
		}
		st, err := loadEntry[FolderState](ctx, ss.svc.Broker.Ledger, key)
		if err != nil {
			return err
		}
		if st.exists() && st.V.Matching {
			st.V.Matching = false
			if err := st.save(ctx, ss.svc.Broker.Ledger); err != nil {
				return err
			}
		}
		if ss.cur != nil && ss.cur.st.key == key {
			ss.cur.st = st
		}
		delete(ss.matching, key)
	}
	return nil
}

// leaveDone takes out of a content index of the current folder's target
// the copies the ledger says messages of this very source folder and
// numbering already account for (appended, or found present): a session
// that resumes matching content (FolderState.matching) must not take the
// copy an earlier session appended, or matched, for another message.
func (ss *session) leaveDone(ctx context.Context, idx map[string]int) error {
	fr := ss.cur
	kv := ss.svc.Broker.Ledger
	prefix := fmt.Sprintf("map.%s.%s.%s.", subject.Key(ss.j.SourceUser), subject.Key(fr.src), subject.Numbering(fr.uidv, fr.epoch))
	keys, err := kv.ListKeysFiltered(ctx, prefix+"*")
	if err != nil {
		return fmt.Errorf("list ledger mappings: %w", err)
	}
	defer keys.Stop()
	for key := range keys.Keys() {
		e, err := kvjson.Get[Mapping](ctx, kv, key)
		if err != nil {
			return fmt.Errorf("ledger: %w", err)
		}
		if !e.Exists() || e.V.How == howDead {
			continue
		}
		for _, it := range e.V.Items {
			if !fr.done(it.UID) || idx[it.SHA256] == 0 {
				continue
			}
			if idx[it.SHA256]--; idx[it.SHA256] == 0 {
				delete(idx, it.SHA256)
			}
		}
	}
	return nil
}

func againKey(folder string, uid uint32) string { return fmt.Sprintf("%d/%s", uid, folder) }

// requestReplay enqueues a replay of a source folder whose target folder
// was deleted and created again: its earlier records are behind this
// session's position in the stream.
func (ss *session) requestReplay(ctx context.Context, folder string, targetUIDValidity uint32) error {
	st, err := ss.svc.Broker.JS.Stream(ctx, broker.StreamMail)
	if err != nil {
		return fmt.Errorf("request replay of %q: %w", folder, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("request replay of %q: %w", folder, err)
	}
	j := &job.Job{Mailbox: ss.j.Mailbox, Enqueued: time.Now().UTC(),
		Pass:   fmt.Sprintf("replay-recreated-%s-%d", subject.Key(folder), targetUIDValidity),
		Replay: &job.Replay{Folder: folder, FromSeq: info.State.FirstSeq, UntilSeq: info.State.LastSeq}}
	return job.Publish(ctx, ss.svc.Broker.JS, j)
}
