package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/mailferry/mailferry/cmd/mailferry-lab/bench"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/testenv/corpus"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
)

// env is a chaos run's servers, configuration files and processes.
type env struct {
	o        Options
	src, tgt *dovecottest.Server
	direct   *config.Config
	boxes    []job.Mailbox
	users    map[string]string
	// late counts the messages added while the migration runs.
	late int

	// services.yaml: the daemons, enqueue and attached migrates use the
	// nats process; migrate.yaml: migrate with its embedded server on the
	// same store.
	svcConf, embConf string
	natsAddr         string

	nats, extractor, loader *proc
	migrate, attached       *proc
}

const masterPassword = "chaos-master-Pw1!"

func setUp(ctx context.Context, o Options, rep *Report) (*env, error) {
	e := &env{o: o, users: map[string]string{}}
	var users []string
	for i := range max(o.Mailboxes, 1) {
		u := fmt.Sprintf("chaos%02d@old.example", i+1)
		e.users[u] = fmt.Sprintf("pw%d", i)
		users = append(users, u)
		e.boxes = append(e.boxes, job.Mailbox{SourceUser: u, TargetUser: u})
	}
	var err error
	e.src, err = dovecottest.Start(ctx, filepath.Join(o.Work, "source"), dovecottest.Options{Separator: '/', MasterUser: "admin", MasterPassword: masterPassword, Users: e.users, PlainPasswords: true})
	if err != nil {
		return nil, fmt.Errorf("source dovecot: %w", err)
	}
	e.tgt, err = dovecottest.Start(ctx, filepath.Join(o.Work, "target"), dovecottest.Options{Separator: '.', MasterUser: "admin", MasterPassword: masterPassword, Users: e.users, PlainPasswords: true, AutoCreateSpecial: true})
	if err != nil {
		e.tearDown()
		return nil, fmt.Errorf("target dovecot: %w", err)
	}
	if err := e.seed(ctx, users, rep); err != nil {
		e.tearDown()
		return nil, err
	}
	if err := e.writeConfigs(); err != nil {
		e.tearDown()
		return nil, err
	}
	return e, nil
}

// seed fills the source with the benchmark's generated corpus and, when
// asked and present, the shared corpus of real-world messages.
func (e *env) seed(ctx context.Context, users []string, rep *Report) error {
	c, err := bench.SeedCorpus(ctx, e.src, users, e.o.Messages, e.o.MaxSize, e.o.Seed)
	if err != nil {
		return err
	}
	rep.Mailboxes, rep.Messages, rep.Bytes, rep.Largest = len(users), c.Messages, c.Bytes, c.Largest
	if !e.o.SharedCorpus {
		return nil
	}
	files, err := corpus.Files()
	if err != nil {
		fmt.Fprintf(e.o.Out, "chaos: generated mail only: %v\n", err)
		return nil
	}
	rng := rand.New(rand.NewPCG(e.o.Seed, 0xc0))
	folders := []string{"INBOX", "Real/Lists"}
	for i, u := range users {
		for fi, folder := range folders {
			var msgs []dovecottest.Message
			for j := fi + i*len(folders); j < len(files); j += len(folders) * len(users) {
				b, err := os.ReadFile(files[j])
				if err != nil {
					return err
				}
				msgs = append(msgs, dovecottest.Message{Body: b, Flags: flags(rng), Date: time.Unix(946684800+rng.Int64N(700_000_000), 0)})
				rep.Messages++
				rep.Bytes += int64(len(b))
				rep.Largest = max(rep.Largest, int64(len(b)))
			}
			if len(msgs) == 0 {
				continue
			}
			if err := e.src.Seed(u, folder, msgs); err != nil {
				return fmt.Errorf("seed %s %q: %w", u, folder, err)
			}
		}
	}
	return nil
}

func flags(rng *rand.Rand) []string {
	var out []string
	for _, f := range []string{`\Seen`, `\Flagged`, `\Answered`, "$Label1"} {
		if rng.IntN(3) == 0 {
			out = append(out, f)
		}
	}
	return out
}

// imapConf is the configuration every process shares but nats.
func (e *env) imapConf(target string) string {
	lease := ""
	if e.o.LeaseTTL > 0 {
		lease = ", lease_ttl: " + e.o.LeaseTTL.String()
	}
	return fmt.Sprintf(`source: {address: %s, tls: none, auth: master, master_user: admin, master_password_file: master.pw, command_timeout: 15s, dial_timeout: 5s}
target: {address: %s, tls: none, auth: master, master_user: admin, master_password_file: master.pw, command_timeout: 15s, dial_timeout: 5s}
mailboxes: {file: mailboxes.csv}
extractor: {checkpoint_every: 25}
loader: {batch_messages: 20%s}
log: {level: info}
`, e.src.Addr, target, lease)
}

// natsConf is the nats section; url empty means embedded on dataDir.
func (e *env) natsConf(url, listen, dataDir string) string {
	var kv []string
	if url != "" {
		// The nats process made its broker password in the store it
		// shares with us: name it as an operator would.
		kv = append(kv, "url: "+url, "user: "+broker.DefaultUser, "password_file: "+filepath.Join(dataDir, broker.PasswordFileName))
	} else {
		kv = append(kv, "data_dir: "+dataDir, "server_name: chaos")
	}
	if listen != "" {
		kv = append(kv, "listen: "+listen)
	}
	if e.o.AckWait > 0 {
		kv = append(kv, "job_ack_wait: "+e.o.AckWait.String())
	}
	return "nats: {" + strings.Join(kv, ", ") + "}\n"
}

func (e *env) writeConfigs() error {
	dir := e.o.Work
	if err := os.WriteFile(filepath.Join(dir, "master.pw"), []byte(masterPassword+"\n"), 0o600); err != nil {
		return err
	}
	var csv strings.Builder
	csv.WriteString("source_user,target_user\n")
	for _, mb := range e.boxes {
		fmt.Fprintf(&csv, "%s,%s\n", mb.SourceUser, mb.TargetUser)
	}
	if err := os.WriteFile(filepath.Join(dir, "mailboxes.csv"), []byte(csv.String()), 0o600); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	e.natsAddr = fmt.Sprintf("127.0.0.1:%d", port)
	store := filepath.Join(dir, "nats")
	files := map[string]string{
		"nats.yaml":     e.natsConf("", e.natsAddr, store),
		"services.yaml": e.natsConf("nats://"+e.natsAddr, "", store) + e.imapConf(e.tgt.Addr),
		"migrate.yaml":  e.natsConf("", "", store) + e.imapConf(e.tgt.Addr),
		"direct.yaml":   e.natsConf("", "", filepath.Join(dir, "unused")) + e.imapConf(e.tgt.Addr),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			return err
		}
	}
	e.svcConf, e.embConf = filepath.Join(dir, "services.yaml"), filepath.Join(dir, "migrate.yaml")
	if e.direct, err = config.Load(filepath.Join(dir, "direct.yaml")); err != nil {
		return err
	}
	bin := e.o.Bin
	e.nats = &proc{name: KindNATS, bin: bin, args: []string{"nats", "-c", filepath.Join(dir, "nats.yaml")}, dir: dir}
	e.extractor = &proc{name: KindExtract, bin: bin, args: []string{"extractor", "-c", e.svcConf}, dir: dir}
	e.loader = &proc{name: KindLoad, bin: bin, args: []string{"loader", "-c", e.svcConf}, dir: dir}
	e.migrate = &proc{name: KindMigrate, bin: bin, args: []string{"migrate", "-c", e.embConf}, dir: dir}
	e.attached = &proc{name: KindAttached, bin: bin, args: []string{"migrate", "-c", e.svcConf}, dir: dir}
	return nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (e *env) procs() []*proc {
	return []*proc{e.nats, e.extractor, e.loader, e.migrate, e.attached}
}

// stopAll stops every process, the broker last.
func (e *env) stopAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ps := e.procs()
	for i := len(ps) - 1; i >= 0; i-- {
		ps[i].stop(ctx)
	}
}

func (e *env) tearDown() {
	if e.src != nil {
		e.src.Stop()
	}
	if e.tgt != nil {
		e.tgt.Stop()
	}
}

// waitNATS waits until the nats process accepts connections.
func (e *env) waitNATS(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		c, err := net.DialTimeout("tcp", e.natsAddr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		sleep(ctx, 100*time.Millisecond)
	}
	return fmt.Errorf("nats-server on %s not up after 60s (see %s)", e.natsAddr, e.nats.logPath())
}

// enqueue starts a pass through the nats process, retrying while it comes
// up.
func (e *env) enqueue(ctx context.Context) error {
	var last []byte
	for range 120 {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		out, err := exec.CommandContext(cctx, e.o.Bin, "enqueue", "-c", e.svcConf).CombinedOutput()
		cancel()
		if err == nil {
			return nil
		}
		last = out
		if ctx.Err() != nil {
			return ctx.Err()
		}
		sleep(ctx, 250*time.Millisecond)
	}
	return fmt.Errorf("enqueue: %s", last)
}

// baseline migrates the same mail without kills into a second, fresh
// target with a fresh store, and removes both afterwards.
func (e *env) baseline(ctx context.Context, rep *Report) error {
	dir := filepath.Join(e.o.Work, "baseline")
	tgt, err := dovecottest.Start(ctx, filepath.Join(dir, "target"), dovecottest.Options{Separator: '.', MasterUser: "admin", MasterPassword: masterPassword, Users: e.users, PlainPasswords: true, AutoCreateSpecial: true})
	if err != nil {
		return fmt.Errorf("baseline target dovecot: %w", err)
	}
	defer func() {
		tgt.Stop()
		os.RemoveAll(dir)
	}()
	conf := filepath.Join(e.o.Work, "baseline.yaml")
	if err := os.WriteFile(conf, []byte(e.natsConf("", "", filepath.Join(dir, "nats"))+e.imapConf(tgt.Addr)), 0o600); err != nil {
		return err
	}
	p := &proc{name: "baseline-migrate", bin: e.o.Bin, args: []string{"migrate", "-json", "-c", conf}, dir: e.o.Work, stdout: filepath.Join(e.o.Work, "baseline-migrate.json")}
	if err := p.start(); err != nil {
		return err
	}
	if !p.wait(ctx, time.Hour) {
		p.kill9()
		return fmt.Errorf("baseline migrate did not finish in an hour (see %s)", p.logPath())
	}
	rep.Baseline = p.age()
	res, err := readResult(p.stdout)
	if err != nil {
		return fmt.Errorf("baseline migrate (exit %d, see %s): %w", p.exit, p.logPath(), err)
	}
	if bad := notLoaded(res); len(bad) > 0 {
		return fmt.Errorf("baseline migrate did not load %s (see %s)", strings.Join(bad, "; "), p.logPath())
	}
	fmt.Fprintf(e.o.Out, "chaos: uninterrupted migrate to a fresh target took %s\n", rep.Baseline.Round(100*time.Millisecond))
	return nil
}

// lateFolders receive the mail that arrives while the migration runs.
var lateFolders = []string{"INBOX", "Neu/Späte Post"}

// addMail delivers n new messages to random mailboxes of the source, as
// mail arriving during the migration: a later pass has to move them.
func (e *env) addMail(rng *rand.Rand, n int, rep *Report) error {
	type key struct{ user, folder string }
	batch := map[key][]dovecottest.Message{}
	var order []key
	for range n {
		k := key{e.boxes[rng.IntN(len(e.boxes))].SourceUser, lateFolders[rng.IntN(len(lateFolders))]}
		e.late++
		body := fmt.Sprintf("From: late@old.example\r\nTo: %s\r\nSubject: late mail %d\r\nMessage-ID: <late.%d.%d@chaos>\r\nDate: %s\r\n\r\n%s",
			k.user, e.late, e.o.Seed, e.late, time.Unix(1767225600+int64(e.late)*60, 0).UTC().Format(time.RFC1123Z), strings.Repeat("arrived while the migration ran\r\n", 1+rng.IntN(300)))
		if _, ok := batch[k]; !ok {
			order = append(order, k)
		}
		batch[k] = append(batch[k], dovecottest.Message{Body: []byte(body), Flags: flags(rng), Date: time.Unix(1767225600+int64(e.late)*60, 0)})
		rep.Messages++
		rep.Late++
		rep.Bytes += int64(len(body))
	}
	for _, k := range order {
		if err := e.src.Seed(k.user, k.folder, batch[k]); err != nil {
			return fmt.Errorf("new mail for %s %q: %w", k.user, k.folder, err)
		}
	}
	return nil
}
