package report_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/cmd/mailferry/cutover/report"
	"github.com/mailferry/mailferry/cmd/mailferry/verify"
	"github.com/mailferry/mailferry/shared/campaign"
	"github.com/mailferry/mailferry/shared/testenv/chromium"
)

// TestChromiumRendersHostileNamesAsText loads a written report in
// headless Chromium and reads back the DOM it built: the hostile names
// are text, no script ran (it would have changed the title and added an
// element) and nothing was loaded.
func TestChromiumRendersHostileNamesAsText(t *testing.T) {
	bin := chromium.Require(t)
	const onerror = `<img src=x onerror="document.title='pwned';document.body.append(document.createElement('script'))">`
	r := &report.Report{Domain: "acme.test", Phase: campaign.Done, Generated: t0, DNS: "not switched",
		Mailboxes: []report.Mailbox{{Mailbox: "zoë@acme.test", Phase: campaign.BoxVerified, Messages: 1, Bytes: 10}},
		Renamed:   []report.Rename{{Mailbox: "zoë@acme.test", From: scriptFolder, To: "Entwürfe", Reason: onerror}},
		Differences: []report.Difference{{Mailbox: "zoë@acme.test", Kind: verify.KindMissing, Folder: scriptFolder, UID: 1,
			Subject: ampSubject, From: onerror}},
		Passwords: report.Passwords{Managed: true, Known: true, Accounts: 1, Pending: []string{"zoë@acme.test"}},
	}
	htmlPath, _, err := report.Write(t.TempDir(), r)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--user-data-dir="+t.TempDir(), "--dump-dom", "file://"+filepath.ToSlash(htmlPath))
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	checkPage(t, dom, []string{"Mail move report for acme.test", scriptFolder, ampSubject, onerror, "Entwürfe", "zoë@acme.test",
		"1 of 1 user still has to set a new password"}, nil)
	if !strings.Contains(string(dom), "<title>Mail move report for acme.test</title>") {
		t.Errorf("the title changed: a script ran\n%s", dom)
	}
}
