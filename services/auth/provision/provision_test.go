package provision

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/services/auth/account"
	"github.com/mailferry/mailferry/services/auth/internal/authtest"
	"github.com/mailferry/mailferry/services/auth/passhash"
	"github.com/mailferry/mailferry/services/auth/target/dovecot"
	"github.com/mailferry/mailferry/services/auth/target/opensrs"
	"github.com/mailferry/mailferry/services/auth/testenv/omafake"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/event"
)

type fixture struct {
	cfg   *config.Config
	b     *broker.Broker
	store *account.Store
	logs  *authtest.LogSink
}

func newFixture(t *testing.T, authYAML string, users ...string) *fixture {
	t.Helper()
	cfg := authtest.Config(t, "auth: "+authYAML+"\n")
	b := authtest.Broker(t, cfg)
	ctx := authtest.Context(t, time.Minute)
	store, err := account.Open(ctx, b.JS, authtest.Auth(t, cfg).Bucket, 1)
	if err != nil {
		t.Fatal(err)
	}
	var rows []account.Row
	for _, u := range users {
		rows = append(rows, account.Row{Email: u, Role: account.RoleEmailOnly})
	}
	if _, err := store.Import(ctx, rows, account.ImportOptions{Now: time.Now(), Argon2: passhash.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}}); err != nil {
		t.Fatal(err)
	}
	return &fixture{cfg: cfg, b: b, store: store, logs: authtest.NewLogSink(t)}
}

func (f *fixture) provisioner(target Target) *Provisioner {
	return &Provisioner{Accounts: f.store, Target: target, Events: event.Publisher{JS: f.b.JS, Service: "auth"}, Log: f.logs.Logger(), BatchSize: 2}
}

func keys(events []*event.Event, typ string) string {
	var k []string
	for _, e := range authtest.OfType(events, typ) {
		k = append(k, e.Key)
	}
	return strings.Join(k, ",")
}

func TestProvisionCreatesAnnouncesAndIsIdempotent(t *testing.T) {
	passwd := filepath.Join(t.TempDir(), "passwd")
	f := newFixture(t, "{provider: dovecot, dovecot: {passwd_file: "+passwd+"}}",
		"a@one.example", "b@one.example", "c@one.example", "d@two.example")
	ctx := authtest.Context(t, time.Minute)
	p := f.provisioner(dovecot.New(authtest.Auth(t, f.cfg)))
	rep, err := p.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Mailboxes != 4 || rep.Created != 4 || rep.Already != 0 || strings.Join(rep.Domains, ",") != "one.example,two.example" {
		t.Fatalf("first run %+v", rep)
	}
	content, _ := os.ReadFile(passwd)
	for _, u := range []string{"a@one.example", "b@one.example", "c@one.example", "d@two.example"} {
		if !strings.Contains(string(content), u+":{SHA512-CRYPT}$6$") {
			t.Fatalf("%s not in the passwd-file:\n%s", u, content)
		}
	}
	rep, err = p.Run(ctx)
	if err != nil || rep.Created != 0 || rep.Already != 4 || len(rep.Domains) != 0 {
		t.Fatalf("second run %+v, %v", rep, err)
	}
	if again, _ := os.ReadFile(passwd); string(again) != string(content) {
		t.Fatal("second run rewrote the mailboxes")
	}
	events, raw := authtest.Events(t, f.b.JS)
	if got := keys(events, event.MailboxProvisioned); got != "a@one.example,b@one.example,c@one.example,d@two.example" {
		t.Fatalf("mailbox.provisioned for %s", got)
	}
	dom := authtest.OfType(events, event.DomainProvisioned)
	if len(dom) != 2 || dom[0].Key != "one.example" || dom[1].Key != "two.example" {
		t.Fatalf("domain.provisioned: %+v", dom)
	}
	var data DomainData
	json.Unmarshal(dom[0].Data, &data)
	if data != (DomainData{Domain: "one.example", Mailboxes: 3, Provider: "dovecot"}) {
		t.Fatalf("domain data %+v", data)
	}
	authtest.AssertAbsent(t, "events", raw, "$6$")
}

func TestDomainWaitsForItsLastMailbox(t *testing.T) {
	fake := omafake.Start(t, "one.example")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ca.pem"), fake.CAPEM(), 0o600)
	os.WriteFile(filepath.Join(dir, "oma.pw"), []byte(omafake.Password), 0o600)
	f := newFixture(t, fmt.Sprintf("{provider: opensrs, opensrs: {url: %q, user: %s, password_file: %s, ca_file: %s}}",
		fake.URL+"/api", omafake.DomainAdmin, filepath.Join(dir, "oma.pw"), filepath.Join(dir, "ca.pem")),
		"a@one.example", "b@one.example", "x@two.example")
	client, err := opensrs.New(authtest.Auth(t, f.cfg))
	if err != nil {
		t.Fatal(err)
	}
	ctx := authtest.Context(t, time.Minute)
	// OpenSRS does not host two.example and a domain administrator
	// cannot create it: its mailbox fails, saying what is needed.
	rep, err := f.provisioner(client).Run(ctx)
	if !errors.Is(err, ErrIncomplete) || rep.Created != 2 || len(rep.Failed) != 1 || rep.Failed[0].Email != "x@two.example" ||
		!strings.Contains(rep.Failed[0].Reason, "company-level") {
		t.Fatalf("run %+v, %v", rep, err)
	}
	if strings.Join(rep.Domains, ",") != "one.example" || strings.Join(rep.DomainsOpen, ",") != "two.example" {
		t.Fatalf("domains %v open %v", rep.Domains, rep.DomainsOpen)
	}
	events, _ := authtest.Events(t, f.b.JS)
	if got := keys(events, event.DomainProvisioned); got != "one.example" {
		t.Fatalf("domain.provisioned for %q", got)
	}
	a, _ := f.store.Get(ctx, "x@two.example")
	if a.Provisioned() {
		t.Fatal("a failed mailbox was marked provisioned")
	}
}

func TestOpenSRSProvisioningWritesMigrationTokens(t *testing.T) {
	fake := omafake.Start(t, "one.example")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ca.pem"), fake.CAPEM(), 0o600)
	os.WriteFile(filepath.Join(dir, "oma.pw"), []byte(omafake.Password), 0o600)
	tokens := filepath.Join(dir, "tokens")
	f := newFixture(t, fmt.Sprintf("{provider: opensrs, opensrs: {url: %q, user: %s, password_file: %s, ca_file: %s, token_dir: %s}}",
		fake.URL+"/api", omafake.Admin, filepath.Join(dir, "oma.pw"), filepath.Join(dir, "ca.pem"), tokens),
		"a@one.example")
	client, err := opensrs.New(authtest.Auth(t, f.cfg))
	if err != nil {
		t.Fatal(err)
	}
	p := f.provisioner(client)
	p.Tokens, p.TokenDir = client, authtest.Auth(t, f.cfg).OpenSRS.TokenDir
	rep, err := p.Run(authtest.Context(t, time.Minute))
	if err != nil || rep.Tokens != 1 {
		t.Fatalf("run %+v, %v", rep, err)
	}
	path := filepath.Join(tokens, "a@one.example")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if fake.TokenUser(strings.TrimSpace(string(b))) != "a@one.example" {
		t.Fatalf("token file holds %q", b)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v", fi.Mode().Perm())
	}
	authtest.AssertAbsent(t, "logs", f.logs.String(), strings.TrimSpace(string(b)), omafake.Password)
}

// TestOpenSRSDomainIsCreatedBeforeItsMailboxes: with a company
// administrator a domain OpenSRS does not host yet is created first, so
// its mailboxes are provisioned and the domain announced in one pass.
func TestOpenSRSDomainIsCreatedBeforeItsMailboxes(t *testing.T) {
	fake := omafake.Start(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ca.pem"), fake.CAPEM(), 0o600)
	os.WriteFile(filepath.Join(dir, "oma.pw"), []byte(omafake.Password), 0o600)
	f := newFixture(t, fmt.Sprintf("{provider: opensrs, opensrs: {url: %q, user: %s, password_file: %s, ca_file: %s}}",
		fake.URL+"/api", omafake.Admin, filepath.Join(dir, "oma.pw"), filepath.Join(dir, "ca.pem")),
		"a@new.example", "b@new.example")
	client, err := opensrs.New(authtest.Auth(t, f.cfg))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := f.provisioner(client).Run(authtest.Context(t, time.Minute))
	if err != nil || rep.Created != 2 || strings.Join(rep.Domains, ",") != "new.example" {
		t.Fatalf("run %+v, %v", rep, err)
	}
	if got := strings.Join(fake.CreatedDomains(), ","); got != "new.example" {
		t.Fatalf("created domains %q", got)
	}
}
