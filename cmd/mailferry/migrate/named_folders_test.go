package migrate_test

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/cmd/mailferry/migrate"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
	"github.com/mailferry/mailferry/shared/testenv/e2etest"
)

// TestLegacyRolesLandInAProvidersFoldersThatCarryNoSpecialUse migrates into
// a target made like OpenSRS: every mailbox has Sent, Drafts, Trash and
// Spam, listed without special-use attributes. The legacy Outlook names go
// into those folders (nothing created beside them), the rest keeps its
// name, and verification agrees.
func TestLegacyRolesLandInAProvidersFoldersThatCarryNoSpecialUse(t *testing.T) {
	p := e2etest.Start(t, 1, dovecottest.Options{PlainFolders: []string{"Sent", "Drafts", "Trash", "Spam"}})
	u := p.Users[0]
	rng := rand.New(rand.NewPCG(5, 6))
	want := seedFolders(t, p.Src, u, map[string]string{"Sent Items": "Sent", "Deleted Items": "Trash", "Junk E-mail": "Spam", "Drafts": "Drafts", "Archive/2019": "Archive.2019", "INBOX": "INBOX"}, func(src string) []dovecottest.Message { return e2etest.Generated(rng, 3+len(src)%4, u+" "+src) })
	_, cfg := p.Config(t, filepath.Join(p.Dir, "nats"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	migrateVerified(ctx, t, cfg)
	got := requireCounts(ctx, t, p.Tgt, u, want)
	for _, beside := range []string{"Sent Items", "Deleted Items", "Junk E-mail"} {
		if _, ok := got[beside]; ok {
			t.Errorf("%q was created beside the provider's folder: %v", beside, got)
		}
	}
}

// migrateVerified runs one migration of cfg, which must load and verify
// every mailbox; the report is the failure's message.
func migrateVerified(ctx context.Context, t *testing.T, cfg *config.Config) *migrate.Result {
	t.Helper()
	res, err := migrate.Run(ctx, cfg, e2etest.Logger(t), migrate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() {
		var b strings.Builder
		res.WriteText(&b)
		t.Fatalf("migration not verified:\n%s", b.String())
	}
	return res
}

// requireCounts fails the test unless user's folders at s hold the number
// of messages want says, and returns every folder's count.
func requireCounts(ctx context.Context, t *testing.T, s *dovecottest.Server, user string, want map[string]int) map[string]int {
	t.Helper()
	got, err := s.MessageCounts(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	for folder, n := range want {
		if got[folder] != n {
			t.Errorf("target %q holds %d messages, want %d (all: %v)", folder, got[folder], n, got)
		}
	}
	return got
}

// seedFolders puts gen(source folder)'s messages into each source folder
// of into (source folder to the target folder it must land in) and
// returns how many messages each target folder must then hold.
func seedFolders(t *testing.T, s *dovecottest.Server, user string, into map[string]string, gen func(src string) []dovecottest.Message) map[string]int {
	t.Helper()
	want := map[string]int{}
	for src, tgt := range into {
		msgs := gen(src)
		if err := s.Seed(user, src, msgs); err != nil {
			t.Fatal(err)
		}
		want[tgt] += len(msgs)
	}
	return want
}
