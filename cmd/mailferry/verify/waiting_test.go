package verify

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/testenv/configtest"
)

// A mailbox without a source password (a MailEnable account whose user has
// not signed in yet) cannot be verified: it is reported as waiting for its
// user, not as different, and no server is asked.
func TestAMailboxWithoutASourcePasswordIsReportedWaitingForItsUser(t *testing.T) {
	cfg := configtest.Parse(t, "source: {address: 127.0.0.1:1, tls: none, auth: user}\ntarget: {address: 127.0.0.1:1, tls: none, auth: user}\n")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := Mailboxes(ctx, cfg, []job.Mailbox{{SourceUser: "bob@company", TargetUser: "bob@example.com"}})
	if r.OK || !r.Mailboxes[0].WaitingForUser {
		t.Fatalf("report %+v, want bob waiting for his user", r.Mailboxes[0])
	}
	var text strings.Builder
	r.WriteText(&text)
	for _, want := range []string{"WAITING   bob@company -> bob@example.com", "0 ok, 0 different, 1 waiting for their user"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, text.String())
		}
	}
}
