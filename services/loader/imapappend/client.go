// Package imapappend is a small IMAP client that only logs in and appends,
// built for the loader's throughput: RFC 3502 MULTIAPPEND puts a whole
// batch into one server transaction (one index and uidlist update with its
// fsyncs on Dovecot instead of one per message), and without it APPEND
// commands are pipelined with RFC 7888 non-synchronizing literals. Message
// bodies are streamed from their readers, never held in memory, and a
// reader that yields more or fewer bytes than announced aborts the
// connection inside the literal, so no truncated or padded message is ever
// stored.
package imapappend

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/imapdial"
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

// Client is one logged-in IMAP connection. It is not safe for concurrent
// use, except that Close may be called at any time to abort.
type Client struct {
	addr    string
	pc      *progressConn // the TCP connection; closing it aborts everything
	conn    net.Conn      // pc, or a TLS connection over it
	br      *bufio.Reader
	bw      *bufio.Writer
	timeout time.Duration

	caps        []string
	capsGen     int // counts capability updates
	appendLimit int64
	tagSeq      uint64
	// bye is the last untagged BYE, which explains a connection the server
	// then closed.
	bye string
	// broken is set when the connection can no longer carry commands
	// (transport failure, timeout, aborted literal); every later command
	// fails with it.
	broken error

	closeOnce sync.Once
	closeErr  error
}

// Dial connects to the server s, sets up TLS as configured and logs in
// with cred: SASL PLAIN with cred.User as authorization identity when
// cred.MasterUser is set, else LOGIN. ctx bounds the whole login; every
// step must also make progress within s.CommandTimeout.
func Dial(ctx context.Context, s config.IMAP, cred imapdial.Credentials) (*Client, error) {
	c, err := dial(ctx, s, cred)
	if err != nil {
		// cred.String never shows a password.
		return nil, fmt.Errorf("connect to %s as %s: %w", s.Address, cred, err)
	}
	return c, nil
}

func dial(ctx context.Context, s config.IMAP, cred imapdial.Credentials) (*Client, error) {
	var tlsConf *tls.Config
	if s.TLS == config.TLSStartTLS || s.TLS == config.TLSImplicit {
		var err error
		if tlsConf, err = imapdial.TLSConfig(s); err != nil {
			return nil, err
		}
	} else if s.TLS != config.TLSNone {
		return nil, fmt.Errorf("tls mode %q unknown", s.TLS)
	}
	d := net.Dialer{Timeout: s.DialTimeout.Std(), KeepAlive: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", s.Address)
	if err != nil {
		return nil, err
	}
	c := &Client{addr: s.Address, pc: newProgressConn(raw), timeout: s.CommandTimeout.Std()}
	c.conn = c.pc
	g := watch(ctx, c.pc, c.timeout)
	defer g.stop()
	if err := c.setup(ctx, s.TLS, tlsConf, cred); err != nil {
		c.pc.Conn.Close()
		return nil, g.explain(err)
	}
	return c, nil
}

// setup runs everything between the TCP connect and the logged-in state.
func (c *Client) setup(ctx context.Context, mode string, tlsConf *tls.Config, cred imapdial.Credentials) error {
	if mode == config.TLSImplicit {
		tc := tls.Client(c.pc, tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("tls handshake: %w", err)
		}
		c.conn = tc
	}
	c.br = bufio.NewReaderSize(c.conn, readBufSize)
	c.bw = bufio.NewWriterSize(c.conn, writeBufSize)

	greet, err := readResponse(c.br)
	if err != nil {
		return fmt.Errorf("read greeting: %w", err)
	}
	if greet.kind != respUntagged || (greet.word != "OK" && greet.word != "PREAUTH") {
		return fmt.Errorf("greeting: %q", greet.line)
	}
	if greet.code == "CAPABILITY" {
		c.setCaps(greet.codeArgs)
	}
	preauth := greet.word == "PREAUTH"

	if mode == config.TLSStartTLS {
		if preauth {
			// Logged in before TLS: everything would go in clear text.
			return errors.New("server sent PREAUTH, refusing to continue without STARTTLS")
		}
		if _, err := c.run(arg(" STARTTLS")); err != nil {
			return fmt.Errorf("starttls: %w", err)
		}
		if c.br.Buffered() > 0 {
			// Bytes sent before the handshake would be taken as protected
			// (CVE-2011-0411 style injection).
			return errors.New("starttls: server sent data before the TLS handshake")
		}
		tc := tls.Client(c.pc, tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("tls handshake: %w", err)
		}
		c.conn = tc
		c.br.Reset(c.conn)
		c.bw.Reset(c.conn)
		// Capabilities from before TLS cannot be trusted (RFC 3501 6.2.1).
		c.caps = nil
	}
	if !preauth {
		if c.caps == nil {
			if _, err := c.run(arg(" CAPABILITY")); err != nil {
				return fmt.Errorf("capability: %w", err)
			}
		}
		before := c.capsGen
		if err := c.login(cred); err != nil {
			return err
		}
		if c.capsGen == before {
			// Logging in usually changes them (Dovecot sends the new list
			// in the tagged OK); without a new list ask for one.
			c.caps = nil
		}
	}
	if c.caps == nil {
		if _, err := c.run(arg(" CAPABILITY")); err != nil {
			return fmt.Errorf("capability: %w", err)
		}
	}
	return nil
}

// login authenticates. The password goes only to the connection: no error
// built here contains it, and server lines do not echo it.
func (c *Client) login(cred imapdial.Credentials) error {
	if cred.MasterUser != "" {
		if !c.Has("AUTH=PLAIN") {
			return errors.New("log in: server does not offer AUTH=PLAIN for a master login")
		}
		ir := base64.StdEncoding.EncodeToString([]byte(cred.User + "\x00" + cred.MasterUser + "\x00" + cred.MasterPassword))
		var err error
		if c.Has("SASL-IR") {
			_, err = c.run(arg(" AUTHENTICATE PLAIN " + ir))
		} else {
			err = c.authenticateChallenge(ir)
		}
		if err != nil {
			return fmt.Errorf("authenticate: %w", err)
		}
		return nil
	}
	if c.Has("LOGINDISABLED") {
		return errors.New("log in: server has LOGINDISABLED (it wants TLS first)")
	}
	if _, err := c.run(arg(" LOGIN "), astring(cred.User), arg(" "), astring(cred.Password)); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	return nil
}

// authenticateChallenge runs AUTHENTICATE PLAIN without SASL-IR: the
// credentials go after the server's empty "+" challenge.
func (c *Client) authenticateChallenge(ir string) error {
	tag := c.nextTag()
	c.bw.WriteString(tag + " AUTHENTICATE PLAIN\r\n")
	if err := c.bw.Flush(); err != nil {
		return c.breakWith(err)
	}
	sent := false
	for {
		r, err := readResponse(c.br)
		if err != nil {
			return c.breakWith(err)
		}
		switch {
		case r.kind == respContinue && !sent:
			c.bw.WriteString(ir + "\r\n")
			sent = true
		case r.kind == respContinue:
			// PLAIN has a single step; cancel whatever else is asked.
			c.bw.WriteString("*\r\n")
		case r.kind == respUntagged:
			c.untagged(r)
			continue
		case r.tag == tag:
			return c.tagged(r)
		default:
			return c.breakWith(fmt.Errorf("response to unknown tag: %q", r.line))
		}
		if err := c.bw.Flush(); err != nil {
			return c.breakWith(err)
		}
	}
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
	if quotable(s) {
		return cmdPart{text: string(appendQuoted(nil, s))}
	}
	return cmdPart{text: s, literal: true}
}

// run sends one command (its parts follow the tag) and waits for its
// tagged answer; NO and BAD become *ServerError. It is for the short
// commands around appends, so it sends synchronously.
func (c *Client) run(parts ...cmdPart) (*response, error) {
	if c.broken != nil {
		return nil, fmt.Errorf("connection unusable: %w", c.broken)
	}
	tag := c.nextTag()
	c.bw.WriteString(tag)
	for _, p := range parts {
		if !p.literal {
			c.bw.WriteString(p.text)
			continue
		}
		n := int64(len(p.text))
		if c.nonSyncOK(n) {
			c.bw.WriteString("{" + strconv.FormatInt(n, 10) + "+}\r\n")
		} else {
			c.bw.WriteString("{" + strconv.FormatInt(n, 10) + "}\r\n")
			if err := c.bw.Flush(); err != nil {
				return nil, c.breakWith(err)
			}
			if r, err := c.waitContinue(tag); err != nil || r != nil {
				return r, err
			}
		}
		c.bw.WriteString(p.text)
	}
	c.bw.WriteString("\r\n")
	if err := c.bw.Flush(); err != nil {
		return nil, c.breakWith(err)
	}
	for {
		r, err := readResponse(c.br)
		if err != nil {
			return nil, c.breakWith(err)
		}
		switch {
		case r.kind == respUntagged:
			c.untagged(r)
		case r.kind == respContinue:
			return nil, c.breakWith(fmt.Errorf("unexpected continuation request: %q", r.line))
		case r.tag == tag:
			return r, c.tagged(r)
		default:
			return nil, c.breakWith(fmt.Errorf("response to unknown tag: %q", r.line))
		}
	}
}

// waitContinue waits for the "+" that lets a synchronizing literal go. A
// tagged answer instead means the server refused the command: it is
// returned with its error.
func (c *Client) waitContinue(tag string) (*response, error) {
	for {
		r, err := readResponse(c.br)
		if err != nil {
			return nil, c.breakWith(err)
		}
		switch {
		case r.kind == respContinue:
			return nil, nil
		case r.kind == respUntagged:
			c.untagged(r)
		case r.tag == tag:
			if err := c.tagged(r); err != nil {
				return r, err
			}
			return r, c.breakWith(fmt.Errorf("command completed before its literal was sent: %q", r.line))
		default:
			return nil, c.breakWith(fmt.Errorf("response to unknown tag: %q", r.line))
		}
	}
}

// tagged applies a tagged answer: capabilities from an OK, an error from
// NO or BAD.
func (c *Client) tagged(r *response) error {
	if r.word != "OK" {
		return r.serverError()
	}
	if r.code == "CAPABILITY" {
		c.setCaps(r.codeArgs)
	}
	return nil
}

// untagged applies what matters of an untagged response: capabilities and
// a BYE. Others (EXISTS, RECENT, OK [ALERT] ...) carry nothing an append
// needs.
func (c *Client) untagged(r *response) {
	switch {
	case r.word == "CAPABILITY":
		c.setCaps(r.codeArgs)
	case r.word == "OK" && r.code == "CAPABILITY":
		c.setCaps(r.codeArgs)
	case r.word == "BYE":
		c.bye = r.line
	}
}

// breakWith marks the connection unusable after a transport or protocol
// error, closes it, and returns err explained by a BYE the server sent.
func (c *Client) breakWith(err error) error {
	if c.bye != "" {
		err = fmt.Errorf("%w (server said %q)", err, c.bye)
	}
	if c.broken == nil {
		c.broken = err
	}
	c.pc.Conn.Close()
	return err
}

func (c *Client) nextTag() string {
	c.tagSeq++
	return "A" + strconv.FormatUint(c.tagSeq, 10)
}

// nonSyncOK reports whether a literal of n bytes may be sent without
// waiting for "+".
func (c *Client) nonSyncOK(n int64) bool {
	if c.Has("LITERAL+") {
		return true
	}
	return c.Has("LITERAL-") && n <= literalMinusMax
}

func (c *Client) setCaps(list string) {
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

// Caps returns the capabilities the server announced after login.
func (c *Client) Caps() []string { return append([]string(nil), c.caps...) }

// Has reports whether the server announced capability, ignoring case. A
// name without "=" also matches its valued forms, so Has("APPENDLIMIT")
// is true for "APPENDLIMIT=35651584".
func (c *Client) Has(capability string) bool {
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
func (c *Client) AppendLimit() int64 { return c.appendLimit }

// Logout ends the session politely and closes the connection.
func (c *Client) Logout(ctx context.Context) error {
	if c.broken != nil {
		c.Close()
		return fmt.Errorf("logout from %s: connection unusable: %w", c.addr, c.broken)
	}
	g := watch(ctx, c.pc, c.timeout)
	_, err := c.run(arg(" LOGOUT"))
	if err != nil && c.bye != "" && !errors.As(err, new(*ServerError)) {
		// Some servers hang up right after their BYE, without the
		// tagged OK: the session ended all the same.
		err = nil
	}
	g.stop()
	cerr := c.Close()
	if err != nil {
		return fmt.Errorf("logout from %s: %w", c.addr, g.explain(err))
	}
	if cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		return fmt.Errorf("close connection to %s: %w", c.addr, cerr)
	}
	return nil
}

// Broken reports whether the connection can no longer carry commands;
// a broken Client must be closed and dialled again.
func (c *Client) Broken() bool { return c.broken != nil }

// Close closes the connection without logging out. It may be called
// concurrently with a running Append to abort it, and more than once.
func (c *Client) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.conn.Close() })
	return c.closeErr
}
