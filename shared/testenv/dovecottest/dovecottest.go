// Package dovecottest starts, seeds and stops isolated Dovecot 2.3 IMAP
// instances on loopback, for tests and for benchmarks that need a real server.
//
// Every instance lives in its own directory (config, passwd files, base_dir,
// state_dir, log and mail), listens on free ports of 127.0.0.1 only and has a
// distinct instance_name, so many instances can run side by side with each
// other and with a system-wide Dovecot. The master process runs in the
// foreground as a child of the calling process (dovecot -F), in its own
// process group, so Stop can kill it together with every process it forked.
//
// Requirements: Debian's dovecot-imapd (dovecot and doveadm on PATH) and
// root, because Dovecot switches to the mail user (vmail, created on demand)
// and the auth user (dovecot).
package dovecottest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mailferry/mailferry/shared/testenv/proc"
)

// MailUser is the system user that owns all mail of every instance.
const MailUser = "vmail"

// DebianPackage names the Debian package that provides dovecot and doveadm.
const DebianPackage = "dovecot-imapd"

// Timeouts for process control. They are generous because CI machines with
// two cores run several instances at once.
const (
	defaultStartTimeout = 30 * time.Second
	stopGrace           = 5 * time.Second
	portCloseTimeout    = 5 * time.Second
	startAttempts       = 5
)

// maxSocketDirLen bounds the length of base_dir: Dovecot creates unix
// sockets such as base_dir/login/imap-urlauth-worker and sun_path holds only
// 108 bytes.
const maxSocketDirLen = 70

// Options configures one instance.
type Options struct {
	// Name is the instance_name. It must be unique among running instances.
	// Default: derived from the directory.
	Name string
	// Separator is the hierarchy separator: '/' gives
	// maildir:~/Maildir:LAYOUT=fs, '.' gives plain Maildir++. Default '/'.
	Separator rune
	// MasterUser and MasterPassword, when both set, add a master user who can
	// log in as any user: LOGIN "user*master" or SASL PLAIN with
	// authzid=user, authcid=master.
	MasterUser, MasterPassword string
	// Users maps login names (user@domain) to passwords.
	Users map[string]string
	// PlainPasswords stores passwords as {PLAIN} instead of {SHA512-CRYPT}.
	// Hashing costs one doveadm process per user, so more than
	// maxHashedUsers users are always stored as {PLAIN}.
	PlainPasswords bool
	// QuotaBytes > 0 enables the quota plugin with this storage limit per user.
	QuotaBytes int64
	// MaxMailSize > 0 sets quota_max_mail_size: APPEND of bigger messages is
	// refused. It also enables the quota plugin.
	MaxMailSize int64
	// TLS enables ssl with a self-signed certificate for 127.0.0.1 and
	// localhost: STARTTLS on Addr and implicit TLS on TLSAddr.
	TLS bool
	// AutoCreateSpecial sets auto = subscribe on the special-use mailboxes
	// (Sent, Drafts, Trash, Junk, Archive) so every user has them.
	AutoCreateSpecial bool
	// PlainFolders, when set, replaces the special-use mailboxes: each
	// name is created for every user (auto = subscribe) with no
	// special-use attribute, as a hosted provider that does not say which
	// folder is which (OpenSRS: Sent, Drafts, Trash, Spam).
	PlainFolders []string
	// ExtraConfig is appended verbatim to dovecot.conf; later settings
	// override earlier ones.
	ExtraConfig string
	// TokenPasswords adds a second passdb, a passwd-file of login tokens
	// (SetTokens): a user logs in with its password or its token, as at
	// OpenSRS, whose session tokens "can be used in place of a password".
	TokenPasswords bool
	// Prefix is the personal namespace's prefix, such as "INBOX." (it
	// must end with Separator): every folder but INBOX is listed under it
	// ("INBOX.Archive.2010"), as on Courier-era servers, and NAMESPACE
	// says so. Folder names given to Seed, Subscribe and doveadm carry it;
	// the special-use folders are the prefixed Sent, Drafts ... Default "".
	Prefix string
}

// Server is one running Dovecot instance.
type Server struct {
	// Addr is 127.0.0.1:port of the plain IMAP listener (STARTTLS when TLS).
	Addr string
	// TLSAddr is 127.0.0.1:port of the implicit-TLS listener when TLS is on.
	TLSAddr string
	// CACertPEM is the self-signed certificate when TLS is on; add it to a
	// client's RootCAs.
	CACertPEM []byte
	// Dir is the instance directory.
	Dir string
	// ConfigPath is dovecot.conf of the instance, for doveadm -c.
	ConfigPath string
	// LogPath is the instance's dovecot.log.
	LogPath string
	// BaseDir is the instance's base_dir (sockets, master.pid).
	BaseDir string
	// Separator is the hierarchy separator of the inbox namespace.
	Separator rune

	opts        Options
	mailUID     int
	mailGID     int
	dovecotGID  int
	ownsBaseDir bool // base_dir is a separate temp dir to remove on Stop

	master *proc.Process // the running master, nil when stopped

	mu          sync.Mutex // guards users, passwdStamp and keyword files
	users       map[string]string
	passwdStamp time.Time
	tokenStamp  time.Time // passwdStamp of the tokens file

	seq atomic.Uint64 // unique maildir file names

	stopOnce sync.Once
	stopErr  error
}

// Start starts an instance in dir (created if missing) and waits until it
// accepts IMAP connections, that is until a greeting has been read. Every
// directory above dir must be traversable by others (mode o+x) because the
// auth process runs as the dovecot user.
func Start(ctx context.Context, dir string, opts Options) (*Server, error) {
	s, err := newServer(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("start dovecot in %s: %w", dir, err)
	}
	if err := s.start(ctx); err != nil {
		return nil, fmt.Errorf("start dovecot %s: %w", s.opts.Name, err)
	}
	return s, nil
}

func newServer(dir string, opts Options) (*Server, error) {
	if _, err := exec.LookPath("dovecot"); err != nil {
		return nil, fmt.Errorf("dovecot not found on PATH (install Debian package %s): %w", DebianPackage, err)
	}
	if opts.Separator == 0 {
		opts.Separator = '/'
	}
	if opts.Separator != '/' && opts.Separator != '.' {
		return nil, fmt.Errorf("separator %q not supported, use '/' or '.'", opts.Separator)
	}
	if (opts.MasterUser == "") != (opts.MasterPassword == "") {
		return nil, errors.New("MasterUser and MasterPassword must be set together")
	}
	if opts.Prefix != "" && !strings.HasSuffix(opts.Prefix, string(opts.Separator)) {
		return nil, fmt.Errorf("prefix %q must end with the separator %q", opts.Prefix, opts.Separator)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("resolve dir: %w", err)
	}
	if opts.Name == "" {
		opts.Name = defaultInstanceName(abs)
	}
	if !validInstanceName(opts.Name) {
		return nil, fmt.Errorf("instance name %q: use letters, digits, '.', '_' and '-'", opts.Name)
	}
	uid, gid, err := ensureMailUser()
	if err != nil {
		return nil, err
	}
	dgid, err := lookupGroupID("dovecot")
	if err != nil {
		return nil, err
	}
	s := &Server{
		Dir:        abs,
		ConfigPath: filepath.Join(abs, "dovecot.conf"),
		LogPath:    filepath.Join(abs, "dovecot.log"),
		BaseDir:    filepath.Join(abs, "run"),
		Separator:  opts.Separator,
		opts:       opts,
		mailUID:    uid,
		mailGID:    gid,
		dovecotGID: dgid,
		users:      make(map[string]string, len(opts.Users)),
	}
	return s, nil
}

// defaultInstanceName derives a name from the directory that is readable in
// ps output and unique per directory.
func defaultInstanceName(abs string) string {
	sum := sha256.Sum256([]byte(abs))
	base := strings.Map(func(r rune) rune {
		if r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return r
		}
		return '-'
	}, filepath.Base(abs))
	if len(base) > 32 {
		base = base[:32]
	}
	return base + "-" + hex.EncodeToString(sum[:3])
}

func validInstanceName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

func (s *Server) start(ctx context.Context) error {
	if err := s.prepareDirs(); err != nil {
		return err
	}
	if err := s.writeInitialUsers(ctx); err != nil {
		return err
	}
	if s.opts.TLS {
		if err := s.writeTLSFiles(); err != nil {
			return err
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultStartTimeout)
		defer cancel()
	}
	var lastErr error
	for attempt := 0; attempt < startAttempts; attempt++ {
		err := s.startOnce(ctx)
		if err == nil {
			return nil
		}
		lastErr = err
		// Ports are chosen by listening on :0 and closing, so another process
		// can take one before Dovecot binds it: only that case is retried.
		if !errors.Is(err, errPortTaken) || ctx.Err() != nil {
			break
		}
	}
	s.cleanupBaseDir()
	return lastErr
}

var errPortTaken = errors.New("listener port already in use")

// startOnce picks ports, writes the config, starts the master and waits for
// the greeting.
func (s *Server) startOnce(ctx context.Context) error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	s.TLSAddr = ""
	if s.opts.TLS {
		s.TLSAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
	}
	conf := s.config(ports[0], ports[1])
	if err := os.WriteFile(s.ConfigPath, []byte(conf), 0o644); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	p, err := proc.Start("dovecot", []string{"-F", "-c", s.ConfigPath}, proc.Options{
		Dir:     s.Dir,
		LogPath: s.LogPath,
		// The master, terminated, shuts down its children.
		DeathSignal: syscall.SIGTERM,
	})
	if err != nil {
		return err
	}
	s.master = p
	err = p.Ready(ctx, 20*time.Millisecond, func(ctx context.Context) error {
		if err := readGreeting(ctx, s.Addr); err != nil {
			return fmt.Errorf("no IMAP greeting on %s: %w", s.Addr, err)
		}
		if s.TLSAddr == "" {
			return nil
		}
		// The TLS listener gives no plaintext greeting to read.
		c, err := net.DialTimeout("tcp", s.TLSAddr, time.Second)
		if err != nil {
			return fmt.Errorf("no listener on %s: %w", s.TLSAddr, err)
		}
		return c.Close()
	})
	if err == nil {
		return nil
	}
	p.Kill()
	<-p.Exited()
	_ = proc.WaitGroupGone(p.Pid(), portCloseTimeout)
	s.master = nil
	if text := p.Output() + "\n" + p.LogTail(30); strings.Contains(text, "Address already in use") {
		return fmt.Errorf("%w: %s", errPortTaken, firstLine(text))
	}
	return err
}

// prepareDirs creates the instance layout with the ownership Dovecot needs:
// the instance dir world-traversable for the auth user, the mail root owned
// by the mail user.
func (s *Server) prepareDirs() error {
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return fmt.Errorf("create dir: %w", err)
	}
	// MkdirAll leaves an existing dir's mode alone and the umask may have cut
	// bits off a new one.
	if err := os.Chmod(s.Dir, 0o755); err != nil {
		return fmt.Errorf("chmod dir: %w", err)
	}
	if err := checkTraversable(s.Dir); err != nil {
		return err
	}
	if len(s.BaseDir) > maxSocketDirLen {
		// Unix socket paths are limited to 108 bytes: put the sockets into a
		// short temp dir instead of failing.
		d, err := os.MkdirTemp("", "dovecot-run-")
		if err != nil {
			return fmt.Errorf("create base_dir: %w", err)
		}
		s.BaseDir = d
		s.ownsBaseDir = true
	}
	for _, d := range []string{s.BaseDir, filepath.Join(s.Dir, "state")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			return fmt.Errorf("chmod %s: %w", d, err)
		}
	}
	mail := filepath.Join(s.Dir, "mail")
	if err := os.MkdirAll(mail, 0o700); err != nil {
		return fmt.Errorf("create mail dir: %w", err)
	}
	if err := os.Chown(mail, s.mailUID, s.mailGID); err != nil {
		return fmt.Errorf("chown mail dir: %w", err)
	}
	return nil
}

// checkTraversable reports a clear error when the dovecot user cannot reach
// dir: otherwise every login fails later with "Temporary authentication
// failure" and nothing points at the directory modes.
func checkTraversable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("stat %s: %w", d, err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s has mode %v: Dovecot's auth process (user dovecot) cannot traverse it; use a directory whose every parent has o+x (chmod 0755)", d, fi.Mode().Perm())
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

func (s *Server) config(imapPort, imapsPort int) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	mailLocation := "maildir:~/Maildir:LAYOUT=fs"
	if s.Separator == '.' {
		mailLocation = "maildir:~/Maildir"
	}
	p("# Generated by dovecottest; see ExtraConfig at the end.")
	p("instance_name = %s", s.opts.Name)
	p("base_dir = %s", s.BaseDir)
	p("state_dir = %s", filepath.Join(s.Dir, "state"))
	p("log_path = %s", s.LogPath)
	p("protocols = imap")
	p("listen = 127.0.0.1")
	p("# Loopback only: plaintext auth keeps test clients simple.")
	p("disable_plaintext_auth = no")
	p("auth_mechanisms = plain login")
	p("auth_verbose = yes")
	p("# Failed-login tests would otherwise wait 2 s per attempt.")
	p("auth_failure_delay = 0")
	p("auth_master_user_separator = *")
	p("# Without this listener the auth process runs without penalties: every")
	p("# failed login from 127.0.0.1 would otherwise delay all later logins from")
	p("# there by 2..15 s, including successful ones (auth_failure_delay = 0")
	p("# does not stop that in 2.3). Mode 0 disables a unix listener.")
	p("service anvil {")
	p("  unix_listener anvil-auth-penalty {")
	p("    mode = 0")
	p("  }")
	p("}")
	if s.opts.TLS {
		p("ssl = yes")
		p("ssl_cert = <%s", filepath.Join(s.Dir, "tls", "cert.pem"))
		p("ssl_key = <%s", filepath.Join(s.Dir, "tls", "key.pem"))
	} else {
		p("ssl = no")
	}
	if s.opts.MasterUser != "" {
		p("passdb {")
		p("  driver = passwd-file")
		p("  args = username_format=%%u %s", s.masterPasswdPath())
		p("  master = yes")
		p("  # The impersonated user must exist in the next passdb.")
		p("  result_success = continue")
		p("}")
	}
	p("passdb {")
	p("  driver = passwd-file")
	p("  args = username_format=%%u %s", s.passwdPath())
	p("}")
	if s.opts.TokenPasswords {
		p("passdb {")
		p("  driver = passwd-file")
		p("  args = username_format=%%u %s", s.tokensPath())
		p("}")
	}
	p("userdb {")
	p("  driver = passwd-file")
	p("  args = username_format=%%u %s", s.passwdPath())
	p("  default_fields = uid=%s gid=%s home=%s/%%d/%%n", MailUser, MailUser, filepath.Join(s.Dir, "mail"))
	p("}")
	p("mail_location = %s", mailLocation)
	p("mail_uid = %s", MailUser)
	p("mail_gid = %s", MailUser)
	p("first_valid_uid = %d", s.mailUID)
	p("last_valid_uid = %d", s.mailUID)
	p("first_valid_gid = %d", s.mailGID)
	p("last_valid_gid = %d", s.mailGID)
	p("# Parallel migrations log in many times as the same user from 127.0.0.1.")
	p("mail_max_userip_connections = 256")
	p("# Room for large messages and big UID sets.")
	p("default_vsz_limit = 1G")
	p("imap_max_line_length = 4M")
	p("namespace inbox {")
	p("  inbox = yes")
	p("  separator = %c", s.Separator)
	p("  prefix = %s", s.opts.Prefix)
	for _, name := range s.opts.PlainFolders {
		p("  mailbox %q {", name)
		p("    auto = subscribe")
		p("  }")
	}
	for _, mb := range []struct{ name, use string }{
		{"Sent", `\Sent`}, {"Drafts", `\Drafts`}, {"Trash", `\Trash`}, {"Junk", `\Junk`}, {"Archive", `\Archive`},
	} {
		if s.opts.PlainFolders != nil {
			break
		}
		p("  mailbox %s {", mb.name)
		p("    special_use = %s", mb.use)
		if s.opts.AutoCreateSpecial {
			p("    auto = subscribe")
		}
		p("  }")
	}
	p("}")
	if s.opts.QuotaBytes > 0 || s.opts.MaxMailSize > 0 {
		p("mail_plugins = $mail_plugins quota")
		p("protocol imap {")
		p("  mail_plugins = $mail_plugins imap_quota")
		p("}")
		p("plugin {")
		// The count backend sums what the index knows, so files written
		// directly by Seed are accounted for without a maildirsize file.
		p("  quota = count:User quota")
		p("  quota_vsizes = yes")
		if s.opts.QuotaBytes > 0 {
			p("  quota_rule = *:storage=%dB", s.opts.QuotaBytes)
		}
		if s.opts.MaxMailSize > 0 {
			p("  quota_max_mail_size = %dB", s.opts.MaxMailSize)
		}
		p("}")
	}
	p("service imap-login {")
	p("  inet_listener imap {")
	p("    address = 127.0.0.1")
	p("    port = %d", imapPort)
	p("  }")
	p("  # The built-in default would bind 993 and collide between instances.")
	p("  inet_listener imaps {")
	if s.opts.TLS {
		p("    address = 127.0.0.1")
		p("    port = %d", imapsPort)
		p("    ssl = yes")
	} else {
		p("    port = 0")
	}
	p("  }")
	p("}")
	if s.opts.ExtraConfig != "" {
		p("# ExtraConfig")
		p("%s", s.opts.ExtraConfig)
	}
	return b.String()
}

// freePorts returns n distinct ports that were free on 127.0.0.1 a moment ago.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func readGreeting(ctx context.Context, addr string) error {
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read greeting: %w", err)
	}
	if !strings.HasPrefix(line, "* OK") {
		return fmt.Errorf("unexpected greeting %q", strings.TrimSpace(line))
	}
	return nil
}

// Stop terminates the master process and every process it forked, then
// waits until the IMAP port is closed. It is idempotent: later calls return
// the first result.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		if err := s.stop(); err != nil {
			s.stopErr = fmt.Errorf("stop dovecot %s: %w", s.opts.Name, err)
		}
	})
	return s.stopErr
}

func (s *Server) stop() error {
	if s.master == nil {
		return nil
	}
	defer s.cleanupBaseDir()
	pgid := s.master.Pid()
	// master.pid names the same process, since it runs in the foreground
	// as our child; a different pid there means someone else's instance.
	if b, err := os.ReadFile(filepath.Join(s.BaseDir, "master.pid")); err == nil {
		if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && p != pgid {
			return fmt.Errorf("master.pid names %d, not our master %d", p, pgid)
		}
	}
	// SIGTERM to the whole group, not just the master: the master alone
	// waits up to 10 s for imap processes with open sessions to finish.
	if err := s.master.Stop(stopGrace); err != nil {
		return err
	}
	deadline := time.Now().Add(portCloseTimeout)
	for _, addr := range []string{s.Addr, s.TLSAddr} {
		if addr == "" {
			continue
		}
		for {
			c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
			if err != nil {
				break
			}
			c.Close()
			if time.Now().After(deadline) {
				return fmt.Errorf("port %s still open after stop", addr)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

func (s *Server) cleanupBaseDir() {
	if s.ownsBaseDir {
		_ = os.RemoveAll(s.BaseDir)
	}
}

// Doveadm runs doveadm -c ConfigPath args... and returns its standard
// output. The error includes standard error.
func (s *Server) Doveadm(ctx context.Context, args ...string) ([]byte, error) {
	full := append([]string{"-c", s.ConfigPath}, args...)
	cmd := exec.CommandContext(ctx, "doveadm", full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("doveadm %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// Subscribe subscribes user to folder (a name in the namespace's
// hierarchy, UTF-8).
func (s *Server) Subscribe(user, folder string) error {
	if _, err := s.Doveadm(context.Background(), "mailbox", "subscribe", "-u", user, folder); err != nil {
		return fmt.Errorf("subscribe %s to %q: %w", user, folder, err)
	}
	return nil
}

// LogTail returns the last n lines of dovecot.log, for failure messages.
func (s *Server) LogTail(n int) string {
	return proc.Tail(s.LogPath, 0, n)
}

func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "Address already in use") {
			return strings.TrimSpace(l)
		}
	}
	return strings.TrimSpace(s)
}

// MessageCounts returns how many messages each folder of user holds, by
// folder name (doveadm mailbox status messages).
func (s *Server) MessageCounts(ctx context.Context, user string) (map[string]int, error) {
	masks := []string{"*"}
	if s.opts.Prefix != "" {
		// Dovecot 2.3's doveadm matches "*" against nothing when the
		// inbox namespace has a prefix.
		masks = []string{"INBOX", s.opts.Prefix + "*"}
	}
	out, err := s.Doveadm(ctx, append([]string{"mailbox", "status", "-u", user, "messages"}, masks...)...)
	if err != nil {
		return nil, fmt.Errorf("doveadm mailbox status of %s: %w\n%s", user, err, out)
	}
	counts := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		i := strings.LastIndex(line, " messages=")
		if i < 0 {
			continue
		}
		n, err := strconv.Atoi(line[i+len(" messages="):])
		if err != nil {
			return nil, fmt.Errorf("doveadm mailbox status of %s: %q: %w", user, line, err)
		}
		counts[line[:i]] = n
	}
	return counts, nil
}
