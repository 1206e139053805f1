package loader

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/foldermap"
	"github.com/mailferry/mailferry/shared/imapdial"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/record"
)

// targetInfo is what the loader knows of the target mailbox's folders.
type targetInfo struct {
	delim   rune
	prefix  string // personal namespace prefix, from NAMESPACE
	folders []foldermap.Folder
	exists  map[string]bool
}

func (ss *session) listTarget(ctx context.Context) error {
	opts := &imap.ListOptions{}
	if ss.c.Caps().Has(imap.CapSpecialUse) && ss.c.Caps().Has(imap.CapListExtended) {
		opts.ReturnSpecialUse = true
	}
	defer imapdial.Watch(ctx, ss.c, ss.svc.Config.Target.CommandTimeout.Std()).Stop()
	list, err := ss.c.List("", "*", opts).Collect()
	if err != nil {
		return fmt.Errorf("list target folders: %w", err)
	}
	ss.tgt = targetInfo{exists: map[string]bool{}}
	for _, l := range list {
		if l.Delim != 0 && ss.tgt.delim == 0 {
			ss.tgt.delim = l.Delim
		}
		ss.tgt.folders = append(ss.tgt.folders, foldermap.Folder{Name: l.Mailbox, Delim: l.Delim, Attrs: l.Attrs})
		if !slices.Contains(l.Attrs, imap.MailboxAttrNonExistent) && !slices.Contains(l.Attrs, imap.MailboxAttrNoSelect) {
			ss.tgt.exists[l.Mailbox] = true
		}
	}
	if ss.tgt.delim == 0 {
		ss.tgt.delim = '/'
	}
	if ss.tgt.prefix, err = imapdial.PersonalPrefix(ctx, ss.c, ss.svc.Config.Target.CommandTimeout.Std()); err != nil {
		return fmt.Errorf("target folders: %w", err)
	}
	return nil
}

// applyListing maps the source tree onto the target once per pass and
// creates what is missing. A folder mapped in an earlier pass keeps its
// name, so a later pass never splits a folder in two.
func (ss *session) applyListing(ctx context.Context, l *record.Listing) error {
	m, err := foldermap.New(foldermap.Target{Delim: ss.tgt.delim, Folders: ss.tgt.folders, Special: ss.specialFor(ctx), Prefix: ss.tgt.prefix},
		foldermap.Options{Substitute: ss.svc.Settings.Substitute, Table: ss.svc.Settings.FolderMap})
	if err != nil {
		return fmt.Errorf("folder mapping: %w", errors.Join(err, job.ErrPermanent))
	}
	src := make([]foldermap.Folder, 0, len(l.Folders))
	for _, f := range l.Folders {
		src = append(src, SourceFolder(f))
	}
	st := &ss.mbx.V
	if st.Folders == nil {
		st.Folders, st.Delims, st.Subscribed = map[string]string{}, map[string]string{}, map[string]bool{}
	}
	for _, r := range m.MapAll(src) {
		if _, done := st.Folders[r.Source]; done {
			continue
		}
		st.Folders[r.Source] = r.Target
		if r.Renamed || r.Merged {
			ss.log.Warn().Str("folder", r.Source).Str("target", r.Target).Str("reason", r.Reason).Msg("folder renamed")
			// Published before the mapping is saved: should this fail, the
			// next try maps the folder again and republishes (same id).
			if err := ss.ev.Publish(ctx, event.Renamed(ss.j.SourceUser, event.RenamedData{Source: r.Source, Target: r.Target, Reason: r.Reason})); err != nil {
				return err
			}
		}
	}
	for _, f := range l.Folders {
		st.Delims[f.Name] = f.Delim
		st.Subscribed[f.Name] = f.Subscribed
	}
	names := make([]string, 0, len(l.Folders))
	for _, f := range l.Folders {
		names = append(names, f.Name)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := ss.ensureFolder(ctx, st.Folders[n], st.Subscribed[n]); err != nil {
			return err
		}
	}
	return nil
}

// specialFor is the target's folder by role for the mapper: the loader's
// special_folders and, with an OpenSRS target (target.auth token), the
// spam folder OpenSRS keeps for this user. A provider that cannot be
// asked leaves the file's, said once at warn.
func (ss *session) specialFor(ctx context.Context) map[imap.MailboxAttr]string {
	if ss.special != nil {
		return ss.special
	}
	p, _ := ss.svc.Minter.(SpamFolders)
	if ss.svc.Config.Target.Auth != config.AuthToken {
		p = nil
	}
	sp, err := ss.svc.Settings.TargetSpecial(ctx, p, ss.j.TargetUser)
	if err != nil {
		ss.log.Warn().Err(err).Msg("mapping roles without the provider's spam folder")
	}
	ss.special = sp
	return sp
}

// SourceFolder turns a folder record into the mapper's input; the
// verifier uses it too, so both map the same names the same way.
func SourceFolder(f record.Folder) foldermap.Folder {
	out := foldermap.Folder{Name: f.Name, Prefix: f.Prefix}
	if f.Delim != "" {
		out.Delim = []rune(f.Delim)[0]
	}
	for _, a := range f.Attrs {
		out.Attrs = append(out.Attrs, imap.MailboxAttr(a))
	}
	return out
}

// ensureFolder creates a target folder (and its parents) if missing and
// subscribes it when the source one was.
func (ss *session) ensureFolder(ctx context.Context, name string, subscribe bool) error {
	if name == "" {
		return errors.New("ensure folder: empty target name")
	}
	defer imapdial.Watch(ctx, ss.c, ss.svc.Config.Target.CommandTimeout.Std()).Stop()
	if !ss.tgt.exists[name] && !strings.EqualFold(name, "INBOX") {
		err := ss.c.Create(name, nil).Wait()
		if err != nil && !isAlreadyExists(err) {
			return fmt.Errorf("create target folder %q: %w", name, err)
		}
		ss.tgt.exists[name] = true
		ss.log.Debug().Str("target", name).Msg("folder created")
	}
	if subscribe {
		if err := ss.c.Subscribe(name).Wait(); err != nil {
			return fmt.Errorf("subscribe target folder %q: %w", name, err)
		}
	}
	return nil
}

func isAlreadyExists(err error) bool {
	var ie *imap.Error
	if errors.As(err, &ie) {
		return ie.Code == imap.ResponseCodeAlreadyExists || strings.Contains(strings.ToLower(ie.Text), "already exists")
	}
	return false
}
