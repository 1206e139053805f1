package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/services/dnsctl/testenv/bindtest"
	"github.com/mailferry/mailferry/services/dnsctl/testenv/zonegen"
	"github.com/mailferry/mailferry/shared/campaign"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
	"github.com/mailferry/mailferry/shared/testenv/e2etest"
)

// TestACampaignOfPostOfficeLoginsCutsOverTheirTargetsMailDomain runs a
// campaign on the real peers whose source logins are a MailEnable post
// office's (anna@company) and whose targets are of the mail domain
// alpha.test: cutover start -all provisions alpha.test's users, copies,
// switches alpha.test's MX and ends done; cutover status and status name
// alpha.test, not the post office.
func TestACampaignOfPostOfficeLoginsCutsOverTheirTargetsMailDomain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	w := newPostOfficeWorld(t)
	w.importUsers(ctx, t)

	out, err := w.cli(ctx, t, "cutover", "start", "-all")
	if err != nil || !strings.Contains(out, "alpha.test: done") || strings.Contains(out, "company") {
		t.Fatalf("cutover start: %v, want alpha.test done and no domain company\n%s", err, out)
	}
	if !w.switched(ctx, "alpha.test") {
		t.Error("alpha.test's MX was not switched")
	}
	w.checkCampaign(ctx, t, map[string]campaign.Phase{"alpha.test": campaign.Done})
	for _, u := range w.boxes {
		counts, err := w.tgt.MessageCounts(ctx, w.target(u))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, c := range counts {
			n += c
		}
		if n != w.seeded[u] {
			t.Errorf("%s holds %d messages, want the %d of %s", w.target(u), n, w.seeded[u], u)
		}
	}
	text, err := w.cli(ctx, t, "status")
	if err != nil || !strings.Contains(text, "alpha.test") {
		t.Errorf("status: %v, does not name alpha.test\n%s", err, text)
	}
}

// newPostOfficeWorld is a campaignWorld with auth whose source mailboxes
// are logins of the MailEnable post office "company", each the mailbox of
// a user of alpha.test at the target.
func newPostOfficeWorld(t *testing.T) *campaignWorld {
	t.Helper()
	w := &campaignWorld{dir: t.TempDir(), seeded: map[string]int{},
		boxes:   []string{"anna@company", "bob@company"},
		targets: map[string]string{"anna@company": "anna@alpha.test", "bob@company": "bob@alpha.test"}}
	srcUsers, tgtUsers := map[string]string{}, map[string]string{}
	for i, u := range w.boxes {
		srcUsers[u] = fmt.Sprintf("pw-%d", i)
		tgtUsers[w.target(u)] = fmt.Sprintf("pw-%d", i)
	}
	w.src = dovecottest.StartT(t, dovecottest.Options{Separator: '/', MasterUser: "admin", MasterPassword: e2etest.MasterPassword, Users: srcUsers, PlainPasswords: true})
	w.tgt = dovecottest.StartT(t, dovecottest.Options{Separator: '.', MasterUser: "admin", MasterPassword: e2etest.MasterPassword, Users: tgtUsers, PlainPasswords: true, AutoCreateSpecial: true})
	rng := rand.New(rand.NewPCG(21, 22))
	for _, u := range w.boxes {
		for _, folder := range []string{"INBOX", "Archive/2019"} {
			msgs := e2etest.Generated(rng, 6, u+" "+folder)
			if err := w.src.Seed(u, folder, msgs); err != nil {
				t.Fatal(err)
			}
			w.seeded[u] += len(msgs)
		}
	}
	w.bind = bindtest.StartT(t, bindtest.Options{Zones: append(zonegen.Support(), lowTTL(zonegen.Zone("alpha.test.", zonegen.LegacyByAddress, 1)))})
	auth := fmt.Sprintf("auth: {provider: dovecot, dovecot: {passwd_file: %s}}\n", filepath.Join(w.tgt.Dir, "passwd"))
	w.writeConfig(t, campaign.OrderPrestage, "\n"+auth)
	return w
}
