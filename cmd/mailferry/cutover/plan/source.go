package plan

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/imapdial"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/sourcecred"
)

// ReadMailbox counts mb's folders, messages and bytes on the source
// server: it logs in as the extractor does (imapdial, the master user or
// the mailbox's password file), LISTs every folder and asks each
// selectable one for STATUS (MESSAGES, and SIZE when the server
// advertises STATUS=SIZE or IMAP4rev2), pipelined; it never SELECTs or
// FETCHes. Without SIZE the mailbox's bytes are unknown: BytesEstimated is
// set and Make fills them in from the mean message size. An error is in
// the result, with the mailbox named.
func ReadMailbox(ctx context.Context, cfg *config.Config, mb job.Mailbox) Mailbox {
	return readMailboxGuarded(ctx, cfg, mb, nil, nil)
}

// readMailboxGuarded is ReadMailbox with its login limited by guard (the
// source's refused logins, shared with the extractors; nil: none), a
// mailbox without a password file logging in with the credential its
// user handed over (read through creds; nil: none).
func readMailboxGuarded(ctx context.Context, cfg *config.Config, mb job.Mailbox, guard imapdial.LoginGuard, creds jetstream.JetStream) Mailbox {
	m := Mailbox{Mailbox: mb.SourceUser}
	if err := readMailbox(ctx, cfg, mb, guard, creds, &m); err != nil {
		// One line: errors.Join and imapdial's refusals join with newlines.
		m = Mailbox{Mailbox: mb.SourceUser, Error: strings.ReplaceAll(err.Error(), "\n", "; ")}
	}
	return m
}

func readMailbox(ctx context.Context, cfg *config.Config, mb job.Mailbox, guard imapdial.LoginGuard, creds jetstream.JetStream, m *Mailbox) error {
	cred, err := sourcecred.CredentialsFor(ctx, creds, cfg, mb.SourceUser, mb.SourcePasswordFile)
	if err != nil {
		return err
	}
	c, err := imapdial.DialGuarded(ctx, cfg.Source, cred, nil, nil, guard)
	if err != nil {
		return err
	}
	defer c.Close()
	wd := imapdial.Watch(ctx, c, cfg.Source.CommandTimeout.Std())
	defer wd.Stop()
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		return fmt.Errorf("list folders: %w", wd.Err(err))
	}
	wd.Kick()
	caps := c.Caps()
	withSize := caps.Has(imap.CapStatusSize) || caps.Has(imap.CapIMAP4rev2)
	if !withSize {
		// A server without STATUS=SIZE gives no bytes anyway: count with
		// EXAMINE, which every IMAP4rev1 server must take, instead of
		// STATUS, which old legacy servers (MailEnable:
		// CVE-2005-3690) are known to crash on.
		return examineFolders(ctx, c, list, wd, m)
	}
	opts := &imap.StatusOptions{NumMessages: true, Size: withSize}
	type pending struct {
		folder string
		cmd    *imapclient.StatusCommand
	}
	var cmds []pending
	for _, l := range list {
		if slices.Contains(l.Attrs, imap.MailboxAttrNoSelect) || slices.Contains(l.Attrs, imap.MailboxAttrNonExistent) {
			continue
		}
		cmds = append(cmds, pending{l.Mailbox, c.Status(l.Mailbox, opts)})
	}
	var errs []error
	for _, p := range cmds {
		st, err := p.cmd.Wait()
		wd.Kick()
		if err != nil {
			errs = append(errs, fmt.Errorf("status of folder %q: %w", p.folder, wd.Err(err)))
			continue
		}
		m.Folders++
		if st.NumMessages != nil {
			m.Messages += int64(*st.NumMessages)
		}
		if st.Size != nil {
			m.Bytes += *st.Size
		} else {
			m.BytesEstimated = true
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if m.BytesEstimated {
		m.Bytes = 0
	}
	_ = c.Logout().Wait()
	return nil
}

// examineFolders counts the messages of every selectable folder with a
// read-only EXAMINE, one after the other; the bytes are left to Make's
// estimate.
func examineFolders(ctx context.Context, c *imapclient.Client, list []*imap.ListData, wd *imapdial.Watchdog, m *Mailbox) error {
	var errs []error
	for _, l := range list {
		if slices.Contains(l.Attrs, imap.MailboxAttrNoSelect) || slices.Contains(l.Attrs, imap.MailboxAttrNonExistent) {
			continue
		}
		sel, err := c.Select(l.Mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
		wd.Kick()
		if err != nil {
			errs = append(errs, fmt.Errorf("examine folder %q: %w", l.Mailbox, wd.Err(err)))
			continue
		}
		m.Folders++
		m.Messages += int64(sel.NumMessages)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	m.BytesEstimated, m.Bytes = true, 0
	_ = c.Logout().Wait()
	return ctx.Err()
}
