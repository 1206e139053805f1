// Package legacyimap proves a user's password by logging in to the legacy
// IMAP server as that user: during the migration the old platform still
// runs, and a successful LOGIN there is proof for a user whose hash was
// not exported.
//
// Every check comes from the auth service's address, so the service
// tells the server whom it checks for: before LOGIN it sends RFC 2971's
// ID with "x-originating-ip" set to the client's address. A Dovecot that
// lists the auth service in login_trusted_networks then logs that address
// and keeps its per-address failure delays (auth penalty) per client,
// instead of slowing every user down after one client's wrong passwords.
//
// imapdial connects (TLS, STARTTLS, greeting, capabilities), as for every
// IMAP connection of mailferry; the client then speaks just enough IMAP
// for this (ID, LOGIN, LOGOUT) on that connection: go-imap's client
// cannot send ID fields other than RFC 2971's. User name and password
// always travel as literals, so no byte of them is ever parsed as IMAP
// syntax.
package legacyimap

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/imapdial"
)

// ClientName is the "name" the service gives in ID.
const ClientName = "mailferry-auth"

// maxLine bounds one response line (literals included): the server's
// answers to these few commands are short.
const maxLine = 64 << 10

// ErrNoAnswer is wrapped by the error of a LOGIN the server accepted but
// did not answer before the deadline. Its cause is, as far as anyone can
// tell, the client: Dovecot holds back the answers for an address whose
// logins failed before. Such errors say so with ClientCaused.
var ErrNoAnswer = errors.New("the legacy IMAP server did not answer the login in time")

// clientCaused marks errors caused by the client rather than the server:
// the login was held back for its address, or the client went away.
type clientCaused struct{ err error }

func (e *clientCaused) Error() string      { return e.err.Error() }
func (e *clientCaused) Unwrap() error      { return e.err }
func (e *clientCaused) ClientCaused() bool { return true }

// Verifier logs in to one IMAP server, at most Server.Connections at once.
type Verifier struct {
	server config.IMAP
	slots  chan struct{}
}

// New returns a verifier for server.
func New(server config.IMAP) *Verifier {
	return &Verifier{server: server, slots: make(chan struct{}, max(server.Connections, 1))}
}

// Verify reports whether the server accepts user's password. A refusal is
// (false, nil); an error means the server could not be asked, which says
// nothing about the password (errors caused by the client have a method
// ClientCaused returning true). client is the address the attempt came
// from, sent as x-originating-ip when it is an IP address. No error
// contains the password.
func (v *Verifier) Verify(ctx context.Context, user, password, client string) (bool, error) {
	select {
	case v.slots <- struct{}{}:
		defer func() { <-v.slots }()
	case <-ctx.Done():
		err := fmt.Errorf("verify %s at legacy IMAP: no free connection: %w", user, ctx.Err())
		if errors.Is(ctx.Err(), context.Canceled) {
			return false, &clientCaused{err}
		}
		return false, err
	}
	ok, err := v.login(ctx, user, password, client)
	if err != nil {
		err = fmt.Errorf("verify %s at legacy IMAP %s: %w", user, v.server.Address, err)
		if errors.Is(err, ErrNoAnswer) || errors.Is(ctx.Err(), context.Canceled) {
			return false, &clientCaused{err}
		}
	}
	return ok, err
}

// session is one connection to the server. imapdial sets it up (dial,
// TLS, greeting, capabilities); the commands after that are this
// package's own, bounded by deadlines rather than imapdial's watchdog:
// the answer to LOGIN is a verdict a server may hold back on purpose, and
// only a bound on the whole wait, not on progress, tells that apart
// (ErrNoAnswer).
type session struct {
	dc   *imapdial.Conn
	conn net.Conn
	r    *bufio.Reader
	tag  int
	// stop ends the watch that closes the connection when the context
	// ends; close calls it.
	stop func() bool
}

func (s *session) close() {
	s.stop()
	s.dc.Close()
}

func (v *Verifier) login(ctx context.Context, user, password, client string) (bool, error) {
	s, err := v.connect(ctx)
	if err != nil {
		return false, err
	}
	defer s.close()
	if s.dc.Has("LOGINDISABLED") {
		return false, errors.New("the server refuses LOGIN without TLS (LOGINDISABLED): configure legacy_imap.tls")
	}
	if s.dc.Has("ID") {
		if err := s.id(client); err != nil {
			return false, err
		}
	}
	// From here on, waiting is for the server's verdict on this user's
	// password, which a server delays per client address.
	s.deadline(ctx, v.server.CommandTimeout.Std())
	ok, err := s.loginCmd(user, password)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || ctx.Err() != nil {
			return false, fmt.Errorf("%w: %w", ErrNoAnswer, err)
		}
		return false, err
	}
	if ok {
		// Polite, not awaited: the verdict is in.
		s.deadline(ctx, time.Second)
		s.tag++
		_, _ = fmt.Fprintf(s.conn, "L%d LOGOUT\r\n", s.tag)
	}
	return ok, nil
}

// deadline sets the connection's deadline d from now, or ctx's if sooner.
func (s *session) deadline(ctx context.Context, d time.Duration) {
	t := time.Time{}
	if d > 0 {
		t = time.Now().Add(d)
	}
	s.deadlineAt(ctx, t)
}

// deadlineAt sets the connection's deadline t (zero: none), or ctx's if
// sooner.
func (s *session) deadlineAt(ctx context.Context, t time.Time) {
	if dl, ok := ctx.Deadline(); ok && (t.IsZero() || dl.Before(t)) {
		t = dl
	}
	_ = s.conn.SetDeadline(t)
}

// connect dials, sets up TLS as configured and reads the greeting and the
// capabilities (imapdial), all within the dial timeout, which also bounds
// the ID command after it.
func (v *Verifier) connect(ctx context.Context) (*session, error) {
	o, err := imapdial.OptionsFor(v.server)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	dc, err := imapdial.Connect(ctx, o)
	if err != nil {
		return nil, err
	}
	if dc.Preauth() {
		dc.Close()
		return nil, errors.New("greeting: the server sent PREAUTH, so no login would check the password")
	}
	// Lines stay bounded by maxLine: the reader's buffer is larger.
	s := &session{dc: dc, conn: dc.NetConn(), r: dc.Reader(), stop: context.AfterFunc(ctx, func() { dc.Close() })}
	if o.DialTimeout > 0 {
		s.deadlineAt(ctx, start.Add(o.DialTimeout))
	} else {
		s.deadlineAt(ctx, time.Time{})
	}
	return s, nil
}

// id sends ID with the client's address; the server's answer is not used.
func (s *session) id(client string) error {
	args := `("name" "` + ClientName + `"`
	if a, err := netip.ParseAddr(client); err == nil {
		// An address's text has no character a quoted string must escape.
		args += ` "x-originating-ip" "` + a.Unmap().String() + `"`
	}
	args += ")"
	if _, _, err := s.command("ID " + args); err != nil {
		return fmt.Errorf("ID: %w", err)
	}
	return nil
}

// loginCmd sends LOGIN with both arguments as literals and reports the
// server's verdict: OK true, NO false, NO with a code that blames the
// server an error.
func (s *session) loginCmd(user, password string) (bool, error) {
	s.tag++
	tag := "L" + strconv.Itoa(s.tag)
	plus := ""
	if s.dc.Has("LITERAL+") || s.dc.Has("LITERAL-") {
		// Non-synchronizing literals: one write, one round trip.
		// LITERAL- allows them up to 4096 bytes, more than either is.
		plus = "+"
	}
	parts := []string{
		tag + " LOGIN {" + strconv.Itoa(len(user)) + plus + "}\r\n",
		user + " {" + strconv.Itoa(len(password)) + plus + "}\r\n",
		password + "\r\n",
	}
	if plus != "" {
		if _, err := io.WriteString(s.conn, strings.Join(parts, "")); err != nil {
			return false, err
		}
	} else {
		for i, p := range parts {
			if _, err := io.WriteString(s.conn, p); err != nil {
				return false, err
			}
			if i == len(parts)-1 {
				break
			}
			// Wait for the continuation; a tagged answer instead ends it.
			done, ok, err := s.awaitLogin(tag, true)
			if done || err != nil {
				return ok, err
			}
		}
	}
	_, ok, err := s.awaitLogin(tag, false)
	return ok, err
}

// awaitLogin reads LOGIN's answers: a continuation (when cont), or the
// tagged verdict (done). Untagged lines are skipped. Nothing the server
// says in this phase is quoted in errors: no server should, but one
// could repeat the arguments.
func (s *session) awaitLogin(tag string, cont bool) (done, ok bool, err error) {
	for {
		l, err := s.readLine()
		if err != nil {
			return true, false, err
		}
		switch {
		case cont && strings.HasPrefix(l, "+"):
			return false, false, nil
		case strings.HasPrefix(l, tag+" "):
			ok, err := verdict(tag, l)
			return true, ok, err
		case strings.HasPrefix(l, "* BYE"):
			return true, false, errors.New("login: the server closed the connection")
		}
	}
}

// verdict maps LOGIN's tagged answer.
func verdict(tag, line string) (bool, error) {
	status, text, _ := strings.Cut(strings.TrimPrefix(line, tag+" "), " ")
	switch strings.ToUpper(status) {
	case "OK":
		return true, nil
	case "NO":
		code := strings.ToUpper(text)
		for _, c := range []string{"[UNAVAILABLE]", "[SERVERBUG]", "[LIMIT]"} {
			if strings.HasPrefix(code, c) {
				// A temporary failure: says nothing of the password.
				return false, fmt.Errorf("login: the server answered NO %s", c)
			}
		}
		return false, nil
	}
	return false, fmt.Errorf("login: the server answered %.10q", status)
}

// command sends a command without literals and returns the untagged
// lines before its tagged OK; NO and BAD are errors.
func (s *session) command(cmd string) (untagged []string, text string, err error) {
	s.tag++
	tag := "L" + strconv.Itoa(s.tag)
	if _, err := io.WriteString(s.conn, tag+" "+cmd+"\r\n"); err != nil {
		return nil, "", err
	}
	for {
		l, err := s.readLine()
		if err != nil {
			return nil, "", err
		}
		if rest, ok := strings.CutPrefix(l, tag+" "); ok {
			status, text, _ := strings.Cut(rest, " ")
			if strings.ToUpper(status) != "OK" {
				return nil, "", fmt.Errorf("%s %q", status, limit(text))
			}
			return untagged, text, nil
		}
		if strings.HasPrefix(l, "* BYE") {
			return nil, "", fmt.Errorf("server closed the connection: %q", limit(l))
		}
		untagged = append(untagged, l)
	}
}

// readLine reads one response line without its CRLF; a literal {n} at
// its end is read (and replaced by its bytes) with the rest of the line.
func (s *session) readLine() (string, error) {
	var b strings.Builder
	for {
		part, err := s.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return "", errors.New("response line too long")
		}
		if err != nil {
			return "", err
		}
		if b.Len()+len(part) > maxLine {
			return "", errors.New("response too long")
		}
		line := strings.TrimRight(string(part), "\r\n")
		n, ok := literalAtEnd(line)
		if !ok {
			b.WriteString(line)
			return b.String(), nil
		}
		if b.Len()+len(line)+n > maxLine {
			return "", errors.New("response literal too long")
		}
		b.WriteString(line[:strings.LastIndexByte(line, '{')])
		lit := make([]byte, n)
		if _, err := io.ReadFull(s.r, lit); err != nil {
			return "", err
		}
		b.WriteString(strconv.Quote(string(lit)))
	}
}

// literalAtEnd reports a literal announcement {n} (or {n+}) ending line.
func literalAtEnd(line string) (int, bool) {
	if !strings.HasSuffix(line, "}") {
		return 0, false
	}
	i := strings.LastIndexByte(line, '{')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSuffix(line[i+1:len(line)-1], "+"))
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// limit shortens server text quoted in errors.
func limit(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
