package imapappend

import (
	"errors"
	"fmt"

	"github.com/mailferry/mailferry/shared/imapdial"
)

// ServerError is a NO or BAD answer of the server; it is imapdial's, so a
// refused login and a refused append are inspected alike.
type ServerError = imapdial.ServerError

// Fate is what became of one message of a batch, as far as the server's
// answers tell.
type Fate uint8

const (
	// NotStored: the server refused the message (alone, or the MULTIAPPEND
	// holding it), or it never reached the server whole.
	NotStored Fate = iota
	// Stored: the server answered OK.
	Stored
	// Unanswered: the message went out whole, but the connection failed
	// before its answer came: the server may or may not have stored it.
	Unanswered
)

// String names the fate for logs.
func (f Fate) String() string {
	switch f {
	case Stored:
		return "stored"
	case Unanswered:
		return "unanswered"
	}
	return "not stored"
}

// AppendError reports a batch that was not appended whole, message by
// message, so the caller can retry exactly what is missing.
//
// In pipelined mode the messages before Index were appended. Commands
// already on the wire when the first failure became known still complete,
// so messages after Index may have been appended too (Dovecot does store
// them): Fates tells. In MULTIAPPEND mode no message is Stored; Index
// names the message that could not be sent (it failed to open, yielded the
// wrong number of bytes, or the server refused its literal), or is 0 with
// every message Unanswered when the connection failed after the whole
// command was sent.
type AppendError struct {
	// Index is the first message that was not appended.
	Index int
	// Err says why message Index was not appended: a *ServerError when the
	// server refused it, otherwise the local or connection error.
	Err error
	// Fates has one entry per message of the batch: what the server's
	// answers say became of it.
	Fates []Fate
	// Refusals has one entry per message: in pipelined mode the server's
	// NO or BAD to that message's own APPEND, else nil. (A refused
	// MULTIAPPEND names no message: its refusal is Err.)
	Refusals []*ServerError
	// Appended has one entry per message of the batch: true when the server
	// confirmed that message (Fates[i] == Stored).
	Appended []bool
	// Unknown is set when some message is Unanswered.
	Unknown bool
}

// Error names the failed message and the cause.
func (e *AppendError) Error() string {
	n := 0
	for _, ok := range e.Appended {
		if ok {
			n++
		}
	}
	s := fmt.Sprintf("message %d of %d: %v (%d appended", e.Index, len(e.Appended), e.Err, n)
	if e.Unknown {
		s += ", others unknown"
	}
	return s + ")"
}

// Unwrap returns Err, so errors.As finds a *ServerError inside.
func (e *AppendError) Unwrap() error { return e.Err }

// ErrSizeMismatch is wrapped when a message's reader yields a number of
// bytes other than its Size. The connection is then aborted inside the
// message's literal, so the server stores nothing of it.
var ErrSizeMismatch = errors.New("message size mismatch")
