// Package verify compares every folder of a source mailbox with where the
// loader put it on the target: message count, SHA-256 of every message's
// bytes (as a multiset), flags per message and INTERNALDATE as an instant.
//
// A message the target stored with other bytes is one altered message,
// not one missing and one extra: verify pairs the two through the
// loader's ledger (WithLedger), which holds the target UID the server
// named for each appended message and, when the loader saw the copy
// differ, both hashes; without the ledger only the rewrites servers are
// known to make (line endings, bare CRs, NUL bytes, 8-bit header bytes)
// are recognised.
//
// Every difference names the message it concerns as a person would look
// for it: folder, UID, size, and its Date, From, Subject and Message-ID
// (fetched afterwards for those messages only, so a scan never holds more
// than the hashes). After a domain's switch, mail that reached the target
// on its own is expected: with NewAfter, a target message that is the copy
// of no source message and arrived after the switch is new at target, not
// a difference, and the check is that the source is contained in the
// target.
//
// A campaign verifies mailboxes people are still using, and three things
// change under it without anything being lost:
//
//   - Mail still reaches the old server until the switch: with
//     NewAtSourceAfter, a source message missing at the target that
//     arrived after the pass started is new at source (the next pass
//     takes it), not missing; so, with the ledger, is a message moved to
//     another folder at the source after the copy. The prestage
//     verification passes the pass's start.
//   - People delete mail on the old server after it was copied: with the
//     ledger (WithLedger), a target message that is the recorded copy of
//     a source message its folder (same UIDVALIDITY) no longer holds is
//     deleted at source, kept at the target and not a difference.
//     Without the ledger, or when the source folder's UIDVALIDITY
//     changed, it stays extra.
//   - People read and flag mail on the old server until the switch, and
//     the loader never touches the flags of what it appended: with
//     ResyncFlags, every flags difference between a source message and
//     its copy is repaired by setting the copy's flags to the source's
//     (source flags win, as imapsync does on a re-run), and reported as
//     resynced. After the switch the target is live and its users change
//     flags there, which a resync would undo; so the campaign resyncs
//     once, right after the delta pass, and an operator by hand with
//     `mailferry verify -resync-flags`.
//
// A source message that is no mail (mailscan.NotMail: a bare vCard or
// calendar object, as MailEnable keeps contacts, calendar and tasks beside
// the mail) is not copied by the migration: verify classifies the source's
// messages alike and lists such an item as not mail, not copied
// (FolderReport.NotMail), neither counted with the folder's messages nor
// a difference.
//
// A difference a person explained and accepted (`mailferry verify
// accept`, kept in the campaign bucket; see Accepted for how it is
// recognised again) is reported as accepted, with its reason, and does
// not make the mailbox differ (WithAccepted, WithAcceptedFrom).
package verify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/services/loader"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/foldermap"
	"github.com/mailferry/mailferry/shared/imapdial"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/kvjson"
	"github.com/mailferry/mailferry/shared/loginlimit"
	"github.com/mailferry/mailferry/shared/mailscan"
	"github.com/mailferry/mailferry/shared/sourcecred"
)

// Report is the outcome for a set of mailboxes.
type Report struct {
	OK        bool            `json:"ok"`
	Mailboxes []MailboxReport `json:"mailboxes"`
}

// MailboxReport is the outcome for one mailbox.
type MailboxReport struct {
	Source string `json:"source"`
	Target string `json:"target"`
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
	// WaitingForUser is set when the mailbox has no source password yet:
	// it cannot be verified before its user signs in.
	WaitingForUser bool `json:"waiting_for_user,omitempty"`
	Messages       int  `json:"messages"`
	// Bytes is the size of the source's messages, summed.
	Bytes int64 `json:"bytes"`
	// NewAfter is the time after which a target message that is the copy
	// of none is new at target (see NewAfter); NewAtTarget counts them.
	NewAfter    *time.Time `json:"new_after,omitempty"`
	NewAtTarget int        `json:"new_at_target,omitempty"`
	// NewAtSourceAfter is the time after which a source message missing
	// at the target is new at source (see NewAtSourceAfter); NewAtSource
	// counts them.
	NewAtSourceAfter *time.Time `json:"new_at_source_after,omitempty"`
	NewAtSource      int        `json:"new_at_source,omitempty"`
	// DeletedAtSource counts the target's copies of messages deleted at
	// the source since (see FolderReport.DeletedAtSource).
	DeletedAtSource int `json:"deleted_at_source,omitempty"`
	// Resynced counts the messages whose flags ResyncFlags set at the
	// target to the source's.
	Resynced int `json:"resynced,omitempty"`
	// Note says how the mailbox was verified when that is not the
	// default, e.g. why no switch time was used.
	Note string `json:"note,omitempty"`
	// Accepted counts the differences found that a person had accepted
	// (see Accepted): listed in their folders, not counted against OK.
	Accepted int `json:"accepted,omitempty"`
	// NotMail counts the source's messages that are no mail, listed in
	// their folders (FolderReport.NotMail): not copied, not counted in
	// Messages, not differences.
	NotMail int            `json:"not_mail,omitempty"`
	Folders []FolderReport `json:"folders"`
}

// FolderReport compares the source folders that map onto one target
// folder (usually one; several when special-use folders merge).
type FolderReport struct {
	Sources        []string `json:"sources"`
	Target         string   `json:"target"`
	SourceMessages int      `json:"source_messages"`
	TargetMessages int      `json:"target_messages"`
	SourceBytes    int64    `json:"source_bytes"`
	TargetBytes    int64    `json:"target_bytes"`
	Differences    []Diff   `json:"differences,omitempty"`
	// NewAtTarget are the target's messages that arrived after the
	// switch (see NewAfter): expected, so not differences.
	NewAtTarget []Diff `json:"new_at_target,omitempty"`
	// NewAtSource are the source's messages missing at the target that
	// arrived after the pass started (see NewAtSourceAfter): the next
	// pass takes them, so not differences.
	NewAtSource []Diff `json:"new_at_source,omitempty"`
	// DeletedAtSource are the target's messages that the ledger names as
	// the copy of a source message its folder no longer holds: deleted at
	// the source after the copy, kept at the target, not differences.
	DeletedAtSource []Diff `json:"deleted_at_source,omitempty"`
	// Resynced are the flags differences ResyncFlags repaired: Want is
	// the source's flags (the target's now), Got the target's before.
	Resynced []Diff `json:"resynced,omitempty"`
	// Accepted are the differences found that a person had accepted
	// (WithAccepted), with the reason: not differences any more.
	Accepted []AcceptedDiff `json:"accepted,omitempty"`
	// NotMail are the source's messages that are no mail (kind
	// not_mail, Diff.NotMail says what they are): the migration does not
	// copy them; not counted in SourceMessages, not differences.
	NotMail []Diff `json:"not_mail,omitempty"`
}

// OK reports whether the folder matched; mail new at target or at
// source, copies of mail deleted at the source and flags resynced do not
// count against it.
func (f FolderReport) OK() bool { return len(f.Differences) == 0 }

// Kinds of Diff.
const (
	KindMissing = "missing"
	KindExtra   = "extra"
	KindAltered = "altered"
	KindFlags   = "flags"
	KindDate    = "date"
	// KindNewAtTarget is a target message that is the copy of no source
	// message and arrived after the switch: mail delivered to the new
	// server, not a difference.
	KindNewAtTarget = "new_at_target"
	// KindNewAtSource is a source message missing at the target that
	// arrived after the pass started, or was moved at the source after
	// the copy: the next pass takes it.
	KindNewAtSource = "new_at_source"
	// KindDeletedAtSource is a target message that is the recorded copy
	// of a source message deleted since: kept, not a difference.
	KindDeletedAtSource = "deleted_at_source"
	// KindResynced is a flags difference that ResyncFlags repaired.
	KindResynced = "resynced"
	// KindNotMail is a source message that is no mail (a contact, a
	// calendar or task item; see mailscan.NotMail): not copied, not a
	// difference.
	KindNotMail = "not_mail"
)

// Diff is one difference, named by the message it concerns: the source
// message, or for extra, new_at_target and deleted_at_source the
// target's.
type Diff struct {
	// Kind is missing, extra, altered, flags, date, or one of the kinds
	// that are no difference: new_at_target, new_at_source,
	// deleted_at_source and resynced.
	Kind   string `json:"kind"`
	Folder string `json:"folder,omitempty"`
	UID    uint32 `json:"uid,omitempty"`
	// Size is the message's size in bytes.
	Size int64 `json:"size"`
	// The message's header fields, for a person to find it by
	// (mailscan.Header); empty when the message has none or is gone.
	mailscan.Header
	// SHA256 is the source message's hash (an extra or deleted_at_source
	// one's: the target's).
	SHA256 string `json:"sha256"`
	// TargetUID names the copy the target made of the message (for
	// altered, flags, date and resynced), StoredSHA256 an altered copy's
	// hash.
	TargetUID    uint32 `json:"target_uid,omitempty"`
	StoredSHA256 string `json:"stored_sha256,omitempty"`
	Want         string `json:"want,omitempty"`
	Got          string `json:"got,omitempty"`
	// Refused are the flags of a flags difference that ResyncFlags could
	// not set because the target refuses them (not in its
	// PERMANENTFLAGS); ResyncError why a resync of it failed.
	Refused     []string `json:"refused,omitempty"`
	ResyncError string   `json:"resync_error,omitempty"`
	// NotMail is what a not_mail message is: contact, event, task, …
	NotMail string `json:"not_mail,omitempty"`

	arrived time.Time // the message's INTERNALDATE
	// sourceSHA256 and sourceFolder name, for deleted_at_source, the
	// source message the ledger says the copy was made of.
	sourceSHA256, sourceFolder string
}

// Option changes what verify uses besides the two servers.
type Option func(*options)

type options struct {
	ledger      jetstream.KeyValue
	newAfter    time.Time
	newAtSource time.Time
	resync      bool
	accepted    []Accepted
	acceptedKV  kvjson.Bucket
	concurrency int
	guard       imapdial.LoginGuard
	tokens      *loader.Tokens
	credentials jetstream.JetStream
}

// Concurrency bounds the mailboxes Mailboxes verifies at once (each holds
// a connection to either server). The default is half the smaller of
// source.connections and target.connections, at least 1: the other half
// stays for a migration running alongside.
func Concurrency(n int) Option {
	return func(o *options) { o.concurrency = n }
}

// NewAfter makes the check source ⊆ target, as it is after a domain's
// switch: a target message that is the copy of no source message and
// whose INTERNALDATE is after t is reported as new_at_target, which does
// not make the mailbox differ. An extra message from before t still does.
func NewAfter(t time.Time) Option {
	return func(o *options) { o.newAfter = t }
}

// NewAtSourceAfter is for a verification while mail still reaches the
// source, as before the switch: a source message missing at the target
// whose INTERNALDATE is after t (the start of the pass that copied the
// mailbox) is reported as new_at_source, which does not make the mailbox
// differ: the next pass takes it. A missing message from before t still
// does, unless, with the ledger, it was moved at the source after the
// copy: its content is that of a copy deleted at source in another folder
// (a move keeps the INTERNALDATE).
func NewAtSourceAfter(t time.Time) Option {
	return func(o *options) { o.newAtSource = t }
}

// ResyncFlags makes verify repair flags differences: for each source
// message whose copy (paired as for every comparison) has other flags, it
// sets the copy's flags to the source's, read again from the source at
// that moment (UID STORE FLAGS.SILENT, \Recent never), reads them back,
// and reports the message as resynced, not as a difference. Source flags
// win: a change made at the target is undone, so run it while the source
// is the mailbox people use, or once right after the delta pass. Flags
// the target refuses (not in its PERMANENTFLAGS, which lacks \*) are not
// sent and are named in the difference that remains (Diff.Refused); a
// STORE that fails leaves the difference, with the error. It needs the
// target folder selected read-write, only for this.
func ResyncFlags() Option {
	return func(o *options) { o.resync = true }
}

// WithLedger lets verify read the loader's ledger (the key-value bucket
// the broker opens as Ledger) to pair each source message with the copy
// the target said it stored, so that a copy with other bytes is reported
// as altered, with both hashes. Without it only copies whose bytes differ
// in the known ways (line endings, bare CRs, NUL bytes, 8-bit header
// bytes) are.
func WithLedger(kv jetstream.KeyValue) Option {
	return func(o *options) { o.ledger = kv }
}

// SourceLogins has verify's logins to the source counted and limited with
// the extractor's (loginlimit.Store over the broker's LoginFailures
// bucket; kv nil: not limited), so that verifying a mailbox whose
// password is wrong cannot lock its account either.
func SourceLogins(kv jetstream.KeyValue, cfg *config.Config) Option {
	return func(o *options) {
		if kv != nil {
			o.guard = loginlimit.New(kv, "source", cfg.Source.MaxLoginFailures, nil)
		}
	}
}

// SourceCredentials lets verify log in to a source mailbox that has no
// password file with the password its user handed over at sign-in
// (shared/sourcecred, read through js; source.credential_key_file opens
// it).
func SourceCredentials(js jetstream.JetStream) Option {
	return func(o *options) { o.credentials = js }
}

// Mailboxes verifies each mailbox of the inventory, several at once (see
// Concurrency), and reports them in the inventory's order.
func Mailboxes(ctx context.Context, cfg *config.Config, boxes []job.Mailbox, opts ...Option) *Report {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	n := o.concurrency
	if n <= 0 {
		n = max(1, min(cfg.Source.Connections, cfg.Target.Connections)/2)
	}
	r := &Report{OK: true, Mailboxes: make([]MailboxReport, len(boxes))}
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for i, mb := range boxes {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r.Mailboxes[i] = Mailbox(ctx, cfg, mb, opts...)
		}()
	}
	wg.Wait()
	for _, mr := range r.Mailboxes {
		r.OK = r.OK && mr.OK
	}
	return r
}

// Mailbox verifies one mailbox; any error is part of the report.
func Mailbox(ctx context.Context, cfg *config.Config, mb job.Mailbox, opts ...Option) MailboxReport {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	mr := MailboxReport{Source: mb.SourceUser, Target: mb.TargetUser}
	if !o.newAfter.IsZero() {
		t := o.newAfter.UTC()
		mr.NewAfter = &t
	}
	if !o.newAtSource.IsZero() {
		t := o.newAtSource.UTC()
		mr.NewAtSourceAfter = &t
	}
	err := compareMailbox(ctx, cfg, mb, o, &mr)
	accepted := o.accepted
	if err == nil && o.acceptedKV != nil {
		var stored []Accepted
		stored, err = LoadAccepted(ctx, o.acceptedKV, mb.SourceUser)
		accepted = append(slices.Clip(accepted), stored...)
	}
	if err != nil {
		mr.Error = err.Error()
		mr.WaitingForUser = errors.Is(err, sourcecred.ErrWaiting)
	}
	applyAccepted(&mr, accepted)
	mr.OK = mr.Error == ""
	for _, f := range mr.Folders {
		mr.OK = mr.OK && f.OK()
	}
	return mr
}

func compareMailbox(ctx context.Context, cfg *config.Config, mb job.Mailbox, o options, mr *MailboxReport) error {
	// Folders are mapped as the loader maps them, with its settings.
	ls, err := loader.LoadSettings(cfg)
	if err != nil {
		return err
	}
	var landed []loader.Landing
	if o.ledger != nil {
		if landed, err = loader.Landed(ctx, o.ledger, mb.SourceUser); err != nil {
			return fmt.Errorf("read the loader's ledger: %w", err)
		}
	}
	src, roles, err := dial(ctx, cfg, "source", mb.SourceUser, mb.SourcePasswordFile, o.guard, nil, o.credentials)
	if err != nil {
		return err
	}
	defer src.Close()
	tgt, _, err := dial(ctx, cfg, "target", mb.TargetUser, mb.TargetPasswordFile, nil, o.tokens, nil)
	if err != nil {
		return err
	}
	defer tgt.Close()
	srcList, _, err := list(ctx, src, cfg.Source.CommandTimeout.Std(), roles)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	tgtList, tgtPrefix, err := list(ctx, tgt, cfg.Target.CommandTimeout.Std(), nil)
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	// The loader's roles for this target mailbox, the provider's spam
	// folder included (OpenSRS), so that both map folders alike.
	var spam loader.SpamFolders
	if o.tokens != nil {
		spam, _ = o.tokens.Minter.(loader.SpamFolders)
	}
	special, err := ls.TargetSpecial(ctx, spam, mb.TargetUser)
	if err != nil {
		return err
	}
	groups, err := group(srcList, foldermap.Target{Folders: tgtList, Special: special, Prefix: tgtPrefix}, ls)
	if err != nil {
		return err
	}
	idle := cfg.Source.CommandTimeout.Std()
	for _, g := range groups {
		fr, err := compareFolder(ctx, src, tgt, g, landed, idle, o)
		if err != nil {
			return err
		}
		mr.Messages += fr.SourceMessages
		mr.Bytes += fr.SourceBytes
		mr.Folders = append(mr.Folders, fr)
	}
	if !o.newAtSource.IsZero() {
		movedAtSource(mr.Folders)
	}
	for _, fr := range mr.Folders {
		mr.NewAtTarget += len(fr.NewAtTarget)
		mr.NewAtSource += len(fr.NewAtSource)
		mr.DeletedAtSource += len(fr.DeletedAtSource)
		mr.Resynced += len(fr.Resynced)
		mr.NotMail += len(fr.NotMail)
	}
	return nil
}

// movedAtSource makes new at source the missing messages that were moved
// at the source after the copy: a message a person moved from one folder
// to another on the old server keeps its INTERNALDATE, so it is missing
// from its new folder although the next pass takes it, and its copy in
// the old folder is deleted at source. A missing message with the content
// of such a copy is taken for it.
func movedAtSource(folders []FolderReport) {
	from := map[string]string{} // source hash -> the folder it left
	for _, f := range folders {
		for _, d := range f.DeletedAtSource {
			from[d.sourceSHA256] = d.sourceFolder
		}
	}
	if len(from) == 0 {
		return
	}
	for i := range folders {
		f := &folders[i]
		var keep []Diff
		for _, d := range f.Differences {
			left, ok := from[d.SHA256]
			if d.Kind != KindMissing || !ok {
				keep = append(keep, d)
				continue
			}
			d.Kind = KindNewAtSource
			d.Got = fmt.Sprintf("moved at the source from %q after the copy", left)
			f.NewAtSource = append(f.NewAtSource, d)
		}
		f.Differences = keep
	}
}

// dial logs in to side as user: with the loader's tokens when the
// target's auth is token (tokens set), else as configured (a source
// mailbox without a password file with the credential its user handed
// over, read through creds), the login limited by guard (nil: not
// limited). On the source it also returns the folders' roles from XLIST,
// as the extractor learns them.
func dial(ctx context.Context, cfg *config.Config, side, user, pwFile string, guard imapdial.LoginGuard, tokens *loader.Tokens, creds jetstream.JetStream) (*imapclient.Client, imapdial.Roles, error) {
	if side == "target" && cfg.Target.Auth == config.AuthToken {
		if tokens == nil {
			return nil, nil, errors.New("target auth token: verifying needs the broker (the loader's token bucket)")
		}
		var c *imapclient.Client
		err := tokens.Login(ctx, user, func(cred imapdial.Credentials) (err error) {
			c, err = imapdial.Dial(ctx, cfg.Target, cred, nil)
			return err
		})
		return c, nil, err
	}
	var cred imapdial.Credentials
	var err error
	if side == "source" {
		cred, err = sourcecred.CredentialsFor(ctx, creds, cfg, user, pwFile)
	} else {
		cred, err = imapdial.CredentialsFor(cfg, side, user, pwFile)
	}
	if err != nil {
		return nil, nil, err
	}
	if side == "target" {
		c, err := imapdial.DialGuarded(ctx, cfg.Target, cred, nil, nil, guard)
		return c, nil, err
	}
	return imapdial.DialRoles(ctx, cfg.Source, cred, nil, guard)
}

// list LISTs every folder, with its role from roles (nil: none) among its
// attributes and the personal namespace prefix (NAMESPACE, asked only
// where advertised), which it returns too.
func list(ctx context.Context, c *imapclient.Client, timeout time.Duration, roles imapdial.Roles) ([]foldermap.Folder, string, error) {
	prefix, err := imapdial.PersonalPrefix(ctx, c, timeout)
	if err != nil {
		return nil, "", fmt.Errorf("list folders: %w", err)
	}
	opts := &imap.ListOptions{}
	if c.Caps().Has(imap.CapSpecialUse) && c.Caps().Has(imap.CapListExtended) {
		opts.ReturnSpecialUse = true
	}
	defer imapdial.Watch(ctx, c, timeout).Stop()
	ls, err := c.List("", "*", opts).Collect()
	if err != nil {
		return nil, "", fmt.Errorf("list folders: %w", err)
	}
	out := make([]foldermap.Folder, 0, len(ls))
	for _, l := range ls {
		out = append(out, foldermap.Folder{Name: l.Mailbox, Delim: l.Delim, Attrs: roles.Add(l.Mailbox, l.Attrs), Prefix: prefix})
	}
	return out, prefix, nil
}

type folderGroup struct {
	target  string
	sources []string
}

// group maps the source folders as the loader does and groups them by
// target name; folders that cannot hold messages are left out. tgt's
// delimiter is its folders' ('/' when none says).
func group(src []foldermap.Folder, tgt foldermap.Target, lc loader.Settings) ([]folderGroup, error) {
	tgt.Delim = '/'
	for _, f := range tgt.Folders {
		if f.Delim != 0 {
			tgt.Delim = f.Delim
			break
		}
	}
	m, err := foldermap.New(tgt, foldermap.Options{Substitute: lc.Substitute, Table: lc.FolderMap})
	if err != nil {
		return nil, fmt.Errorf("folder mapping: %w", err)
	}
	selectable := map[string]bool{}
	for _, f := range src {
		if !slices.Contains(f.Attrs, imap.MailboxAttrNoSelect) && !slices.Contains(f.Attrs, imap.MailboxAttrNonExistent) {
			selectable[f.Name] = true
		}
	}
	byTarget := map[string]*folderGroup{}
	for _, r := range m.MapAll(src) {
		if !selectable[r.Source] {
			continue
		}
		g := byTarget[r.Target]
		if g == nil {
			g = &folderGroup{target: r.Target}
			byTarget[r.Target] = g
		}
		g.sources = append(g.sources, r.Source)
	}
	out := make([]folderGroup, 0, len(byTarget))
	for _, g := range byTarget {
		slices.Sort(g.sources)
		out = append(out, *g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].target < out[j].target })
	return out, nil
}

// fingerprint is what must match per message, apart from the hash.
type fingerprint struct {
	folder string
	uid    uint32
	size   int64
	flags  string
	date   int64
	lines  string // hash with normalised line endings
	loose  string // hash of the loose form (mailscan.Loose)
}

// copyKey names a source message within a folder group.
type copyKey struct {
	folder string
	uid    uint32
}

// recorded is the copy the ledger says the target made of a message.
type recorded struct {
	uid    uint32
	stored string // its hash when the loader saw it altered
}

func compareFolder(ctx context.Context, src, tgt *imapclient.Client, g folderGroup, landed []loader.Landing, idle time.Duration, o options) (FolderReport, error) {
	fr := FolderReport{Sources: g.sources, Target: g.target}
	want := map[string][]fingerprint{}
	srcValidity := map[string]uint32{}
	present := map[copyKey]bool{} // the source messages there are
	for _, s := range g.sources {
		sel, err := mailscan.Scan(ctx, src, s, 1, idle, func(m mailscan.Message) error {
			if m.NotMail != "" {
				fr.NotMail = append(fr.NotMail, Diff{Kind: KindNotMail, Folder: s, UID: m.UID, Size: m.Size, SHA256: m.SHA256, NotMail: m.NotMail})
				return nil
			}
			want[m.SHA256] = append(want[m.SHA256], fingerprintOf(s, m))
			present[copyKey{s, m.UID}] = true
			fr.SourceMessages++
			fr.SourceBytes += m.Size
			return nil
		})
		if err != nil {
			return fr, fmt.Errorf("source: %w", err)
		}
		srcValidity[s] = sel.UIDValidity
	}
	got := map[string][]fingerprint{}
	sel, err := mailscan.Scan(ctx, tgt, g.target, 1, idle, func(m mailscan.Message) error {
		got[m.SHA256] = append(got[m.SHA256], fingerprintOf(g.target, m))
		fr.TargetMessages++
		fr.TargetBytes += m.Size
		return nil
	})
	// A folder the target lacks holds nothing: each source message is
	// missing, named.
	if err != nil && !isNonExistent(err) {
		return fr, fmt.Errorf("target: %w", err)
	}
	copies := map[copyKey]recorded{}
	copyOf := map[uint32]loader.Landing{} // by target UID
	var renumbered []loader.Landing
	for _, l := range landed {
		// Only what the ledger says of these very folders counts: a
		// folder recreated on either side has new UIDs.
		v, ok := srcValidity[l.Folder]
		if !ok || v != l.UIDValidity || l.TargetFolder != g.target || sel == nil || l.TargetUIDValidity != sel.UIDValidity {
			continue
		}
		if l.Renumbered {
			renumbered = append(renumbered, l)
			continue
		}
		copies[copyKey{l.Folder, l.UID}] = recorded{uid: l.TargetUID, stored: l.StoredSHA256}
		copyOf[l.TargetUID] = l
	}
	fr.Differences = diff(want, got, copies)
	if bindRenumbered(fr.Differences, want, renumbered, copies, copyOf) {
		fr.Differences = diff(want, got, copies)
	}
	fr.Differences, fr.DeletedAtSource = splitDeleted(fr.Differences, copyOf, present)
	fr.Differences, fr.NewAtTarget = splitNew(fr.Differences, o.newAfter)
	fr.Differences, fr.NewAtSource = splitNewAtSource(fr.Differences, o.newAtSource)
	var tgtValidity uint32
	if sel != nil {
		tgtValidity = sel.UIDValidity
	}
	if o.resync && sel != nil {
		var err error
		if fr.Differences, fr.Resynced, err = resync(ctx, src, tgt, g.target, srcValidity, tgtValidity, fr.Differences, idle); err != nil {
			return fr, err
		}
	}
	if err := nameMessages(ctx, src, tgt, fr, srcValidity, tgtValidity, idle); err != nil {
		return fr, err
	}
	return fr, nil
}

// bindRenumbered pairs the copies the ledger recorded under a folder's
// older numbering (renumbered: the folder was renumbered under the same
// UIDVALIDITY since, and extracted again) with the source messages as
// they are numbered now, by content, as far as ds (the differences
// without them) needs it: a copy that is extra is bound to a missing
// source message of its folder with its source's hash (an altered copy:
// paired then as the loader recorded it), or else taken for the copy of
// a message deleted at the source since (copyOf gets it with UID 0). A
// copy the comparison paired already needs nothing. It reports whether
// it added to copies (the comparison must then run again).
func bindRenumbered(ds []Diff, want map[string][]fingerprint, renumbered []loader.Landing, copies map[copyKey]recorded, copyOf map[uint32]loader.Landing) bool {
	if len(renumbered) == 0 {
		return false
	}
	extra := map[uint32]bool{}
	missing := map[copyKey]bool{}
	for _, d := range ds {
		switch d.Kind {
		case KindExtra:
			extra[d.UID] = true
		case KindMissing:
			missing[copyKey{d.Folder, d.UID}] = true
		}
	}
	bound := false
	for _, l := range renumbered {
		if _, ok := copyOf[l.TargetUID]; ok || !extra[l.TargetUID] {
			continue
		}
		l.UID = 0
		for _, fp := range want[l.SHA256] {
			k := copyKey{fp.folder, fp.uid}
			if _, taken := copies[k]; fp.folder == l.Folder && missing[k] && !taken {
				l.UID = fp.uid
				copies[k] = recorded{uid: l.TargetUID, stored: l.StoredSHA256}
				bound = true
				break
			}
		}
		copyOf[l.TargetUID] = l
	}
	return bound
}

// splitDeleted takes out of ds the extra messages that the ledger names
// (copyOf, by target UID) as the copy of a source message that its
// folder no longer holds (present): deleted at the source after the copy.
// copyOf holds only what the ledger says of the folders as they are now
// (same UIDVALIDITY on both sides).
func splitDeleted(ds []Diff, copyOf map[uint32]loader.Landing, present map[copyKey]bool) (diffs, deleted []Diff) {
	for _, d := range ds {
		l, ok := copyOf[d.UID]
		if d.Kind != KindExtra || !ok || present[copyKey{l.Folder, l.UID}] {
			diffs = append(diffs, d)
			continue
		}
		d.Kind, d.sourceSHA256, d.sourceFolder = KindDeletedAtSource, l.SHA256, l.Folder
		d.Got = fmt.Sprintf("copy of source %q uid %d (uidvalidity %d), which the source no longer holds", l.Folder, l.UID, l.UIDValidity)
		if l.Renumbered {
			d.Got = fmt.Sprintf("copy of a message of source %q (uidvalidity %d) as numbered before the folder was renumbered, which the source no longer holds", l.Folder, l.UIDValidity)
		}
		deleted = append(deleted, d)
	}
	return diffs, deleted
}

// splitNewAtSource takes out of ds the missing messages that arrived
// after t (when t is set): mail that reached the source after the pass
// started.
func splitNewAtSource(ds []Diff, t time.Time) (diffs, fresh []Diff) {
	return splitArrived(ds, t, KindMissing, KindNewAtSource)
}

func fingerprintOf(folder string, m mailscan.Message) fingerprint {
	return fingerprint{folder: folder, uid: m.UID, size: m.Size, flags: strings.Join(m.Flags, " "), date: m.InternalDate.Unix(),
		lines: m.LinesSHA256, loose: mailscan.Loose(m.LooseSHA256, m.LinesSHA256)}
}

// splitNew takes out of ds the extra messages that arrived after t (when
// t is set): mail delivered to the target after the switch.
func splitNew(ds []Diff, t time.Time) (diffs, fresh []Diff) {
	return splitArrived(ds, t, KindExtra, KindNewAtTarget)
}

// splitArrived takes out of ds the differences of kind whose message
// arrived (INTERNALDATE) after t, when t is set, as kind fresh.
func splitArrived(ds []Diff, t time.Time, kind, freshKind string) (diffs, fresh []Diff) {
	if t.IsZero() {
		return ds, nil
	}
	for _, d := range ds {
		if d.Kind == kind && d.arrived.After(t) {
			d.Kind = freshKind
			d.Got = d.arrived.UTC().Format(time.RFC3339)
			fresh = append(fresh, d)
			continue
		}
		diffs = append(diffs, d)
	}
	return diffs, fresh
}

// nameMessages fills in the header fields of the messages fr names: the
// target's for extra, new_at_target and deleted_at_source, the source's
// for the rest. A
// folder whose UIDVALIDITY changed since the scan is left unnamed: its
// UIDs name other messages now.
func nameMessages(ctx context.Context, src, tgt *imapclient.Client, fr FolderReport, srcValidity map[string]uint32, tgtValidity uint32, idle time.Duration) error {
	type side struct {
		c        *imapclient.Client
		validity uint32
	}
	type place struct {
		target bool
		folder string
	}
	byPlace := map[place][]*Diff{}
	var order []place
	for _, ds := range [][]Diff{fr.Differences, fr.NewAtTarget, fr.NewAtSource, fr.DeletedAtSource, fr.Resynced} {
		for i := range ds {
			d := &ds[i]
			p := place{target: d.Kind == KindExtra || d.Kind == KindNewAtTarget || d.Kind == KindDeletedAtSource, folder: d.Folder}
			if _, ok := byPlace[p]; !ok {
				order = append(order, p)
			}
			byPlace[p] = append(byPlace[p], d)
		}
	}
	for _, p := range order {
		s := side{src, srcValidity[p.folder]}
		if p.target {
			s = side{tgt, tgtValidity}
		}
		ds := byPlace[p]
		uids := make([]uint32, 0, len(ds))
		for _, d := range ds {
			uids = append(uids, d.UID)
		}
		slices.Sort(uids)
		uids = slices.Compact(uids)
		hs, sel, err := mailscan.Headers(ctx, s.c, p.folder, uids, idle)
		if err != nil {
			return fmt.Errorf("name the differing messages: %w", err)
		}
		if sel.UIDValidity != s.validity {
			continue
		}
		for _, d := range ds {
			d.Header = hs[d.UID]
		}
	}
	return nil
}

func isNonExistent(err error) bool {
	return strings.Contains(err.Error(), "NONEXISTENT") || strings.Contains(strings.ToLower(err.Error()), "doesn't exist")
}

// diff compares two multisets of messages keyed by content hash. Within
// one hash, copies are paired by equal flags and date first, so identical
// messages with different flags are reported once each, not twice. A
// missing message and an extra one are one message the target altered
// when the ledger says the extra one is the copy the target made of it
// (copies), or else when they differ only in line endings, or only in
// the bytes servers are known to rewrite (their loose forms are equal).
func diff(want, got map[string][]fingerprint, copies map[copyKey]recorded) []Diff {
	var out []Diff
	var missing, extra []Diff
	var missingFP, extraFP []fingerprint
	hashes := make([]string, 0, len(want)+len(got))
	for h := range want {
		hashes = append(hashes, h)
	}
	for h := range got {
		if _, ok := want[h]; !ok {
			hashes = append(hashes, h)
		}
	}
	slices.Sort(hashes)
	for _, h := range hashes {
		w, g := slices.Clone(want[h]), slices.Clone(got[h])
		// Exact pairs first.
		for i := 0; i < len(w); {
			j := slices.IndexFunc(g, func(x fingerprint) bool { return x.flags == w[i].flags && x.date == w[i].date })
			if j < 0 {
				i++
				continue
			}
			w = slices.Delete(w, i, i+1)
			g = slices.Delete(g, j, j+1)
		}
		for len(w) > 0 && len(g) > 0 {
			a, b := w[0], g[0]
			w, g = w[1:], g[1:]
			out = append(out, pairDiffs(a.diff("", h), a, b)...)
		}
		for _, a := range w {
			missing = append(missing, a.diff(KindMissing, h))
			missingFP = append(missingFP, a)
		}
		for _, b := range g {
			extra = append(extra, b.diff(KindExtra, h))
			extraFP = append(extraFP, b)
		}
	}
	// The ledger's pairs first: they are the server's own word.
	var unpaired []int
	for i := range missing {
		rc, ok := copies[copyKey{missingFP[i].folder, missingFP[i].uid}]
		j := -1
		if ok {
			j = slices.IndexFunc(extraFP, func(x fingerprint) bool { return x.uid == rc.uid })
		}
		if j < 0 {
			unpaired = append(unpaired, i)
			continue
		}
		how := "as the loader recorded"
		if rc.stored == "" {
			how = "the copy the target named for it"
		} else if rc.stored != extra[j].SHA256 {
			how = "the copy the target named for it, since changed"
		}
		out = append(out, altered(missing[i], missingFP[i], extra[j], extraFP[j], fmt.Sprintf("target stored %s at uid %d (sha256 %s), %s",
			otherWhat(missingFP[i], extraFP[j]), extraFP[j].uid, extra[j].SHA256, how))...)
		extra = slices.Delete(extra, j, j+1)
		extraFP = slices.Delete(extraFP, j, j+1)
	}
	// Then copies that differ only in what servers are known to rewrite.
	for _, i := range unpaired {
		what := "other line endings"
		j := slices.IndexFunc(extraFP, func(x fingerprint) bool { return x.lines != "" && x.lines == missingFP[i].lines })
		if j < 0 {
			what = "bare CRs dropped or NUL or 8-bit header bytes rewritten"
			j = slices.IndexFunc(extraFP, func(x fingerprint) bool { return x.loose != "" && x.loose == missingFP[i].loose })
		}
		if j < 0 {
			out = append(out, missing[i])
			continue
		}
		out = append(out, altered(missing[i], missingFP[i], extra[j], extraFP[j], fmt.Sprintf("target stored %s at uid %d (sha256 %s)",
			what, extraFP[j].uid, extra[j].SHA256))...)
		extra = slices.Delete(extra, j, j+1)
		extraFP = slices.Delete(extraFP, j, j+1)
	}
	return append(out, extra...)
}

// otherWhat says how a copy's bytes differ, as far as the hashes tell.
func otherWhat(a, b fingerprint) string {
	if a.lines != "" && a.lines == b.lines {
		return "other line endings"
	}
	return "other bytes"
}

// altered reports a source message (m, a) and the copy the target made of
// it (x, b): the bytes, and flags and date as for any pair.
func altered(m Diff, a fingerprint, x Diff, b fingerprint, got string) []Diff {
	d := m
	d.Kind, d.TargetUID, d.StoredSHA256, d.Want, d.Got = KindAltered, b.uid, x.SHA256, "bytes as on the source", got
	return append([]Diff{d}, pairDiffs(m, a, b)...)
}

// pairDiffs compares the flags and dates of a source message (m, a) and
// its copy b.
func pairDiffs(m Diff, a, b fingerprint) []Diff {
	var out []Diff
	if a.flags != b.flags {
		d := m
		d.Kind, d.Want, d.Got, d.TargetUID = KindFlags, a.flags, b.flags, b.uid
		out = append(out, d)
	}
	if a.date != b.date {
		d := m
		d.TargetUID = b.uid
		d.Kind, d.Want, d.Got = KindDate, time.Unix(a.date, 0).UTC().Format(time.RFC3339), time.Unix(b.date, 0).UTC().Format(time.RFC3339)
		out = append(out, d)
	}
	return out
}

// diff names the message f with hash sha as a difference of kind.
func (f fingerprint) diff(kind, sha string) Diff {
	return Diff{Kind: kind, Folder: f.folder, UID: f.uid, Size: f.size, SHA256: sha, arrived: time.Unix(f.date, 0)}
}
