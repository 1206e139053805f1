package imapdial

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mailferry/mailferry/shared/config"
)

// Buffer sizes: appends are bulk transfers, so large writes keep system
// calls (and TLS records) few; responses are short lines.
const (
	readBufSize  = 64 << 10
	writeBufSize = 256 << 10
)

// literalMinusMax is the largest non-synchronizing literal a LITERAL-
// server accepts (RFC 7888).
const literalMinusMax = 4096

// Options say how to reach one server. They are the parts of config.IMAP
// a connection needs, with the TLS configuration already built, so that
// packages which only speak IMAP do not depend on the configuration.
type Options struct {
	Address string
	// TLS is config.TLSNone, config.TLSStartTLS or config.TLSImplicit.
	TLS string
	// TLSConfig verifies the server for STARTTLS and implicit TLS.
	TLSConfig *tls.Config
	// DialTimeout bounds the TCP connect and, as a whole, the handshake
	// after it: TLS, greeting, STARTTLS, capabilities and login.
	DialTimeout time.Duration
	// CommandTimeout is how long a command on a Conn may go without
	// moving a byte (Conn.Watch).
	CommandTimeout time.Duration
	// Observer, when set, times every command on the connection and is
	// told how the dial ended.
	Observer Observer
	// Guard, when set, is asked before a login and told of a refused
	// one (loginlimit.Store): a server that locks accounts after N
	// failures must not see mailferry reach N.
	Guard LoginGuard
}

// LoginGuard limits the logins DialConn tries.
type LoginGuard interface {
	// Allow returns an error when user may not try to log in now: one
	// wrapping ErrLoginRefused when the answer is final, another when
	// it could not tell (tried again later).
	Allow(ctx context.Context, user string) error
	// Refused counts a login of user the server refused, with its answer.
	Refused(ctx context.Context, user, reason string) error
}

// OptionsFor builds the options of server s; reading its CA file is what
// can fail.
func OptionsFor(s config.IMAP) (Options, error) {
	o := Options{Address: s.Address, TLS: s.TLS, DialTimeout: s.DialTimeout.Std(), CommandTimeout: s.CommandTimeout.Std()}
	switch s.TLS {
	case config.TLSNone:
	case config.TLSStartTLS, config.TLSImplicit:
		tc, err := TLSConfig(s)
		if err != nil {
			return Options{}, err
		}
		o.TLSConfig = tc
	default:
		return Options{}, fmt.Errorf("tls mode %q unknown", s.TLS)
	}
	return o, nil
}

// Conn is one IMAP connection on the wire, set up by Connect or DialConn:
// TLS as configured, greeting read, capabilities known and, from DialConn,
// logged in. go-imap users get it as an *imapclient.Client (Client);
// imapappend and legacyimap speak their own commands on it. It is not
// safe for concurrent use, except that Close may be called at any time.
type Conn struct {
	addr    string
	pc      *progressConn // the TCP connection; closing it aborts everything
	conn    net.Conn      // pc, or a TLS connection over it; under tap when observed
	tap     *tap          // nil without an Observer
	br      *bufio.Reader
	bw      *bufio.Writer
	timeout time.Duration

	caps        []string
	capsGen     int // counts capability updates
	appendLimit int64
	preauth     bool
	// secure is set once the connection runs over TLS.
	secure bool
	tagSeq uint64
	// bye is the last untagged BYE, which explains a connection the server
	// then closed.
	bye string
	// broken is set when the connection can no longer carry commands
	// (transport failure, timeout, aborted literal); every later command
	// fails with it.
	broken error

	// hs bounds the handshake; nil once it is over.
	hs *handshake

	closeOnce sync.Once
	closeErr  error
}

// handshake bounds everything from the TCP connect to the logged-in
// state: a deadline DialTimeout from the connect, and ctx.
type handshake struct {
	ctx     context.Context
	d       time.Duration
	stopCtx func() bool
}

// explain says why the handshake's connection failed when its bounds
// closed it.
func (h *handshake) explain(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("handshake not done within %s: %w", h.d, err)
	}
	if cerr := h.ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("connection closed: %w: %w", cerr, err)
	}
	return err
}

// Connect dials o.Address and brings the connection up to the point of
// logging in: TLS or STARTTLS as configured, greeting read, capabilities
// known. The handshake must finish within o.DialTimeout and ctx; the
// returned Conn has no deadline left, commands bring their own.
func Connect(ctx context.Context, o Options) (c *Conn, err error) {
	defer observeDial(o, &err)
	c, err = connect(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", o.Address, err)
	}
	if err := c.endHandshake(); err != nil {
		return nil, err
	}
	return c, nil
}

// observeDial tells o's Observer how a dial ended.
func observeDial(o Options, err *error) {
	if o.Observer != nil {
		o.Observer.Dialed(dialOutcome(*err))
	}
}

// DialConn connects like Connect and logs in with cred: SASL PLAIN with
// cred.User as authorization identity when cred.MasterUser is set (a
// master login), else LOGIN. A login the server refuses for the
// credentials wraps ErrLoginRefused and the server's *ServerError.
func DialConn(ctx context.Context, o Options, cred Credentials) (c *Conn, err error) {
	defer observeDial(o, &err)
	if o.Guard != nil {
		if err := o.Guard.Allow(ctx, cred.User); err != nil {
			return nil, fmt.Errorf("log in to %s as %s: %w", o.Address, cred, err)
		}
	}
	c, err = connect(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", o.Address, err)
	}
	if !c.preauth {
		if err := c.login(cred); err != nil {
			err = c.hs.explain(err)
			c.hs.stopCtx()
			c.closeNow()
			var se *ServerError
			if errors.As(err, &se) && refused(se) {
				err = errors.Join(err, ErrLoginRefused)
				if o.Guard != nil {
					if gerr := o.Guard.Refused(ctx, cred.User, se.Line); gerr != nil {
						err = errors.Join(err, gerr)
					}
				}
			}
			// cred.String never shows a password.
			return nil, fmt.Errorf("log in to %s as %s: %w", o.Address, cred, err)
		}
	}
	if err := c.endHandshake(); err != nil {
		return nil, err
	}
	return c, nil
}

// endHandshake lifts the handshake's bounds, or closes the connection when
// ctx ended meanwhile.
func (c *Conn) endHandshake() error {
	c.hs.stopCtx()
	if err := c.hs.ctx.Err(); err != nil {
		c.closeNow()
		return err
	}
	c.hs = nil
	_ = c.conn.SetDeadline(time.Time{})
	return nil
}

// connect dials and runs the handshake up to the login; the handshake's
// bounds stay on the returned Conn.
func connect(ctx context.Context, o Options) (*Conn, error) {
	if o.Address == "" {
		return nil, errors.New("no server address configured")
	}
	switch o.TLS {
	case config.TLSNone:
	case config.TLSStartTLS, config.TLSImplicit:
		if o.TLSConfig == nil {
			return nil, fmt.Errorf("tls mode %s without a TLS configuration", o.TLS)
		}
	default:
		return nil, fmt.Errorf("tls mode %q unknown", o.TLS)
	}
	d := net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", o.Address)
	if err != nil {
		return nil, err
	}
	c := &Conn{addr: o.Address, pc: &progressConn{Conn: raw, clock: newClock()}, timeout: o.CommandTimeout}
	c.conn = c.pc
	if o.Observer != nil {
		c.tap = newTap(c.pc, o.Observer)
		c.conn = c.tap
	}
	c.hs = &handshake{ctx: ctx, d: o.DialTimeout, stopCtx: context.AfterFunc(ctx, func() { raw.Close() })}
	if o.DialTimeout > 0 {
		_ = raw.SetDeadline(time.Now().Add(o.DialTimeout))
	}
	if err := c.setup(ctx, o); err != nil {
		c.hs.stopCtx()
		c.closeNow()
		return nil, c.hs.explain(err)
	}
	return c, nil
}

// setup runs everything between the TCP connect and the login.
func (c *Conn) setup(ctx context.Context, o Options) error {
	if o.TLS == config.TLSImplicit {
		if err := c.startTLS(ctx, o.TLSConfig); err != nil {
			return err
		}
	}
	c.br = bufio.NewReaderSize(c.conn, readBufSize)
	c.bw = bufio.NewWriterSize(c.conn, writeBufSize)

	greet, err := ReadResponse(c.br)
	if err != nil {
		return fmt.Errorf("read greeting: %w", err)
	}
	if greet.Kind != Untagged || (greet.Word != "OK" && greet.Word != "PREAUTH") {
		return fmt.Errorf("greeting: %q", greet.Line)
	}
	if greet.Code == "CAPABILITY" {
		c.SetCaps(greet.CodeArgs)
	}
	c.preauth = greet.Word == "PREAUTH"

	if o.TLS == config.TLSStartTLS {
		if c.preauth {
			// Logged in before TLS: everything would go in clear text.
			return errors.New("server sent PREAUTH, refusing to continue without STARTTLS")
		}
		if err := c.ensureCaps(); err != nil {
			return err
		}
		if !c.Has("STARTTLS") {
			return errors.New("the server does not offer STARTTLS")
		}
		if _, err := c.run(arg(" STARTTLS")); err != nil {
			return fmt.Errorf("starttls: %w", err)
		}
		if c.br.Buffered() > 0 {
			// Bytes sent before the handshake would be taken as protected
			// (CVE-2011-0411 style injection).
			return errors.New("starttls: server sent data before the TLS handshake")
		}
		if err := c.startTLS(ctx, o.TLSConfig); err != nil {
			return err
		}
		c.br.Reset(c.conn)
		c.bw.Reset(c.conn)
		// Capabilities from before TLS cannot be trusted (RFC 3501 6.2.1).
		c.caps = nil
	}
	return c.ensureCaps()
}

func (c *Conn) startTLS(ctx context.Context, tc *tls.Config) error {
	t := tls.Client(c.pc, tc)
	if err := t.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("tls handshake: %w", err)
	}
	c.conn = t
	if c.tap != nil {
		c.tap.Conn = t
		c.conn = c.tap
	}
	c.secure = true
	return nil
}

// ensureCaps asks for the capabilities unless the server announced them.
func (c *Conn) ensureCaps() error {
	if c.caps != nil {
		return nil
	}
	if _, err := c.run(arg(" CAPABILITY")); err != nil {
		return fmt.Errorf("capability: %w", err)
	}
	return nil
}

// login authenticates. The password goes only to the connection: no error
// built here contains it, and server lines do not echo it.
func (c *Conn) login(cred Credentials) error {
	before := c.capsGen
	if cred.MasterUser != "" {
		// Dovecot also accepts "user*master" as a LOGIN name, but only
		// SASL PLAIN is a standard way to name the authorization identity.
		if !c.Has("AUTH=PLAIN") {
			return errors.New("server does not offer AUTH=PLAIN for a master login")
		}
		ir := base64.StdEncoding.EncodeToString([]byte(cred.User + "\x00" + cred.MasterUser + "\x00" + cred.MasterPassword))
		var err error
		if c.Has("SASL-IR") {
			_, err = c.run(arg(" AUTHENTICATE PLAIN " + ir))
		} else {
			err = c.authenticateChallenge("PLAIN", func([]byte) (string, error) { return ir, nil })
		}
		if err != nil {
			return fmt.Errorf("authenticate: %w", err)
		}
	} else if err := c.userLogin(cred); err != nil {
		return err
	}
	if c.capsGen == before {
		// Logging in usually changes them (Dovecot sends the new list in
		// the tagged OK); without a new list ask for one.
		c.caps = nil
	}
	return c.ensureCaps()
}

// userLogin logs in with the user's own password the way the server
// offers: CRAM-MD5 on a link without TLS when offered (the password never
// crosses it; MailEnable offers it), else LOGIN, else SASL PLAIN.
func (c *Conn) userLogin(cred Credentials) error {
	switch {
	case !c.secure && c.Has("AUTH=CRAM-MD5"):
		if err := c.cramMD5(cred); err != nil {
			return fmt.Errorf("authenticate cram-md5: %w", err)
		}
	case !c.Has("LOGINDISABLED"):
		if _, err := c.run(arg(" LOGIN "), astring(cred.User), arg(" "), astring(cred.Password)); err != nil {
			return fmt.Errorf("login: %w", err)
		}
	case c.Has("AUTH=PLAIN"):
		ir := base64.StdEncoding.EncodeToString([]byte("\x00" + cred.User + "\x00" + cred.Password))
		if err := c.authenticateChallenge("PLAIN", func([]byte) (string, error) { return ir, nil }); err != nil {
			return fmt.Errorf("authenticate plain: %w", err)
		}
	default:
		return errors.New("server has LOGINDISABLED and offers neither AUTH=PLAIN nor AUTH=CRAM-MD5 (it wants TLS first)")
	}
	return nil
}

// cramMD5 runs AUTHENTICATE CRAM-MD5 (RFC 2195): the answer to the
// server's challenge is the user and the HMAC-MD5 of the challenge keyed
// with the password.
func (c *Conn) cramMD5(cred Credentials) error {
	return c.authenticateChallenge("CRAM-MD5", func(challenge []byte) (string, error) {
		mac := hmac.New(md5.New, []byte(cred.Password))
		mac.Write(challenge)
		return base64.StdEncoding.EncodeToString([]byte(cred.User + " " + hex.EncodeToString(mac.Sum(nil)))), nil
	})
}

// authenticateChallenge runs AUTHENTICATE PLAIN without SASL-IR: the
// credentials go after the server's empty "+" challenge.
func (c *Conn) authenticateChallenge(mech string, answer func(challenge []byte) (string, error)) error {
	tag := c.NextTag()
	c.bw.WriteString(tag + " AUTHENTICATE " + mech + "\r\n")
	if err := c.bw.Flush(); err != nil {
		return c.Fail(err)
	}
	sent := false
	for {
		r, err := ReadResponse(c.br)
		if err != nil {
			return c.Fail(err)
		}
		switch {
		case r.Kind == Continue && !sent:
			challenge, err := base64.StdEncoding.DecodeString(strings.TrimSpace(r.Text))
			if err != nil {
				challenge = nil // PLAIN's empty challenge may come as "+ " or "+"
			}
			resp, err := answer(challenge)
			if err != nil {
				c.bw.WriteString("*\r\n")
				return errors.Join(err, c.bw.Flush())
			}
			c.bw.WriteString(resp + "\r\n")
			sent = true
		case r.Kind == Continue:
			// PLAIN and CRAM-MD5 have a single step; cancel whatever
			// else is asked.
			c.bw.WriteString("*\r\n")
		case r.Kind == Untagged:
			c.Untagged(r)
			continue
		case r.Tag == tag:
			return c.tagged(r)
		default:
			return c.Fail(fmt.Errorf("response to unknown tag: %q", r.Line))
		}
		if err := c.bw.Flush(); err != nil {
			return c.Fail(err)
		}
	}
}

// ErrLoginRefused marks a login the server refused for the credentials;
// retrying the same credentials cannot help.
var ErrLoginRefused = errors.New("login refused")

// refused reports whether se answered a login for its credentials: any
// NO but one whose code says the server could not check them
// (UNAVAILABLE, RFC 5530: "a subsystem is down"). Older servers
// (MailEnable) send a bare NO for a wrong password, and one more try of
// the same password can lock the customer out of their mail (a
// server-wide lockout after N failures).
func refused(se *ServerError) bool {
	return se.Status == "NO" && se.Code != "UNAVAILABLE"
}

// cmdPart is a piece of a command: text as is, or a string that must go as
// a literal.
type cmdPart struct {
	text    string
	literal bool
}

func arg(s string) cmdPart { return cmdPart{text: s} }

// astring sends s quoted when IMAP4rev1 allows, else as a literal.
func astring(s string) cmdPart {
	if Quotable(s) {
		return cmdPart{text: string(AppendQuoted(nil, s))}
	}
	return cmdPart{text: s, literal: true}
}

// run sends one command (its parts follow the tag) and waits for its
// tagged answer; NO and BAD become *ServerError. It is for the short
// commands around appends, so it sends synchronously.
func (c *Conn) run(parts ...cmdPart) (*Response, error) {
	if c.broken != nil {
		return nil, fmt.Errorf("connection unusable: %w", c.broken)
	}
	tag := c.NextTag()
	c.bw.WriteString(tag)
	for _, p := range parts {
		if !p.literal {
			c.bw.WriteString(p.text)
			continue
		}
		n := int64(len(p.text))
		if c.NonSyncOK(n) {
			c.bw.WriteString("{" + strconv.FormatInt(n, 10) + "+}\r\n")
		} else {
			c.bw.WriteString("{" + strconv.FormatInt(n, 10) + "}\r\n")
			if err := c.bw.Flush(); err != nil {
				return nil, c.Fail(err)
			}
			if r, err := c.waitContinue(tag); err != nil || r != nil {
				return r, err
			}
		}
		c.bw.WriteString(p.text)
	}
	c.bw.WriteString("\r\n")
	if err := c.bw.Flush(); err != nil {
		return nil, c.Fail(err)
	}
	for {
		r, err := ReadResponse(c.br)
		if err != nil {
			return nil, c.Fail(err)
		}
		switch {
		case r.Kind == Untagged:
			c.Untagged(r)
		case r.Kind == Continue:
			return nil, c.Fail(fmt.Errorf("unexpected continuation request: %q", r.Line))
		case r.Tag == tag:
			return r, c.tagged(r)
		default:
			return nil, c.Fail(fmt.Errorf("response to unknown tag: %q", r.Line))
		}
	}
}

// waitContinue waits for the "+" that lets a synchronizing literal go. A
// tagged answer instead means the server refused the command: it is
// returned with its error.
func (c *Conn) waitContinue(tag string) (*Response, error) {
	for {
		r, err := ReadResponse(c.br)
		if err != nil {
			return nil, c.Fail(err)
		}
		switch {
		case r.Kind == Continue:
			return nil, nil
		case r.Kind == Untagged:
			c.Untagged(r)
		case r.Tag == tag:
			if err := c.tagged(r); err != nil {
				return r, err
			}
			return r, c.Fail(fmt.Errorf("command completed before its literal was sent: %q", r.Line))
		default:
			return nil, c.Fail(fmt.Errorf("response to unknown tag: %q", r.Line))
		}
	}
}

// tagged applies a tagged answer: capabilities from an OK, an error from
// NO or BAD.
func (c *Conn) tagged(r *Response) error {
	if r.Word != "OK" {
		return r.Err()
	}
	if r.Code == "CAPABILITY" {
		c.SetCaps(r.CodeArgs)
	}
	return nil
}

// Untagged applies what matters of an untagged response to the
// connection: capabilities and a BYE. Others (EXISTS, RECENT, OK [ALERT]
// ...) carry nothing a login or an append needs.
func (c *Conn) Untagged(r *Response) {
	switch {
	case r.Word == "CAPABILITY":
		c.SetCaps(r.CodeArgs)
	case r.Word == "OK" && r.Code == "CAPABILITY":
		c.SetCaps(r.CodeArgs)
	case r.Word == "BYE":
		c.bye = r.Line
	}
}

// Fail marks the connection unusable after a transport or protocol error,
// closes it, and returns err explained by a BYE the server sent.
func (c *Conn) Fail(err error) error {
	if c.bye != "" {
		err = fmt.Errorf("%w (server said %q)", err, c.bye)
	}
	c.Abort(err)
	return err
}

// Abort marks the connection unusable for why (unless it already is) and
// closes the TCP connection under any TLS, so that a server discards a
// literal it received only in part and every read and write in flight
// fails at once.
func (c *Conn) Abort(why error) {
	if c.broken == nil {
		c.broken = why
	}
	c.closeNow()
}

// closeNow closes the TCP connection, without a TLS close_notify that
// could block on a stalled peer.
func (c *Conn) closeNow() { c.pc.Conn.Close() }

// NextTag returns a fresh command tag.
func (c *Conn) NextTag() string {
	c.tagSeq++
	return "A" + strconv.FormatUint(c.tagSeq, 10)
}

// NonSyncOK reports whether a literal of n bytes may be sent without
// waiting for "+".
func (c *Conn) NonSyncOK(n int64) bool {
	if c.Has("LITERAL+") {
		return true
	}
	return c.Has("LITERAL-") && n <= literalMinusMax
}

// SetCaps replaces the capabilities with the space-separated list, as a
// CAPABILITY response or response code gives it.
func (c *Conn) SetCaps(list string) {
	c.caps = strings.Fields(list)
	c.capsGen++
	c.appendLimit = 0
	for _, s := range c.caps {
		if v, ok := strings.CutPrefix(strings.ToUpper(s), "APPENDLIMIT="); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
				c.appendLimit = n
			}
		}
	}
}

// Caps returns the capabilities the server announced last.
func (c *Conn) Caps() []string { return append([]string(nil), c.caps...) }

// Has reports whether the server announced capability, ignoring case. A
// name without "=" also matches its valued forms, so Has("APPENDLIMIT")
// is true for "APPENDLIMIT=35651584".
func (c *Conn) Has(capability string) bool {
	for _, s := range c.caps {
		if strings.EqualFold(s, capability) {
			return true
		}
		if len(s) > len(capability) && s[len(capability)] == '=' && strings.EqualFold(s[:len(capability)], capability) {
			return true
		}
	}
	return false
}

// AppendLimit returns the server-wide APPENDLIMIT=n (RFC 7889) in bytes,
// or 0 when the server announced none.
func (c *Conn) AppendLimit() int64 { return c.appendLimit }

// Preauth reports whether the server greeted with PREAUTH: logged in
// without credentials.
func (c *Conn) Preauth() bool { return c.preauth }

// Reader is the buffered reader of the connection's responses. Only one
// goroutine may read at a time.
func (c *Conn) Reader() *bufio.Reader { return c.br }

// Writer is the buffered writer for commands; flush it to send.
func (c *Conn) Writer() *bufio.Writer { return c.bw }

// NetConn is the connection under the buffers (TLS when configured), for
// callers that set their own deadlines.
func (c *Conn) NetConn() net.Conn { return c.conn }

// SetBye records a BYE seen by a caller's own reader, so later errors
// quote it.
func (c *Conn) SetBye(line string) { c.bye = line }

// Broken returns why the connection can no longer carry commands, or nil;
// a broken Conn must be closed and dialled again.
func (c *Conn) Broken() error { return c.broken }

// Watch starts the watchdog of one command (Options.CommandTimeout of no
// byte moving, or ctx ending closes the connection).
func (c *Conn) Watch(ctx context.Context) *Watchdog {
	return watch(ctx, c.pc.clock, c.timeout, c.closeNow)
}

// Logout ends the session politely and closes the connection.
func (c *Conn) Logout(ctx context.Context) error {
	if c.broken != nil {
		c.Close()
		return fmt.Errorf("logout from %s: connection unusable: %w", c.addr, c.broken)
	}
	w := c.Watch(ctx)
	_, err := c.run(arg(" LOGOUT"))
	if err != nil && c.bye != "" && !errors.As(err, new(*ServerError)) {
		// Some servers hang up right after their BYE, without the
		// tagged OK: the session ended all the same.
		err = nil
	}
	w.Stop()
	cerr := c.Close()
	if err != nil {
		return fmt.Errorf("logout from %s: %w", c.addr, w.Err(err))
	}
	if cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		return fmt.Errorf("close connection to %s: %w", c.addr, cerr)
	}
	return nil
}

// Close closes the connection without logging out. It may be called
// concurrently with a running command to abort it, and more than once.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.conn.Close() })
	return c.closeErr
}

// handover is the net.Conn a go-imap client reads a logged-in Conn
// through: first a PREAUTH greeting standing for the login already done,
// then whatever the Conn had buffered, then the connection itself.
type handover struct {
	net.Conn
	greeting io.Reader
	br       *bufio.Reader
}

func (h *handover) Read(p []byte) (int, error) {
	if h.greeting != nil {
		n, err := h.greeting.Read(p)
		if errors.Is(err, io.EOF) {
			h.greeting, err = nil, nil
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
	if h.br.Buffered() > 0 {
		return h.br.Read(p)
	}
	return h.Conn.Read(p)
}
