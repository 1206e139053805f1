// Package verify compares every folder of a source mailbox with where the
// loader put it on the target: message count, SHA-256 of every message's
// bytes (as a multiset), flags per message and INTERNALDATE as an instant.
//
// A message the target stored with other bytes is one altered message,
// not one missing and one extra: verify pairs the two through the
// loader's ledger (WithLedger), which holds the target UID the server
// named for each appended message and, when the loader saw the copy
// differ, both hashes; without the ledger only the rewrites servers are
// known to make (line endings, NUL bytes, 8-bit header bytes) are
// recognised.
package verify

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/services/loader"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/foldermap"
	"github.com/mailferry/mailferry/shared/imapdial"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/mailscan"
)

// Report is the outcome for a set of mailboxes.
type Report struct {
	OK        bool            `json:"ok"`
	Mailboxes []MailboxReport `json:"mailboxes"`
}

// MailboxReport is the outcome for one mailbox.
type MailboxReport struct {
	Source   string         `json:"source"`
	Target   string         `json:"target"`
	OK       bool           `json:"ok"`
	Error    string         `json:"error,omitempty"`
	Messages int            `json:"messages"`
	Bytes    int64          `json:"bytes"`
	Folders  []FolderReport `json:"folders"`
}

// FolderReport compares the source folders that map onto one target
// folder (usually one; several when special-use folders merge).
type FolderReport struct {
	Sources        []string `json:"sources"`
	Target         string   `json:"target"`
	SourceMessages int      `json:"source_messages"`
	TargetMessages int      `json:"target_messages"`
	Differences    []Diff   `json:"differences,omitempty"`
}

// OK reports whether the folder matched.
func (f FolderReport) OK() bool { return len(f.Differences) == 0 }

// Diff is one difference, named by the source message it concerns.
type Diff struct {
	// Kind is missing, extra, altered, flags or date.
	Kind   string `json:"kind"`
	Folder string `json:"folder,omitempty"`
	UID    uint32 `json:"uid,omitempty"`
	// SHA256 is the source message's hash (an extra one's: the target's).
	SHA256 string `json:"sha256"`
	// TargetUID and StoredSHA256 name, for an altered message, the copy
	// the target made of it and that copy's hash.
	TargetUID    uint32 `json:"target_uid,omitempty"`
	StoredSHA256 string `json:"stored_sha256,omitempty"`
	Want         string `json:"want,omitempty"`
	Got          string `json:"got,omitempty"`
}

// Option changes what verify uses besides the two servers.
type Option func(*options)

type options struct {
	ledger jetstream.KeyValue
}

// WithLedger lets verify read the loader's ledger (the key-value bucket
// the broker opens as Ledger) to pair each source message with the copy
// the target said it stored, so that a copy with other bytes is reported
// as altered, with both hashes. Without it only copies whose bytes differ
// in the known ways (line endings, NUL bytes, 8-bit header bytes) are.
func WithLedger(kv jetstream.KeyValue) Option {
	return func(o *options) { o.ledger = kv }
}

// Mailboxes verifies each mailbox of the inventory.
func Mailboxes(ctx context.Context, cfg *config.Config, boxes []job.Mailbox, opts ...Option) *Report {
	r := &Report{OK: true}
	for _, mb := range boxes {
		mr := Mailbox(ctx, cfg, mb, opts...)
		r.OK = r.OK && mr.OK
		r.Mailboxes = append(r.Mailboxes, mr)
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
	if err := compareMailbox(ctx, cfg, mb, o, &mr); err != nil {
		mr.Error = err.Error()
	}
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
	src, err := dial(ctx, cfg, "source", mb.SourceUser, mb.SourcePasswordFile)
	if err != nil {
		return err
	}
	defer src.Close()
	tgt, err := dial(ctx, cfg, "target", mb.TargetUser, mb.TargetPasswordFile)
	if err != nil {
		return err
	}
	defer tgt.Close()
	srcList, err := list(ctx, src, cfg.Source.CommandTimeout.Std())
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	tgtList, err := list(ctx, tgt, cfg.Target.CommandTimeout.Std())
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	groups, err := group(srcList, tgtList, ls)
	if err != nil {
		return err
	}
	idle := cfg.Source.CommandTimeout.Std()
	for _, g := range groups {
		fr, err := compareFolder(ctx, src, tgt, g, landed, idle)
		if err != nil {
			return err
		}
		mr.Messages += fr.SourceMessages
		mr.Folders = append(mr.Folders, fr)
	}
	return nil
}

func dial(ctx context.Context, cfg *config.Config, side, user, pwFile string) (*imapclient.Client, error) {
	cred, err := imapdial.CredentialsFor(cfg, side, user, pwFile)
	if err != nil {
		return nil, err
	}
	s := cfg.Source
	if side == "target" {
		s = cfg.Target
	}
	return imapdial.Dial(ctx, s, cred, nil)
}

func list(ctx context.Context, c *imapclient.Client, timeout time.Duration) ([]foldermap.Folder, error) {
	opts := &imap.ListOptions{}
	if c.Caps().Has(imap.CapSpecialUse) && c.Caps().Has(imap.CapListExtended) {
		opts.ReturnSpecialUse = true
	}
	defer imapdial.Watch(ctx, c, timeout).Stop()
	ls, err := c.List("", "*", opts).Collect()
	if err != nil {
		return nil, fmt.Errorf("list folders: %w", err)
	}
	out := make([]foldermap.Folder, 0, len(ls))
	for _, l := range ls {
		out = append(out, foldermap.Folder{Name: l.Mailbox, Delim: l.Delim, Attrs: l.Attrs})
	}
	return out, nil
}

type folderGroup struct {
	target  string
	sources []string
}

// group maps the source folders as the loader does and groups them by
// target name; folders that cannot hold messages are left out.
func group(src, tgt []foldermap.Folder, lc loader.Settings) ([]folderGroup, error) {
	delim := rune('/')
	for _, f := range tgt {
		if f.Delim != 0 {
			delim = f.Delim
			break
		}
	}
	m, err := foldermap.New(foldermap.Target{Delim: delim, Folders: tgt}, foldermap.Options{Substitute: lc.Substitute, Table: lc.FolderMap})
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

func compareFolder(ctx context.Context, src, tgt *imapclient.Client, g folderGroup, landed []loader.Landing, idle time.Duration) (FolderReport, error) {
	fr := FolderReport{Sources: g.sources, Target: g.target}
	want := map[string][]fingerprint{}
	srcValidity := map[string]uint32{}
	for _, s := range g.sources {
		sel, err := mailscan.Scan(ctx, src, s, 1, idle, func(m mailscan.Message) error {
			want[m.SHA256] = append(want[m.SHA256], fingerprint{folder: s, uid: m.UID, flags: strings.Join(m.Flags, " "), date: m.InternalDate.Unix(), lines: m.LinesSHA256, loose: mailscan.Loose(m.LooseSHA256, m.LinesSHA256)})
			fr.SourceMessages++
			return nil
		})
		if err != nil {
			return fr, fmt.Errorf("source: %w", err)
		}
		srcValidity[s] = sel.UIDValidity
	}
	got := map[string][]fingerprint{}
	sel, err := mailscan.Scan(ctx, tgt, g.target, 1, idle, func(m mailscan.Message) error {
		got[m.SHA256] = append(got[m.SHA256], fingerprint{folder: g.target, uid: m.UID, flags: strings.Join(m.Flags, " "), date: m.InternalDate.Unix(), lines: m.LinesSHA256, loose: mailscan.Loose(m.LooseSHA256, m.LinesSHA256)})
		fr.TargetMessages++
		return nil
	})
	if err != nil && !(fr.SourceMessages == 0 && isNonExistent(err)) {
		return fr, fmt.Errorf("target: %w", err)
	}
	copies := map[copyKey]recorded{}
	for _, l := range landed {
		// Only what the ledger says of these very folders counts: a
		// folder recreated on either side has new UIDs.
		v, ok := srcValidity[l.Folder]
		if ok && v == l.UIDValidity && l.TargetFolder == g.target && sel != nil && l.TargetUIDValidity == sel.UIDValidity {
			copies[copyKey{l.Folder, l.UID}] = recorded{uid: l.TargetUID, stored: l.StoredSHA256}
		}
	}
	fr.Differences = diff(want, got, copies)
	return fr, nil
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
			if a.flags != b.flags {
				out = append(out, Diff{Kind: "flags", Folder: a.folder, UID: a.uid, SHA256: h, Want: a.flags, Got: b.flags})
			}
			if a.date != b.date {
				out = append(out, Diff{Kind: "date", Folder: a.folder, UID: a.uid, SHA256: h,
					Want: time.Unix(a.date, 0).UTC().Format(time.RFC3339), Got: time.Unix(b.date, 0).UTC().Format(time.RFC3339)})
			}
		}
		for _, a := range w {
			missing = append(missing, Diff{Kind: "missing", Folder: a.folder, UID: a.uid, SHA256: h})
			missingFP = append(missingFP, a)
		}
		for _, b := range g {
			extra = append(extra, Diff{Kind: "extra", Folder: b.folder, UID: b.uid, SHA256: h})
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
			what = "NUL or 8-bit header bytes rewritten"
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
	out := []Diff{{Kind: "altered", Folder: m.Folder, UID: m.UID, SHA256: m.SHA256, TargetUID: b.uid, StoredSHA256: x.SHA256,
		Want: "bytes as on the source", Got: got}}
	if a.flags != b.flags {
		out = append(out, Diff{Kind: "flags", Folder: m.Folder, UID: m.UID, SHA256: m.SHA256, Want: a.flags, Got: b.flags})
	}
	if a.date != b.date {
		out = append(out, Diff{Kind: "date", Folder: m.Folder, UID: m.UID, SHA256: m.SHA256,
			Want: time.Unix(a.date, 0).UTC().Format(time.RFC3339), Got: time.Unix(b.date, 0).UTC().Format(time.RFC3339)})
	}
	return out
}
