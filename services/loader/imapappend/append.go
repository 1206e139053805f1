package imapappend

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/mailferry/mailferry/shared/foldermap"
	"github.com/mailferry/mailferry/shared/imapdial"
)

// Message is one message to append.
type Message struct {
	// Flags are system flags ("\Seen") and keywords ("$Label1"); \Recent
	// is dropped because only the server sets it.
	Flags []string
	// Date becomes the INTERNALDATE; the zero time lets the server choose.
	Date time.Time
	// Size is the exact number of bytes Open's reader yields.
	Size int64
	// Open is called once, when the message's bytes are about to be sent;
	// its reader is streamed and closed, so a batch is never held in
	// memory.
	Open func() (io.ReadCloser, error)
}

// Result describes appended messages, from the APPENDUID response code
// (RFC 4315) when the server has UIDPLUS.
type Result struct {
	UIDValidity uint32
	// UIDs has one UID per message, in order: the UID the server said it
	// stored the message under, or 0 for a message that was not appended
	// or whose answer named no UID. It is nil when the server has no
	// UIDPLUS, named no UID at all, or named UIDs under different
	// UIDVALIDITYs in one batch (the folder was replaced meanwhile, so
	// none of them can be trusted).
	UIDs []uint32
}

// Append appends msgs to mailbox (a UTF-8 name, sent in modified UTF-7) in
// order.
//
// With useMulti and a server offering MULTIAPPEND, the batch is one
// command and atomic: on error nothing was appended, unless the connection
// failed after the whole command went out (AppendError.Unknown). A refusal
// seen before the command is complete ends it early: the remaining
// messages are not opened. Otherwise one APPEND
// per message is pipelined without waiting for the answers, with
// non-synchronizing literals when the server offers LITERAL+ (LITERAL- for
// small messages), else waiting for each "+". Sending stops at the first
// failure seen; an *AppendError then says which messages were appended,
// and Result holds their UIDs.
//
// Errors: an *AppendError describes partial outcomes message by message
// (its Fates); any other error (including a *ServerError refusing a
// MULTIAPPEND) means nothing was appended. Result holds the UIDs the
// server named, with or without an error. A message whose reader yields
// a byte count other than its Size aborts the connection inside its
// literal (ErrSizeMismatch).
// After a connection failure the Client is unusable: Close it and dial
// again.
func (c *Client) Append(ctx context.Context, mailbox string, msgs []Message, useMulti bool) (Result, error) {
	res, err := c.appendBatch(ctx, mailbox, msgs, useMulti)
	if err != nil {
		return res, fmt.Errorf("append to %q: %w", mailbox, err)
	}
	return res, nil
}

func (c *Client) appendBatch(ctx context.Context, mailbox string, msgs []Message, useMulti bool) (Result, error) {
	if len(msgs) == 0 {
		return Result{}, nil
	}
	if err := c.conn.Broken(); err != nil {
		return Result{}, fmt.Errorf("connection unusable: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	name := foldermap.EncodeUTF7(mailbox)
	if !imapdial.Quotable(name) {
		return Result{}, errors.New("mailbox name contains NUL, CR or LF")
	}
	s := &appendSession{
		c:        c,
		msgs:     msgs,
		mbox:     imapdial.AppendQuoted(nil, name),
		metas:    make([][]byte, len(msgs)),
		fates:    make([]Fate, len(msgs)),
		refusals: make([]*ServerError, len(msgs)),
		errs:     make([]error, len(msgs)),
		tagIdx:   make(map[string]int, len(msgs)),
		badIdx:   -1,
	}
	// Check every message before sending any, so a bad one is known
	// before its predecessors went out in a MULTIAPPEND.
	for i := range msgs {
		m := &msgs[i]
		var err error
		switch {
		case m.Open == nil:
			err = errors.New("message has no Open function")
		case m.Size < 0:
			err = fmt.Errorf("negative size %d", m.Size)
		default:
			s.metas[i], err = appendMeta(nil, m)
		}
		if err != nil {
			s.badIdx, s.badErr = i, err
			break
		}
	}
	s.g = c.conn.Watch(ctx)
	defer s.g.Stop()
	if useMulti && len(msgs) > 1 && c.conn.Has("MULTIAPPEND") {
		return s.multi()
	}
	return s.pipelined()
}

// event is what the reader goroutine hands to the writer: a continuation
// request, a tagged answer, or the read error that ended it.
type event struct {
	r   *imapdial.Response
	err error
}

// appendSession is the state of one Append call. The calling goroutine
// writes commands; one reader goroutine, started and joined by the
// session, reads answers concurrently, so the server never blocks on a
// full output buffer while the client is still sending (Dovecot stops
// reading commands when its output is not drained).
type appendSession struct {
	c     *Client
	g     *imapdial.Watchdog
	msgs  []Message
	mbox  []byte   // quoted modified UTF-7 mailbox name
	metas [][]byte // per message: "(flags) "date" "

	badIdx int // first message that failed validation, -1 if none
	badErr error

	fates    []Fate
	refusals []*ServerError // pipelined mode: the server's NO or BAD per message
	errs     []error        // why a message was not appended
	// tagIdx maps the tag of every command without an answer yet to its
	// message.
	tagIdx map[string]int
	// open is the tag of the command being written, until its final CRLF
	// is buffered: a command cut off there cannot have been stored.
	open string
	// early is set when a command is answered while still open: a server
	// refusing a command with non-synchronizing literals answers at once
	// and skips the rest of the command (RFC 7888), as Dovecot does.
	early   bool
	refused bool
	// Pipelined mode: one APPENDUID per answer.
	uids     []uint32
	validity uint32
	uidsBad  bool // APPENDUIDs under different UIDVALIDITYs
	// MULTIAPPEND mode: the arguments of the one APPENDUID.
	multiMode bool
	multiUID  string

	// Reader goroutine: want carries one token per command whose tagged
	// answer the reader must read; quit releases it from a blocked send.
	want   chan struct{}
	events chan event
	quit   chan struct{}
	done   chan struct{}
	// Written by the reader, read after done is closed.
	readerBye  string
	readerCaps *string

	lineBuf []byte
}

// startReader starts the reader goroutine for up to n commands.
func (s *appendSession) startReader(n int) {
	s.want = make(chan struct{}, n)
	// Each command yields at most one "+" per literal we wait for and one
	// tagged answer; room for both means the reader never waits on us.
	s.events = make(chan event, 2*n+4)
	s.quit = make(chan struct{})
	s.done = make(chan struct{})
	go s.read(s.c.conn.Reader())
}

func (s *appendSession) read(br *bufio.Reader) {
	defer close(s.done)
	for range s.want {
		for {
			r, err := imapdial.ReadResponse(br)
			if err != nil {
				s.send(event{err: err})
				return
			}
			if r.Kind == imapdial.Untagged {
				switch {
				case r.Word == "BYE":
					s.readerBye = r.Line
				case r.Word == "CAPABILITY":
					s.readerCaps = &r.CodeArgs
				case r.Word == "OK" && r.Code == "CAPABILITY":
					s.readerCaps = &r.CodeArgs
				}
				continue
			}
			if !s.send(event{r: r}) {
				return
			}
			if r.Kind == imapdial.Tagged {
				break
			}
		}
	}
}

func (s *appendSession) send(e event) bool {
	select {
	case s.events <- e:
		return true
	case <-s.quit:
		return false
	}
}

// stopReader joins the reader goroutine. The caller has made sure it ends:
// either every token was answered (closing want ends its loop) or the
// connection is closed (its read fails).
func (s *appendSession) stopReader() {
	close(s.want)
	close(s.quit)
	<-s.done
	if s.readerCaps != nil {
		s.c.conn.SetCaps(*s.readerCaps)
	}
	if s.readerBye != "" {
		s.c.conn.SetBye(s.readerBye)
	}
}

// abort closes the connection, so the server discards a literal it has
// only received in part, and marks the client unusable.
func (s *appendSession) abort(why error) { s.c.conn.Abort(why) }

// transport explains a connection failure, marks the client broken and
// closes the connection.
func (s *appendSession) transport(err error) error {
	err = s.g.Err(err)
	s.abort(err)
	return err
}

// withBye adds the server's farewell to a connection failure; it may only
// be called after stopReader, which publishes readerBye.
func (s *appendSession) withBye(err error) error {
	if err != nil && s.readerBye != "" {
		return fmt.Errorf("%w (server said %q)", err, s.readerBye)
	}
	return err
}

// handle applies one event outside a wait for "+"; it returns a transport
// or protocol error.
func (s *appendSession) handle(e event) error {
	if e.err != nil {
		return e.err
	}
	if e.r.Kind == imapdial.Continue {
		// Only expected while waiting for one; a stray one is harmless.
		return nil
	}
	return s.answer(e.r)
}

// answer records a tagged answer.
func (s *appendSession) answer(r *imapdial.Response) error {
	i, ok := s.tagIdx[r.Tag]
	if !ok {
		return fmt.Errorf("response to unknown tag: %q", r.Line)
	}
	delete(s.tagIdx, r.Tag)
	if r.Tag == s.open {
		s.early = true
	}
	if r.Word != "OK" {
		if s.errs[i] == nil {
			// A local error (a reader that lied about its size) is the
			// cause; the server's answer to the cut-off command is not.
			se := r.Err()
			s.errs[i] = se
			if !s.multiMode {
				// A MULTIAPPEND's refusal is about the whole command,
				// not about the message its tag is filed under.
				s.refusals[i] = se
			}
		}
		s.refused = true
		return nil
	}
	if s.multiMode {
		if r.Code == "APPENDUID" {
			s.multiUID = r.CodeArgs
		}
		return nil
	}
	s.fates[i] = Stored
	if r.Code != "APPENDUID" {
		// Stored all the same; only its UID is unknown.
		return nil
	}
	validity, uids, err := parseAppendUID(r.CodeArgs, 1)
	if err != nil {
		return nil
	}
	if s.validity != 0 && validity != s.validity {
		s.uidsBad = true
		return nil
	}
	if s.uids == nil {
		s.uids = make([]uint32, len(s.msgs))
	}
	s.validity = validity
	s.uids[i] = uids[0]
	return nil
}

// drain applies the events that have already arrived, without waiting.
func (s *appendSession) drain() error {
	for {
		select {
		case e := <-s.events:
			if err := s.handle(e); err != nil {
				return err
			}
		default:
			return nil
		}
	}
}

// waitContinue waits for the "+" for the literal of tag. It returns false
// when the server answered tag instead (refused it).
func (s *appendSession) waitContinue(tag string) (bool, error) {
	for {
		e := <-s.events
		if e.err != nil {
			return false, e.err
		}
		if e.r.Kind == imapdial.Continue {
			return true, nil
		}
		if err := s.answer(e.r); err != nil {
			return false, err
		}
		if e.r.Tag == tag {
			return false, nil
		}
	}
}

// waitAnswers waits until every command but the open one is answered.
func (s *appendSession) waitAnswers() error {
	for s.unanswered() > 0 {
		if err := s.handle(<-s.events); err != nil {
			return err
		}
	}
	return nil
}

// unanswered counts complete commands without an answer.
func (s *appendSession) unanswered() int {
	n := len(s.tagIdx)
	if _, ok := s.tagIdx[s.open]; ok {
		n--
	}
	return n
}

// literalHead appends "{n}\r\n" or "{n+}\r\n" and reports whether the
// literal is synchronizing.
func (s *appendSession) literalHead(dst []byte, n int64) ([]byte, bool) {
	dst = append(dst, '{')
	dst = strconv.AppendInt(dst, n, 10)
	// A message above APPENDLIMIT goes synchronizing even with LITERAL+,
	// so the server can refuse it (TOOBIG) before 30 MB cross the wire.
	nonSync := s.c.conn.NonSyncOK(n) && (s.c.conn.AppendLimit() == 0 || n <= s.c.conn.AppendLimit())
	if nonSync {
		dst = append(dst, '+')
	}
	return append(dst, "}\r\n"...), !nonSync
}

// pipelined sends one APPEND per message without waiting for answers.
func (s *appendSession) pipelined() (Result, error) {
	c, bw := s.c, s.c.conn.Writer()
	s.startReader(len(s.msgs))
	var failure error // transport or protocol failure
	incomplete := -1  // message whose literal was cut off
	for i := range s.msgs {
		if failure = s.drain(); failure != nil {
			break
		}
		if s.refused {
			// Stop at the first refusal: what follows may fail alike
			// (quota), and the caller retries from the failed message.
			break
		}
		if i == s.badIdx {
			s.errs[i] = s.badErr
			break
		}
		m := &s.msgs[i]
		rc, err := m.Open()
		if err != nil {
			s.errs[i] = fmt.Errorf("open message: %w", err)
			break
		}
		tag := c.conn.NextTag()
		s.tagIdx[tag] = i
		s.open = tag
		s.want <- struct{}{}
		line := append(s.lineBuf[:0], tag...)
		line = append(line, " APPEND "...)
		line = append(line, s.mbox...)
		line = append(line, ' ')
		line = append(line, s.metas[i]...)
		line, sync := s.literalHead(line, m.Size)
		s.lineBuf = line
		bw.Write(line)
		if sync {
			if err := bw.Flush(); err != nil {
				rc.Close()
				failure = err
				break
			}
			ok, err := s.waitContinue(tag)
			if err != nil || !ok {
				if err == nil {
					// Refused instead of "+": the command is over and
					// the connection in sync.
					s.open = ""
				}
				rc.Close()
				failure = err
				break
			}
		}
		local, err := copyLiteral(bw, rc, m.Size)
		rc.Close()
		if local != nil {
			s.errs[i] = local
			incomplete = i
			break
		}
		if err != nil {
			failure = err
			break
		}
		bw.WriteString("\r\n")
		s.open = ""
	}
	if failure == nil {
		if err := bw.Flush(); err != nil {
			failure = err
		}
	}
	if failure == nil {
		// A command cut off inside its literal (incomplete) is never
		// answered: the server waits for the rest until the connection
		// closes. The ones before it are complete and get answers.
		failure = s.waitAnswers()
	}
	if failure != nil {
		failure = s.transport(failure)
	} else if incomplete >= 0 {
		s.abort(fmt.Errorf("connection aborted inside message %d: %w", incomplete, s.errs[incomplete]))
	}
	unknown := false
	if failure != nil {
		// Complete commands without an answer may have been stored; the
		// open one was cut off and cannot have been.
		for tag, i := range s.tagIdx {
			if tag != s.open {
				s.fates[i] = Unanswered
				unknown = true
			}
		}
	}
	s.stopReader()
	return s.outcome(s.withBye(failure), unknown)
}

// outcome builds the result of a pipelined batch.
func (s *appendSession) outcome(failure error, unknown bool) (Result, error) {
	var res Result
	if s.uids != nil && !s.uidsBad && s.c.conn.Has("UIDPLUS") {
		res = Result{UIDValidity: s.validity, UIDs: s.uids}
	}
	first := -1
	for i, f := range s.fates {
		if f != Stored {
			first = i
			break
		}
	}
	if first < 0 {
		return res, nil
	}
	err := s.errs[first]
	if err == nil {
		err = failure
	}
	if err == nil {
		// Not reached: an unappended message either failed or was not
		// sent because of a failure recorded above.
		err = errors.New("not sent")
	}
	return res, s.appendError(first, err, unknown)
}

// appendError reports the batch's outcome message by message.
func (s *appendSession) appendError(index int, err error, unknown bool) *AppendError {
	e := &AppendError{Index: index, Err: err, Appended: make([]bool, len(s.fates)), Unknown: unknown,
		Fates: s.fates, Refusals: s.refusals}
	for i, f := range s.fates {
		e.Appended[i] = f == Stored
	}
	return e
}

// multi sends the batch as one MULTIAPPEND command.
func (s *appendSession) multi() (Result, error) {
	c, bw := s.c, s.c.conn.Writer()
	if s.badIdx >= 0 {
		return Result{}, s.appendError(s.badIdx, s.badErr, false)
	}
	s.multiMode = true
	s.startReader(1)
	tag := c.conn.NextTag()
	s.tagIdx[tag] = 0
	s.open = tag
	s.want <- struct{}{}
	line := append(s.lineBuf[:0], tag...)
	line = append(line, " APPEND "...)
	line = append(line, s.mbox...)
	bw.Write(line)

	// Until the final CRLF the command is incomplete, and a server cannot
	// commit it: any failure before then leaves nothing appended.
	fail := func(i int, err error, known bool) (Result, error) {
		if known {
			s.abort(fmt.Errorf("connection aborted inside message %d: %w", i, err))
			s.stopReader()
			return Result{}, s.appendError(i, err, false)
		}
		err = s.transport(err)
		s.stopReader()
		return Result{}, s.withBye(err)
	}
	nonSyncSent := false
	for i := range s.msgs {
		m := &s.msgs[i]
		if err := s.drain(); err != nil {
			return fail(i, err, false)
		}
		if s.early {
			// Refused already: the server skips the rest of the command,
			// so end it here instead of sending the remaining messages.
			break
		}
		rc, err := m.Open()
		if err != nil {
			return fail(i, fmt.Errorf("open message: %w", err), true)
		}
		line = append(line[:0], ' ')
		line = append(line, s.metas[i]...)
		line, sync := s.literalHead(line, m.Size)
		bw.Write(line)
		if sync {
			if err := bw.Flush(); err != nil {
				rc.Close()
				return fail(i, err, false)
			}
			ok, err := s.waitContinue(tag)
			if err != nil {
				rc.Close()
				return fail(i, err, false)
			}
			if !ok {
				// The server refused a literal and ended the command:
				// nothing was stored.
				rc.Close()
				if nonSyncSent {
					// The refusal may be of an earlier non-synchronizing
					// literal, the server skipping the rest of the command
					// and maybe waiting for this literal's bytes: the
					// connection's state is unclear.
					s.abort(fmt.Errorf("connection given up after a refusal inside MULTIAPPEND: %w", s.errs[0]))
					s.stopReader()
					return Result{}, s.errs[0]
				}
				s.stopReader()
				return Result{}, s.appendError(i, s.errs[0], false)
			}
		}
		nonSyncSent = nonSyncSent || !sync
		local, err := copyLiteral(bw, rc, m.Size)
		rc.Close()
		if local != nil {
			return fail(i, local, true)
		}
		if err != nil {
			return fail(i, err, false)
		}
	}
	bw.WriteString("\r\n")
	s.open = ""
	err := bw.Flush()
	if err == nil {
		err = s.waitAnswers()
	}
	if err != nil {
		// The command may have reached the server whole and been
		// committed before the connection failed.
		err = s.transport(err)
		s.stopReader()
		for i := range s.fates {
			s.fates[i] = Unanswered
		}
		return Result{}, s.appendError(0, s.withBye(err), true)
	}
	s.stopReader()
	if s.errs[0] != nil {
		return Result{}, s.errs[0]
	}
	for i := range s.fates {
		s.fates[i] = Stored
	}
	return s.multiResult(), nil
}

// multiResult reads the APPENDUID of a MULTIAPPEND, which names one UID per
// message. A missing or odd code leaves UIDs nil: the messages are stored
// all the same, so it is no error.
func (s *appendSession) multiResult() Result {
	if !s.c.conn.Has("UIDPLUS") || s.multiUID == "" {
		return Result{}
	}
	validity, uids, err := parseAppendUID(s.multiUID, len(s.msgs))
	if err != nil || len(uids) != len(s.msgs) {
		return Result{}
	}
	return Result{UIDValidity: validity, UIDs: uids}
}

// copyLiteral streams exactly size bytes of r into w. It returns a local
// error when r fails or yields more or fewer bytes, and otherwise the
// write error. The last byte is held back until r has shown its end, so a
// reader with extra bytes never completes the literal: the server cannot
// store a truncated message.
func copyLiteral(w *bufio.Writer, r io.Reader, size int64) (local, write error) {
	src := &errReader{r: r}
	if size > 1 {
		n, err := io.CopyN(w, src, size-1)
		if src.err != nil {
			return fmt.Errorf("read message: %w", src.err), nil
		}
		if n < size-1 {
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, err
			}
			return fmt.Errorf("%w: reader ended after %d of %d bytes", ErrSizeMismatch, n, size), nil
		}
		if err != nil {
			return nil, err
		}
	}
	var last [1]byte
	if size > 0 {
		if _, err := io.ReadFull(src, last[:]); err != nil {
			if src.err != nil {
				return fmt.Errorf("read message: %w", src.err), nil
			}
			return fmt.Errorf("%w: reader ended after %d of %d bytes", ErrSizeMismatch, size-1, size), nil
		}
	}
	end, err := atEOF(src)
	if err != nil {
		return fmt.Errorf("read message: %w", err), nil
	}
	if !end {
		return fmt.Errorf("%w: reader has more than %d bytes", ErrSizeMismatch, size), nil
	}
	if size > 0 {
		if err := w.WriteByte(last[0]); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// errReader remembers the reader's own error, to tell it from a write
// error inside io.CopyN.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		e.err = err
	}
	return n, err
}

// atEOF reports whether r has no more bytes.
func atEOF(r io.Reader) (bool, error) {
	var b [1]byte
	for range 100 {
		n, err := r.Read(b[:])
		if n > 0 {
			return false, nil
		}
		if errors.Is(err, io.EOF) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
	return false, io.ErrNoProgress
}
