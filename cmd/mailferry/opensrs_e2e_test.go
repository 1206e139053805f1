package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/services/auth/passhash"
	"github.com/mailferry/mailferry/services/auth/testenv/omafake"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
	"github.com/mailferry/mailferry/shared/testenv/e2etest"
)

// TestAMigrationToOpenSRSProvisionsLogsInWithTokensAndTakesTheNewPassword
// runs a migration to a target made like OpenSRS, as an operator would
// from the CLI: the OMA stand-in (documented request and response shapes)
// and a Dovecot that accepts the tokens it issues and lists its Sent,
// Drafts, Trash and Spam without special-use attributes. The user is
// imported and provisioned (the domain first, then the mailbox), the
// loader and verify log in with tokens they mint (target.auth: token), the
// legacy "Sent Items" lands in Sent and "Junk E-mail" in the spam folder
// OpenSRS keeps for the user (get_user), and the user's new password, set on
// the auth service's API with the current one, reaches the provider.
func TestAMigrationToOpenSRSProvisionsLogsInWithTokensAndTakesTheNewPassword(t *testing.T) {
	const (
		srcUser = "dana@old.example"
		tgtUser = "dana@new.example"
		current = "Dana's old password 1"
		newPw   = "Zebra-Crossing-42"
	)
	dir := t.TempDir()
	src := dovecottest.StartT(t, dovecottest.Options{Separator: '/', PlainPasswords: true, MasterUser: "admin", MasterPassword: e2etest.MasterPassword,
		Users: map[string]string{srcUser: current}})
	tgt := dovecottest.StartT(t, dovecottest.Options{Separator: '.', PlainPasswords: true, TokenPasswords: true,
		PlainFolders: []string{"Sent", "Drafts", "Trash", "Junk Mail"}})
	oma := omafake.Start(t)
	// The user's spam folder, as OpenSRS keeps it per user (get_user): a
	// name no well-known-name rule would find.
	oma.SetSpamFolder(tgtUser, "Junk Mail")
	oma.OnTokens = func(valid map[string]string) {
		if err := tgt.SetTokens(valid); err != nil {
			t.Errorf("token passdb: %v", err)
		}
	}
	rng := rand.New(rand.NewPCG(14, 14))
	seeded := map[string]int{}
	for folder, n := range map[string]int{"INBOX": 5, "Sent Items": 3, "Junk E-mail": 2} {
		if err := src.Seed(srcUser, folder, e2etest.Generated(rng, n, folder)); err != nil {
			t.Fatal(err)
		}
		seeded[folder] = n
	}
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ca := write("oma-ca.pem", string(oma.CAPEM()))
	omaPw := write("oma.pw", omafake.Password+"\n")
	write("master.pw", e2etest.MasterPassword+"\n")
	write("mailboxes.csv", "source_user,target_user\n"+srcUser+","+tgtUser+"\n")
	hash, err := passhash.Generate(current, passhash.SHA512Crypt, passhash.Argon2Params{})
	if err != nil {
		t.Fatal(err)
	}
	users := write("users.csv", "email,role,legacy_hash\n"+tgtUser+",email-only,"+hash+"\n")
	web := fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t))
	conf := write("mailferry.yaml", fmt.Sprintf(`nats: {data_dir: %s}
source: {address: %s, tls: none, auth: master, master_user: admin, master_password_file: master.pw, command_timeout: 20s}
target:
  address: %s
  tls: none
  auth: token
  command_timeout: 20s
  opensrs: {url: %q, user: %s, password_file: %s, ca_file: %s, token_hours: 1}
mailboxes: {file: mailboxes.csv}
auth:
  listen: %s
  provider: opensrs
  opensrs: {url: %q, user: %s, password_file: %s, ca_file: %s}
  argon2: {time: 1, memory_kib: 1024}
log: {level: warn}
`, filepath.Join(dir, "nats"), src.Addr, tgt.Addr, oma.URL+"/api", omafake.Admin, omaPw, ca, web, oma.URL+"/api", omafake.Admin, omaPw, ca))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	if out, err := cli(t, ctx, "users", "import", "-c", conf, "-file", users); err != nil {
		t.Fatalf("users import: %v\n%s", err, out)
	}
	if out, err := cli(t, ctx, "provision", "-c", conf); err != nil {
		t.Fatalf("provision: %v\n%s", err, out)
	}
	reqs := strings.Join(oma.Requests(), " ")
	if !strings.Contains(reqs, "get_domain change_domain") || !strings.Contains(reqs, "change_user") {
		t.Errorf("provisioning asked %s, want the domain created before the mailbox", reqs)
	}
	// The provider's IMAP service knows the mailbox it made (with a
	// password nobody knows); the loader logs in with tokens only.
	secret, ok := oma.UserPassword(tgtUser)
	if !ok {
		t.Fatal("the stand-in holds no mailbox after provisioning")
	}
	if err := tgt.AddUser(tgtUser, secret); err != nil {
		t.Fatal(err)
	}

	out, err := cli(t, ctx, "migrate", "-c", conf)
	if err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	if want := fmt.Sprintf("ok        %s -> %s: %d messages", srcUser, tgtUser, seeded["INBOX"]+seeded["Sent Items"]+seeded["Junk E-mail"]); !strings.Contains(out, want) {
		t.Errorf("migrate said:\n%s\nwant %q", out, want)
	}
	if !strings.Contains(strings.Join(oma.Requests(), " "), "generate_token") {
		t.Error("no token was minted")
	}
	counts, err := tgt.MessageCounts(ctx, tgtUser)
	if err != nil {
		t.Fatal(err)
	}
	_, sentItems := counts["Sent Items"]
	_, junkEmail := counts["Junk E-mail"]
	if counts["Sent"] != seeded["Sent Items"] || sentItems || counts["Junk Mail"] != seeded["Junk E-mail"] || junkEmail {
		t.Errorf("the target's folders: %v; want Sent Items' mail in Sent, Junk E-mail's in the provider's spam folder Junk Mail", counts)
	}

	// The user sets a new password with the current one.
	actx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- run(actx, "auth", []string{"-c", conf}, &strings.Builder{}, &strings.Builder{}) }()
	defer func() { stop(); <-served }()
	body, _ := json.Marshal(map[string]string{"email": tgtUser, "current_password": current, "new_password": newPw})
	post := func() (int, error) {
		res, err := http.Post("http://"+web+"/api/v1/password", "application/json", strings.NewReader(string(body)))
		if err != nil {
			return 0, err
		}
		res.Body.Close()
		return res.StatusCode, nil
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := http.Get("http://" + web + "/healthz"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the auth service did not answer")
		}
	}
	// The same change sent 50 times at once (a double-clicking user, a
	// retrying client): one is taken, the others are refused, none fails.
	codes := make(chan int, 50)
	for range 50 {
		go func() {
			code, err := post()
			if err != nil {
				t.Error(err)
			}
			codes <- code
		}()
	}
	seen := map[int]int{}
	for range 50 {
		seen[<-codes]++
	}
	t.Logf("50 identical changes at once: %v (status: count)", seen)
	if seen[http.StatusOK] != 1 || seen[http.StatusInternalServerError] != 0 || seen[http.StatusBadGateway] != 0 {
		t.Errorf("50 identical changes at once: %v, want exactly one 200 and no server error", seen)
	}
	if pw, _ := oma.UserPassword(tgtUser); pw != newPw {
		t.Errorf("the provider does not hold the new password")
	}
}
