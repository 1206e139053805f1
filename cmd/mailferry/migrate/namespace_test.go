package migrate_test

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/cmd/mailferry/verify"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
	"github.com/mailferry/mailferry/shared/testenv/e2etest"
)

// prefixedSource is a legacy server of MailEnable's era with every folder
// under the personal namespace "INBOX." (NAMESPACE (("INBOX." "."))).
var prefixedSource = dovecottest.Options{Separator: '.', Prefix: "INBOX."}

// TestAPrefixedSourceNamespaceMapsOntoTheTargetsFolders migrates from a
// source whose folders are all under "INBOX.": the prefix is taken off
// (INBOX.Archive.2010 is Archive/2010 on a '/' target), INBOX.Sent Items
// is recognised as Sent and merged into the target's, a target with its
// own prefix gets it put back, every renamed folder is reported with the
// prefix as its reason, and verification is clean.
func TestAPrefixedSourceNamespaceMapsOntoTheTargetsFolders(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		target dovecottest.Options
		// want maps each source folder to the target folder it lands in.
		want map[string]string
		// renamed are the source folders reported renamed: where to and
		// the words their reason must have.
		renamed map[string][2]string
	}{
		{
			name:   "onto a / target with special-use folders",
			target: dovecottest.Options{Separator: '/'},
			want: map[string]string{"INBOX": "INBOX", "INBOX.Sent Items": "Sent", "INBOX.Archive.2010": "Archive/2010",
				"INBOX.Drafts": "Drafts"},
			renamed: map[string][2]string{
				"INBOX.Sent Items":   {"Sent", `source namespace prefix "INBOX." removed; special-use \Sent mapped onto target folder "Sent"`},
				"INBOX.Archive.2010": {"Archive/2010", `source namespace prefix "INBOX." removed`},
				"INBOX.Drafts":       {"Drafts", `source namespace prefix "INBOX." removed`},
				// The source Dovecot lists the parent, an \Archive.
				"INBOX.Archive": {"Archive", `source namespace prefix "INBOX." removed`},
			},
		},
		{
			name:   "onto a target with its own prefix",
			target: dovecottest.Options{Separator: '.', Prefix: "INBOX."},
			want: map[string]string{"INBOX": "INBOX", "INBOX.Sent Items": "INBOX.Sent", "INBOX.Archive.2010": "INBOX.Archive.2010",
				"INBOX.Drafts": "INBOX.Drafts"},
			renamed: map[string][2]string{
				"INBOX.Sent Items": {"INBOX.Sent", `special-use \Sent mapped onto target folder "INBOX.Sent"`},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := e2etest.StartWithSource(t, 1, prefixedSource, tc.target)
			u := p.Users[0]
			rng := rand.New(rand.NewPCG(7, uint64(len(tc.name))))
			want := seedFolders(t, p.Src, u, tc.want, func(src string) []dovecottest.Message { return e2etest.Generated(rng, 2+len(src)%3, u+" "+src) })
			_, cfg := p.Config(t, filepath.Join(p.Dir, "nats"))
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			migrateVerified(ctx, t, cfg)
			got := requireCounts(ctx, t, p.Tgt, u, want)
			for folder := range got {
				if strings.Contains(folder, "Sent Items") || strings.HasPrefix(folder, "INBOX/") || strings.HasPrefix(folder, "INBOX.INBOX") {
					t.Errorf("target folder %q is a source name kept with its prefix (all: %v)", folder, got)
				}
			}
			reported := renamedFolders(ctx, t, cfg, u)
			for src, w := range tc.renamed {
				r, ok := reported[src]
				if !ok {
					t.Errorf("%q not reported renamed; reported: %v", src, reported)
					continue
				}
				if r.Target != w[0] || !strings.Contains(r.Reason, w[1]) {
					t.Errorf("%q reported renamed to %q because %q, want %q because %q", src, r.Target, r.Reason, w[0], w[1])
				}
			}
			for src := range reported {
				if _, ok := tc.renamed[src]; !ok {
					t.Errorf("%q reported renamed (%+v), want it not to be", src, reported[src])
				}
			}
		})
	}
}

// A copy whose prefix was not taken off (the folder landed as
// INBOX/Archive/2010 instead of Archive/2010) is not a clean migration.
func TestVerifyFindsAFolderThatKeptTheSourcePrefix(t *testing.T) {
	t.Parallel()
	p := e2etest.StartWithSource(t, 1, prefixedSource, dovecottest.Options{Separator: '/'})
	u := p.Users[0]
	rng := rand.New(rand.NewPCG(7, 15))
	for _, f := range []string{"INBOX", "INBOX.Archive.2010"} {
		if err := p.Src.Seed(u, f, e2etest.Generated(rng, 3, u+" "+f)); err != nil {
			t.Fatal(err)
		}
	}
	_, cfg := p.Config(t, filepath.Join(p.Dir, "nats"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	migrateVerified(ctx, t, cfg)
	if out, err := p.Tgt.Doveadm(ctx, "mailbox", "rename", "-u", u, "Archive/2010", "INBOX/Archive/2010"); err != nil {
		t.Fatalf("doveadm mailbox rename: %v\n%s", err, out)
	}
	r := verify.Mailbox(ctx, cfg, job.Mailbox{SourceUser: u, TargetUser: u})
	if r.OK {
		t.Fatalf("verify passed with Archive/2010 under INBOX/: %+v", r)
	}
	var missing int
	for _, f := range r.Folders {
		for _, d := range f.Differences {
			if f.Target == "Archive/2010" && d.Kind == verify.KindMissing {
				missing++
			}
		}
	}
	if missing != 3 {
		t.Errorf("%d messages reported missing from Archive/2010, want 3: %+v", missing, r)
	}
}

// renamedFolders reads the folder.renamed events of mailbox from the
// broker cfg names, by source folder.
func renamedFolders(ctx context.Context, t *testing.T, cfg *config.Config, mailbox string) map[string]event.RenamedData {
	t.Helper()
	b, err := broker.Open(ctx, cfg.NATS, "test", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	st, err := b.JS.Stream(ctx, broker.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	subj := event.Renamed(mailbox, event.RenamedData{}).Subject()
	out := map[string]event.RenamedData{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil || m.Subject != subj {
			continue
		}
		e, err := event.Decode(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		var d event.RenamedData
		if err := e.DataAs(&d); err != nil {
			t.Fatal(err)
		}
		out[d.Source] = d
	}
	return out
}
