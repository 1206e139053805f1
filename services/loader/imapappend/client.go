// Package imapappend is a small IMAP client that only appends, built for
// the loader's throughput: RFC 3502 MULTIAPPEND puts a whole batch into
// one server transaction (one index and uidlist update with its fsyncs on
// Dovecot instead of one per message), and without it APPEND commands are
// pipelined with RFC 7888 non-synchronizing literals. Message bodies are
// streamed from their readers, never held in memory, and a reader that
// yields more or fewer bytes than announced aborts the connection inside
// the literal, so no truncated or padded message is ever stored.
//
// Connecting, TLS, login and the stall watchdog are imapdial's: a Client
// works on a connection imapdial.DialConn set up.
package imapappend

import (
	"context"

	"github.com/mailferry/mailferry/shared/imapdial"
)

// Client is one logged-in IMAP connection used for appends. It is not
// safe for concurrent use, except that Close may be called at any time to
// abort.
type Client struct {
	conn *imapdial.Conn
}

// New takes over conn, logged in by imapdial.DialConn, for appends. Its
// Options.CommandTimeout bounds how long an append may move no byte.
func New(conn *imapdial.Conn) *Client { return &Client{conn: conn} }

// Caps returns the capabilities the server announced after login.
func (c *Client) Caps() []string { return c.conn.Caps() }

// Has reports whether the server announced capability, ignoring case. A
// name without "=" also matches its valued forms, so Has("APPENDLIMIT")
// is true for "APPENDLIMIT=35651584".
func (c *Client) Has(capability string) bool { return c.conn.Has(capability) }

// AppendLimit returns the server-wide APPENDLIMIT=n (RFC 7889) in bytes,
// or 0 when the server announced none.
func (c *Client) AppendLimit() int64 { return c.conn.AppendLimit() }

// Logout ends the session politely and closes the connection.
func (c *Client) Logout(ctx context.Context) error { return c.conn.Logout(ctx) }

// Broken reports whether the connection can no longer carry commands;
// a broken Client must be closed and dialled again.
func (c *Client) Broken() bool { return c.conn.Broken() != nil }

// Close closes the connection without logging out. It may be called
// concurrently with a running Append to abort it, and more than once.
func (c *Client) Close() error { return c.conn.Close() }
