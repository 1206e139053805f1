package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/services/auth"
	"github.com/mailferry/mailferry/services/auth/account"
	"github.com/mailferry/mailferry/services/auth/ratelimit"
	"github.com/mailferry/mailferry/services/dnsctl"
	"github.com/mailferry/mailferry/services/dnsctl/journal"
	"github.com/mailferry/mailferry/services/extractor"
	"github.com/mailferry/mailferry/services/loader"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/loginlimit"
	"github.com/mailferry/mailferry/shared/sourcecred"
	"github.com/mailferry/mailferry/shared/subject"
	"github.com/mailferry/mailferry/shared/testenv/proc"
	"github.com/mailferry/mailferry/shared/testenv/syncbuf"
)

// usersBroker is a nats-server (mailferry nats -config) started from
// deploy/nats's users.conf as committed, with the secrets make-secrets.sh
// makes for it: every service's user with its permissions.
type usersBroker struct {
	url     string
	secrets string
}

func startUsersBroker(t *testing.T) *usersBroker {
	t.Helper()
	bin, err := mailferryBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	secrets := filepath.Join(dir, "secrets")
	if err := os.Mkdir(secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(filepath.Join(deployNATS, "make-secrets.sh"), secrets, "127.0.0.1:6222").CombinedOutput(); err != nil {
		t.Fatalf("make-secrets.sh: %v\n%s", err, out)
	}
	writeConfig(t, filepath.Join(dir, "passwords.conf"), readFile(t, filepath.Join(secrets, "passwords.conf")))
	writeConfig(t, filepath.Join(dir, "users.conf"), readFile(t, filepath.Join(deployNATS, "users.conf")))
	port := freeTCPPort(t)
	conf := filepath.Join(dir, "node.conf")
	writeConfig(t, conf, fmt.Sprintf("listen: 127.0.0.1:%d\njetstream { store_dir: %q }\ninclude \"users.conf\"\n", port, filepath.Join(dir, "store")))
	// A server of its own, as deploy/README's single-node use of
	// users.conf runs it (mailferry nats -config), not one inside the
	// test binary, where the race detector would watch nats-server's
	// own goroutines.
	p, err := proc.Start(bin, []string{"nats", "-config", conf}, proc.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(5 * time.Second) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	waitListening(ctx, t, p, port)
	return &usersBroker{url: fmt.Sprintf("nats://127.0.0.1:%d", port), secrets: secrets}
}

// authConfig writes dir/auth.yaml for the auth daemon signed in as user:
// sections (its %s is the path of an empty passwd-file made in dir, for
// the Dovecot provider) after the nats section.
func (u *usersBroker) authConfig(t *testing.T, dir, user, sections string) string {
	t.Helper()
	passwd := filepath.Join(dir, "passwd")
	writeConfig(t, passwd, "")
	conf := filepath.Join(dir, "auth.yaml")
	writeConfig(t, conf, fmt.Sprintf("nats: {url: %s, user: %s, password_file: %s}\n", u.url, user, u.passwordFile(user))+fmt.Sprintf(sections, passwd))
	return conf
}

// passwordFile is the password file of user, as make-secrets.sh made it.
func (u *usersBroker) passwordFile(user string) string {
	return filepath.Join(u.secrets, "nats-"+user+".password")
}

// config is a configuration that signs in to the broker as user.
func (u *usersBroker) config(t *testing.T, user string) *config.Config {
	t.Helper()
	cfg, err := config.Parse(fmt.Appendf(nil, "nats: {url: %s, user: %s, password_file: %s}\n", u.url, user, u.passwordFile(user)), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// connect signs in as user; what its broker logs goes to log.
func (u *usersBroker) connect(t *testing.T, user string, log *syncbuf.Buffer) *broker.Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := broker.Connect(ctx, u.config(t, user).NATS, "test-"+user, zerolog.New(log))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(b.Close)
	return b
}

// loaderTokens does what the loader does with its target login tokens
// (target.auth token): declare the bucket, store, read, replace one.
func loaderTokens(ctx context.Context, b *broker.Broker) error {
	if err := b.Use(ctx, broker.Needs{Writes: []string{broker.BucketTargetTokens}}); err != nil {
		return err
	}
	kv, err := b.JS.KeyValue(ctx, broker.BucketTargetTokens)
	if err != nil {
		return fmt.Errorf("bind the token bucket: %w", err)
	}
	key := loader.TokenKey("anna@new.test")
	rev, err := kv.Create(ctx, key, []byte("{}"))
	if err != nil {
		return fmt.Errorf("store a token: %w", err)
	}
	if _, err := kv.Get(ctx, key); err != nil {
		return fmt.Errorf("read a token: %w", err)
	}
	if _, err := kv.Update(ctx, key, []byte("{}"), rev); err != nil {
		return fmt.Errorf("replace a token: %w", err)
	}
	return nil
}

// TestDeployedBrokerUsersMayDoWhatTheirServiceDoesAndNothingElse signs in
// as each user of deploy/nats/users.conf and does what its service does
// (declare what it writes, bind what it reads, publish, consume, read and
// write its buckets), which the broker allows; then what the service
// must not do, which the broker refuses, with an error that names the
// refused subject and a log line at error level that says so.
func TestDeployedBrokerUsersMayDoWhatTheirServiceDoesAndNothingElse(t *testing.T) {
	u := startUsersBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	op := u.connect(t, "operator", &syncbuf.Buffer{})
	if err := op.DeclareAll(ctx); err != nil {
		t.Fatalf("the operator declares everything: %v", err)
	}
	// A job for each worker, a record and a body for the loader to read.
	for _, s := range []string{subject.Job("anna@old.test"), subject.LoaderJob("anna@old.test"), subject.Message("anna@old.test", "INBOX")} {
		if _, err := op.JS.Publish(ctx, s, []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := op.Bodies.PutBytes(ctx, "body-1", bytes.Repeat([]byte("x"), 300_000)); err != nil {
		t.Fatal(err)
	}
	// A source password handed over at sign-in, for the extractor to
	// read and delete.
	credKey, err := sourcecred.ParseKey([]byte(sourcecred.NewKeyText()))
	if err != nil {
		t.Fatal(err)
	}
	credKV, err := op.JS.KeyValue(ctx, broker.BucketSourceCredentials)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&sourcecred.Store{KV: credKV, Key: credKey}).HandOff(ctx, "carl@old.test", "his legacy pw"); err != nil {
		t.Fatal(err)
	}

	allowed := []struct {
		user string
		do   func(ctx context.Context, b *broker.Broker) error
	}{
		{"extractor", func(ctx context.Context, b *broker.Broker) error {
			if err := b.Use(ctx, extractor.Needs); err != nil {
				return err
			}
			if _, err := b.JS.Publish(ctx, subject.Message("anna@old.test", "INBOX"), []byte("{}")); err != nil {
				return fmt.Errorf("publish a record: %w", err)
			}
			if _, err := b.Bodies.PutBytes(ctx, "body-2", bytes.Repeat([]byte("y"), 700_000)); err != nil {
				return fmt.Errorf("put a body: %w", err)
			}
			if body, err := b.Bodies.GetBytes(ctx, "body-2"); err != nil || len(body) != 700_000 {
				return fmt.Errorf("read a body back: %d bytes, %w", len(body), err)
			}
			if err := b.Bodies.Delete(ctx, "body-2"); err != nil {
				return fmt.Errorf("delete a body: %w", err)
			}
			if _, err := b.Checkpoints.Put(ctx, "k", []byte("1")); err != nil {
				return fmt.Errorf("checkpoint: %w", err)
			}
			if _, err := b.Progress.Put(ctx, "extractor.k", []byte("1")); err != nil {
				return fmt.Errorf("progress: %w", err)
			}
			guard := loginlimit.New(b.LoginFailures, "source", 1, nil)
			if err := guard.Refused(ctx, "anna@old.test", "NO"); err != nil {
				return err
			}
			if err := guard.Allow(ctx, "anna@old.test"); !errors.Is(err, loginlimit.ErrTooMany) {
				return fmt.Errorf("refused logins: %v, want too many", err)
			}
			if err := b.Conn.Publish(subject.Progress("extractor", "anna@old.test"), []byte("{}")); err != nil {
				return err
			}
			kv, err := sourcecred.Bind(ctx, b.JS)
			if err != nil {
				return err
			}
			if pw, err := (&sourcecred.Store{KV: kv, Key: credKey}).Password(ctx, "carl@old.test"); err != nil || pw != "his legacy pw" {
				return fmt.Errorf("read a handed-over source password: %w", err)
			}
			if n, err := sourcecred.Forget(ctx, kv, "carl@old.test"); err != nil || n != 1 {
				return fmt.Errorf("delete a handed-over source password (%d): %w", n, err)
			}
			return takeJob(ctx, b, "extractor")
		}},
		{"loader", func(ctx context.Context, b *broker.Broker) error {
			if err := b.Use(ctx, loader.Needs); err != nil {
				return err
			}
			cons, err := b.JS.OrderedConsumer(ctx, broker.StreamMail, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject.Mailbox("anna@old.test")}})
			if err != nil {
				return fmt.Errorf("read the mail stream: %w", err)
			}
			if _, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second)); err != nil {
				return fmt.Errorf("read a record: %w", err)
			}
			if body, err := b.Bodies.GetBytes(ctx, "body-1"); err != nil || len(body) != 300_000 {
				return fmt.Errorf("read a body: %d bytes, %w", len(body), err)
			}
			if _, err := b.Ledger.Put(ctx, "k", []byte("1")); err != nil {
				return fmt.Errorf("ledger: %w", err)
			}
			if _, err := b.Progress.Get(ctx, "extractor.k"); err != nil && err != jetstream.ErrKeyNotFound {
				return fmt.Errorf("the extractor's heartbeat: %w", err)
			}
			st, err := b.JS.Stream(ctx, broker.StreamEvents)
			if err != nil {
				return err
			}
			if _, err := st.GetLastMsgForSubject(ctx, subject.Event("mailbox.failed", "anna@old.test")); err != nil && err != jetstream.ErrMsgNotFound {
				return fmt.Errorf("read an event: %w", err)
			}
			for _, s := range []string{subject.Dead("anna@old.test"), subject.LoaderJob("bob@old.test")} {
				if _, err := b.JS.Publish(ctx, s, []byte("{}")); err != nil {
					return fmt.Errorf("publish to %s: %w", s, err)
				}
			}
			dead, err := b.JS.Stream(ctx, broker.StreamDead)
			if err != nil {
				return err
			}
			if err := dead.DeleteMsg(ctx, 1); err != nil {
				return fmt.Errorf("remove a retried dead letter: %w", err)
			}
			if err := loaderTokens(ctx, b); err != nil {
				return err
			}
			return takeJob(ctx, b, "loader")
		}},
		{"dnsctl", func(ctx context.Context, b *broker.Broker) error {
			if err := b.Use(ctx, dnsctl.Needs); err != nil {
				return err
			}
			j, err := journal.Open(ctx, b.JS, 1)
			if err != nil {
				return err
			}
			if _, err := j.Modify(ctx, "alpha.test", func(*journal.Entry) error { return nil }); err != nil {
				return fmt.Errorf("journal: %w", err)
			}
			if _, err := j.Entries(ctx); err != nil {
				return fmt.Errorf("journal entries: %w", err)
			}
			cons, err := b.JS.CreateOrUpdateConsumer(ctx, broker.StreamEvents, jetstream.ConsumerConfig{Durable: "dnsctl", AckPolicy: jetstream.AckExplicitPolicy})
			if err != nil {
				return err
			}
			if _, err := b.JS.Publish(ctx, subject.Event("dns.switched", "alpha.test"), []byte("{}")); err != nil {
				return err
			}
			return fetchAck(ctx, cons)
		}},
		{"auth", func(ctx context.Context, b *broker.Broker) error {
			if err := b.Use(ctx, auth.Needs); err != nil {
				return err
			}
			store, err := account.Open(ctx, b.JS, "mf_accounts", 1)
			if err != nil {
				return err
			}
			if _, err := store.Get(ctx, "anna@new.test"); err != nil && !strings.Contains(err.Error(), "not found") {
				return fmt.Errorf("read an account: %w", err)
			}
			if _, err := store.Upsert(ctx, "anna@new.test", func() *account.Account { return &account.Account{Email: "anna@new.test"} }, func(*account.Account) error { return nil }); err != nil {
				return fmt.Errorf("write an account: %w", err)
			}
			lim := ratelimit.Limits{PairFailures: 3, ClientFailures: 10, ClientRequests: 10, Window: time.Minute, Lockout: time.Minute, MaxLockout: time.Hour}
			limits, err := ratelimit.Open(ctx, b.JS, "mf_accounts"+auth.LimitsBucket, 1, lim, nil)
			if err != nil {
				return err
			}
			if _, err := limits.Admit(ctx, "anna@new.test", "192.0.2.1"); err != nil {
				return fmt.Errorf("rate limit: %w", err)
			}
			if _, err = b.JS.Publish(ctx, subject.Event("auth.password_changed", "anna@new.test"), []byte("{}")); err != nil {
				return err
			}
			// With auth.source_credentials: the proven legacy password
			// sealed into its bucket, and the mailbox's pass queued.
			if err := b.Use(ctx, broker.Needs{Writes: []string{broker.BucketSourceCredentials}}); err != nil {
				return err
			}
			kv, err := b.JS.KeyValue(ctx, broker.BucketSourceCredentials)
			if err != nil {
				return err
			}
			cs := &sourcecred.Store{KV: kv, Key: credKey}
			for range 2 { // the second finds it stored: a read
				if _, err := cs.HandOff(ctx, "dora@old.test", "her legacy pw"); err != nil {
					return err
				}
			}
			if err := job.Publish(ctx, b.JS, &job.Job{Mailbox: job.Mailbox{SourceUser: "dora@old.test", TargetUser: "dora@new.test"}, Pass: "signin-1"}); err != nil {
				return err
			}
			// Whether the extractors took up the mailbox's newest job.
			st, err := b.JS.Stream(ctx, broker.StreamJobs)
			if err != nil {
				return err
			}
			if _, err := st.GetLastMsgForSubject(ctx, subject.Job("dora@old.test")); err != nil {
				return fmt.Errorf("read the newest job: %w", err)
			}
			if _, err := b.JS.Consumer(ctx, broker.StreamJobs, "extractor"); err != nil {
				return fmt.Errorf("the extractors' position: %w", err)
			}
			// With auth.legacy_imap: the legacy server's refusals counted
			// with the migration's.
			if err := b.Use(ctx, broker.Needs{Writes: []string{broker.BucketLoginFailures}}); err != nil {
				return err
			}
			guard := loginlimit.New(b.LoginFailures, "source", 1, nil)
			if err := guard.Allow(ctx, "erik@old.test"); err != nil {
				return fmt.Errorf("read refused logins: %w", err)
			}
			if err := guard.Refused(ctx, "erik@old.test", "NO"); err != nil {
				return err
			}
			if err := guard.Allow(ctx, "erik@old.test"); !errors.Is(err, loginlimit.ErrTooMany) {
				return fmt.Errorf("refused logins: %v, want too many", err)
			}
			return nil
		}},
	}
	for _, c := range allowed {
		t.Run(c.user+" does its work", func(t *testing.T) {
			log := &syncbuf.Buffer{}
			b := u.connect(t, c.user, log)
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if err := c.do(ctx, b); err != nil {
				t.Fatalf("%v\nlog:\n%s", err, log.String())
			}
			if strings.Contains(log.String(), "Permissions Violation") {
				t.Errorf("the broker refused something:\n%s", log.String())
			}
		})
	}

	refused := []struct {
		user, what, subject string
		do                  func(ctx context.Context, b *broker.Broker) error
	}{
		{"extractor", "write an account", "$JS.API.STREAM.UPDATE.KV_mf_accounts", func(ctx context.Context, b *broker.Broker) error {
			_, err := account.Open(ctx, b.JS, "mf_accounts", 1)
			return err
		}},
		{"extractor", "put into mf_accounts", "$KV.mf_accounts.", func(ctx context.Context, b *broker.Broker) error {
			_, err := b.JS.Publish(ctx, "$KV.mf_accounts.anna", []byte("{}"))
			return err
		}},
		{"extractor", "read the DNS journal", "$JS.API.DIRECT.GET.KV_mf_dns_journal", func(ctx context.Context, b *broker.Broker) error {
			st, err := b.JS.Stream(ctx, "KV_mf_dns_journal")
			if err != nil {
				return err
			}
			_, err = st.GetLastMsgForSubject(ctx, "$KV.mf_dns_journal.alpha")
			return err
		}},
		{"extractor", "publish a DNS event's dead letter", subject.DeadPrefix, func(ctx context.Context, b *broker.Broker) error {
			_, err := b.JS.Publish(ctx, subject.Dead("anna@old.test"), []byte("{}"))
			return err
		}},
		{"loader", "read a source password handed over at sign-in", "$JS.API.DIRECT.GET.KV_mf_source_credentials", func(ctx context.Context, b *broker.Broker) error {
			kv, err := b.JS.KeyValue(ctx, broker.BucketSourceCredentials)
			if err != nil {
				return err
			}
			_, err = kv.Get(ctx, sourcecred.KeyOf("anna@old.test"))
			return err
		}},
		{"dnsctl", "write a source password", "$KV.mf_source_credentials.", func(ctx context.Context, b *broker.Broker) error {
			_, err := b.JS.Publish(ctx, "$KV.mf_source_credentials."+sourcecred.KeyOf("anna@old.test"), []byte("x"))
			return err
		}},
		{"extractor", "declare the source credentials bucket", "$JS.API.STREAM.UPDATE.KV_mf_source_credentials", func(ctx context.Context, b *broker.Broker) error {
			return b.Use(ctx, broker.Needs{Writes: []string{broker.BucketSourceCredentials}})
		}},
		{"auth", "queue a loader-only job", subject.JobPrefix, func(ctx context.Context, b *broker.Broker) error {
			_, err := b.JS.Publish(ctx, subject.LoaderJob("anna@old.test"), []byte("{}"))
			return err
		}},
		{"auth", "read the mail stream", "$JS.API.CONSUMER.CREATE.MF_MAIL", func(ctx context.Context, b *broker.Broker) error {
			_, err := b.JS.OrderedConsumer(ctx, broker.StreamMail, jetstream.OrderedConsumerConfig{})
			return err
		}},
		{"auth", "publish a mail record", subject.MailPrefix, func(ctx context.Context, b *broker.Broker) error {
			_, err := b.JS.Publish(ctx, subject.Message("anna@old.test", "INBOX"), []byte("{}"))
			return err
		}},
		{"dnsctl", "read the ledger", "$JS.API.DIRECT.GET.KV_mf_ledger", func(ctx context.Context, b *broker.Broker) error {
			kv, err := b.JS.KeyValue(ctx, broker.BucketLedger)
			if err != nil {
				return err
			}
			_, err = kv.Get(ctx, "k")
			return err
		}},
		{"loader", "count a refused source login", "$KV.mf_login_failures.", func(ctx context.Context, b *broker.Broker) error {
			_, err := b.JS.Publish(ctx, "$KV.mf_login_failures.source.anna", []byte("{}"))
			return err
		}},
		{"extractor", "read the target's login tokens", "$JS.API.DIRECT.GET.KV_mf_target_tokens", func(ctx context.Context, b *broker.Broker) error {
			kv, err := b.JS.KeyValue(ctx, broker.BucketTargetTokens)
			if err != nil {
				return err
			}
			_, err = kv.Get(ctx, loader.TokenKey("anna@new.test"))
			return err
		}},
		{"auth", "write a target login token", "$KV.mf_target_tokens.", func(ctx context.Context, b *broker.Broker) error {
			_, err := b.JS.Publish(ctx, "$KV.mf_target_tokens."+loader.TokenKey("anna@new.test"), []byte("{}"))
			return err
		}},
		{"loader", "write a checkpoint", "$KV.mf_checkpoints.", func(ctx context.Context, b *broker.Broker) error {
			_, err := b.JS.Publish(ctx, "$KV.mf_checkpoints.k", []byte("2"))
			return err
		}},
		{"loader", "delete the mail stream", "$JS.API.STREAM.DELETE.MF_MAIL", func(ctx context.Context, b *broker.Broker) error {
			return b.JS.DeleteStream(ctx, broker.StreamMail)
		}},
		{"dnsctl", "read another service's replies", "_INBOX.auth.>", func(ctx context.Context, b *broker.Broker) error {
			sub, err := b.Conn.SubscribeSync("_INBOX.auth.>")
			if err != nil {
				return err
			}
			_, err = sub.NextMsg(3 * time.Second)
			return err
		}},
	}
	for _, c := range refused {
		t.Run(c.user+" may not "+c.what, func(t *testing.T) {
			t.Parallel()
			log := &syncbuf.Buffer{}
			b := u.connect(t, c.user, log)
			// Not the test's context: it ends before parallel subtests run.
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			if err := c.do(ctx, b); err == nil {
				t.Fatalf("allowed")
			}
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(log.String(), "Permissions Violation") && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			line := ""
			for _, l := range strings.Split(log.String(), "\n") {
				if strings.Contains(l, "Permissions Violation") {
					line = l
					break
				}
			}
			for _, want := range []string{`"level":"error"`, "the broker refused this service", c.subject, `"nats_user":"` + c.user + `"`} {
				if !strings.Contains(line, want) {
					t.Errorf("logged %q, want it to say %q\nlog:\n%s", line, want, log.String())
				}
			}
		})
	}
}

// takeJob takes one job with the durable consumer a worker uses, and
// acknowledges it.
func takeJob(ctx context.Context, b *broker.Broker, durable string) error {
	cons, err := b.JS.CreateOrUpdateConsumer(ctx, broker.StreamJobs, jetstream.ConsumerConfig{Durable: durable, AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		return fmt.Errorf("jobs consumer: %w", err)
	}
	return fetchAck(ctx, cons)
}

func fetchAck(ctx context.Context, cons jetstream.Consumer) error {
	msgs, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	for m := range msgs.Messages() {
		return m.DoubleAck(ctx)
	}
	if msgs.Error() != nil {
		return fmt.Errorf("fetch: %w", msgs.Error())
	}
	return fmt.Errorf("fetch: nothing came")
}

// TestADaemonSignedInAsAnotherServiceSaysTheBrokerRefusedIt runs the auth
// daemon with the extractor's broker user, as an operator who copied the
// wrong password file would: the broker refuses it the accounts bucket,
// and the daemon exits with an error naming the refused subject, having
// logged the refusal at error level.
func TestADaemonSignedInAsAnotherServiceSaysTheBrokerRefusedIt(t *testing.T) {
	bin, err := mailferryBinary()
	if err != nil {
		t.Fatal(err)
	}
	u := startUsersBroker(t)
	dir := t.TempDir()
	conf := u.authConfig(t, dir, "extractor", "auth: {listen: 127.0.0.1:0, provider: dovecot, dovecot: {passwd_file: %s}}\n")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := proc.Start(bin, []string{"auth", "-c", conf}, proc.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(5 * time.Second) })
	select {
	case <-p.Exited():
	case <-ctx.Done():
		t.Fatalf("the daemon runs on as the wrong user:\n%s", p.Output())
	}
	if p.ExitErr() == nil {
		t.Fatalf("the daemon exited 0:\n%s", p.Output())
	}
	out := p.Output()
	var logged, final bool
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, `"level":"error"`) && strings.Contains(l, "the broker refused this service") && strings.Contains(l, "KV_mf_accounts") {
			logged = true
		}
		if strings.Contains(l, "mf_accounts") && strings.Contains(l, `the broker refused nats user \"extractor\"`) {
			final = true
		}
	}
	if !logged || !final {
		t.Errorf("want the refusal logged at error (%v) and the daemon's error to name it (%v):\n%s", logged, final, out)
	}
	if strings.Contains(out, readFile(t, u.passwordFile("extractor"))[:10]) {
		t.Errorf("the password is in the output")
	}
}

// TestTheAuthDaemonServesSignInsAsItsOwnBrokerUser runs the auth daemon
// as deploy/auth.yaml does, signed in as the auth user: it becomes ready,
// answers sign-ins (a wrong password is refused, reading the accounts and
// writing the rate limits), counts them on /metrics (a scrape promtool
// accepts), and the broker
// refuses it nothing.
func TestTheAuthDaemonServesSignInsAsItsOwnBrokerUser(t *testing.T) {
	bin, err := mailferryBinary()
	if err != nil {
		t.Fatal(err)
	}
	u := startUsersBroker(t)
	dir := t.TempDir()
	writeConfig(t, filepath.Join(dir, "metrics.password"), metricsPassword+"\n")
	web := fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t))
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t))
	conf := u.authConfig(t, dir, "auth", fmt.Sprintf("auth: {listen: %s, provider: dovecot, dovecot: {passwd_file: %%s}}\nmetrics: {listen: %s, user: %s, password_file: %s}\n",
		web, metricsAddr, metricsUser, filepath.Join(dir, "metrics.password")))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := proc.Start(bin, []string{"auth", "-c", conf}, proc.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(5 * time.Second) })
	if err := p.Ready(ctx, 100*time.Millisecond, func(ctx context.Context) error {
		code, body, err := scrape(ctx, "http://"+metricsAddr+"/readyz")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("/readyz: %d %s", code, body)
		}
		if err == nil && !strings.Contains(p.Output(), "auth service listening") {
			err = errors.New("not listening yet")
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+web+"/api/v1/login",
			strings.NewReader(`{"email":"anna@new.test","password":"not her password"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 4 {
			t.Errorf("a wrong password: %s, want a refusal (4xx)\n%s", resp.Status, p.Output())
		}
	}
	_, body, err := scrape(ctx, "http://"+metricsAddr+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "mailferry_auth_signins_total{") {
			var v float64
			fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
			n += v
		}
	}
	if n != 3 {
		t.Errorf("mailferry_auth_signins_total = %v, want 3\n%s", n, body)
	}
	check := exec.CommandContext(ctx, promtool(t), "check", "metrics")
	check.Stdin = strings.NewReader(body)
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics on the auth daemon's scrape: %v\n%s", err, out)
	}
	if strings.Contains(p.Output(), "Permissions Violation") {
		t.Errorf("the broker refused the auth daemon something:\n%s", p.Output())
	}
}

// TestFiftyRefusalsAtOnceLeaveTheServiceConnected sends 50 requests the
// broker refuses at once, as a misconfigured service retrying would: each
// fails, the refusal is logged, and the connection goes on serving what
// the user may do.
func TestFiftyRefusalsAtOnceLeaveTheServiceConnected(t *testing.T) {
	u := startUsersBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	op := u.connect(t, "operator", &syncbuf.Buffer{})
	if err := op.DeclareAll(ctx); err != nil {
		t.Fatal(err)
	}
	log := &syncbuf.Buffer{}
	b := u.connect(t, "extractor", log)
	errs := make(chan error, 50)
	for i := range 50 {
		go func() {
			ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			_, err := b.JS.Publish(ctx, fmt.Sprintf("$KV.mf_accounts.user%d", i), []byte("{}"))
			errs <- err
		}()
	}
	for range 50 {
		if err := <-errs; err == nil {
			t.Error("a refused publish succeeded")
		}
	}
	if n := strings.Count(log.String(), `"level":"error"`); n != 50 {
		t.Errorf("%d refusals logged at error, want each of the 50 subjects once:\n%s", n, log.String())
	}
	// The same refusal again, as a retry loop would: not logged again
	// at error within the minute.
	for range 3 {
		ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, _ = b.JS.Publish(ctx, "$KV.mf_accounts.user0", []byte("{}"))
		cancel()
	}
	if n := strings.Count(log.String(), `"level":"error"`); n != 50 {
		t.Errorf("%d refusals logged at error after the same one again, want still 50", n)
	}
	if !b.Conn.IsConnected() {
		t.Fatal("the connection was closed")
	}
	if _, err := b.JS.Publish(ctx, subject.Message("anna@old.test", "INBOX"), []byte("{}")); err != nil {
		t.Errorf("after the refusals, an allowed publish: %v", err)
	}
}
