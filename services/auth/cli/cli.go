// Package cli runs the auth service's commands of the mailferry CLI:
//
//	mailferry users import -c FILE --file users.csv   load accounts (email,role,legacy_hash)
//	mailferry users list   -c FILE [-json]            show accounts and their progress
//	mailferry provision    -c FILE [-json]            create every mailbox at the target
//	mailferry auth         -c FILE                    serve sign-in and password changes
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/mailferry/mailferry/services/auth/authconfig"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/services/auth"
	"github.com/mailferry/mailferry/services/auth/account"
	"github.com/mailferry/mailferry/services/auth/provision"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/logging"
)

// Usage lists the commands, for the mailferry CLI's help.
const Usage = `  users import -c FILE --file users.csv  import accounts (columns email,role,legacy_hash)
  users list   -c FILE [-json]           list accounts: role, provisioned, password updated
  provision    -c FILE [-json]           create every imported mailbox at the target provider
  auth         -c FILE                   run the sign-in and change-password service
`

// ErrUsage marks a command line that could not be understood.
var ErrUsage = errors.New("usage")

// Main runs one command: cmd is "users", "provision" or "auth", args what
// follows it.
func Main(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	switch cmd {
	case "users":
		if len(args) == 0 {
			fmt.Fprint(stderr, Usage)
			return fmt.Errorf("%w: users needs a subcommand (import, list)", ErrUsage)
		}
		switch args[0] {
		case "import":
			return usersImport(ctx, args[1:], stdout, stderr)
		case "list":
			return usersList(ctx, args[1:], stdout, stderr)
		}
		fmt.Fprint(stderr, Usage)
		return fmt.Errorf("%w: unknown users subcommand %q", ErrUsage, args[0])
	case "provision":
		return runProvision(ctx, args, stdout, stderr)
	case "auth":
		return runAuth(ctx, args, stderr)
	}
	fmt.Fprint(stderr, Usage)
	return fmt.Errorf("%w: unknown command %q", ErrUsage, cmd)
}

// common holds what every command opens.
type common struct {
	cfg *config.Config
	log zerolog.Logger
	b   *broker.Broker
}

func open(ctx context.Context, path string, stderr io.Writer) (*common, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	// The auth section is checked before anything is opened, as the
	// shared sections are.
	if _, err := authconfig.Load(cfg); err != nil {
		return nil, err
	}
	log, err := logging.New(stderr, cfg.Log.Level, cfg.Log.Format, auth.ServiceName)
	if err != nil {
		return nil, err
	}
	b, err := broker.Connect(ctx, cfg.NATS, "mailferry-"+auth.ServiceName, log)
	if err != nil {
		return nil, err
	}
	if err := b.Use(ctx, auth.Needs); err != nil {
		b.Close()
		return nil, err
	}
	return &common{cfg: cfg, log: log, b: b}, nil
}

func newFlags(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs, fs.String("c", "mailferry.yaml", "configuration file")
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", ErrUsage, fs.Args())
	}
	return nil
}

func usersImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, path := newFlags("users import", stderr)
	file := fs.String("file", "", "users CSV: header email,role,legacy_hash")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *file == "" {
		return fmt.Errorf("%w: users import needs --file users.csv", ErrUsage)
	}
	f, err := os.Open(*file)
	if err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	defer f.Close()
	c, err := open(ctx, *path, stderr)
	if err != nil {
		return err
	}
	defer c.b.Close()
	res, err := auth.Import(ctx, c.cfg, c.b, f)
	if err != nil {
		return fmt.Errorf("import %s: %w", *file, err)
	}
	c.log.Info().Int("created", res.Created).Int("updated", res.Updated).Int("unchanged", res.Unchanged).Int("kept", res.Kept).Msg("users imported")
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	_, err = fmt.Fprintf(stdout, "imported %d users: %d created, %d updated, %d unchanged, %d kept their new password\n",
		res.Created+res.Updated+res.Unchanged+res.Kept, res.Created, res.Updated, res.Unchanged, res.Kept)
	return err
}

// listed is one account as users list shows it: no hash.
type listed struct {
	Email             string `json:"email"`
	Role              string `json:"role"`
	HasHash           bool   `json:"has_hash"`
	Provisioned       bool   `json:"provisioned"`
	PasswordUpdated   bool   `json:"password_updated"`
	PasswordUpdatedAt string `json:"password_updated_at,omitempty"`
}

func usersList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, path := newFlags("users list", stderr)
	asJSON := fs.Bool("json", false, "print JSON lines")
	if err := parse(fs, args); err != nil {
		return err
	}
	c, err := open(ctx, *path, stderr)
	if err != nil {
		return err
	}
	defer c.b.Close()
	store, err := auth.Accounts(ctx, c.cfg, c.b)
	if err != nil {
		return err
	}
	accounts, err := store.List(ctx)
	if err != nil {
		return err
	}
	rows := make([]listed, len(accounts))
	for i, a := range accounts {
		rows[i] = toListed(a)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, r := range rows {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EMAIL\tROLE\tHASH\tPROVISIONED\tPASSWORD UPDATED")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Email, r.Role, yesNo(r.HasHash), yesNo(r.Provisioned), orNo(r.PasswordUpdatedAt))
	}
	return tw.Flush()
}

func toListed(a *account.Account) listed {
	l := listed{Email: a.Email, Role: a.Role, HasHash: a.Hash != "", Provisioned: a.Provisioned(), PasswordUpdated: !a.PasswordUpdateRequired()}
	if l.PasswordUpdated {
		l.PasswordUpdatedAt = a.PasswordUpdatedAt.Format("2006-01-02 15:04:05Z07:00")
	}
	return l
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orNo(s string) string {
	if s == "" {
		return "no"
	}
	return s
}

func runProvision(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, path := newFlags("provision", stderr)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	c, err := open(ctx, *path, stderr)
	if err != nil {
		return err
	}
	defer c.b.Close()
	rep, runErr := auth.Provision(ctx, c.cfg, c.b, c.log)
	if *asJSON {
		if err := json.NewEncoder(stdout).Encode(rep); err != nil {
			return err
		}
	} else {
		printReport(stdout, rep)
	}
	return runErr
}

func printReport(w io.Writer, rep provision.Report) {
	fmt.Fprintf(w, "mailboxes: %d (%d created now, %d already provisioned, %d failed)\n",
		rep.Mailboxes, rep.Created, rep.Already, len(rep.Failed))
	for _, f := range rep.Failed {
		fmt.Fprintf(w, "  failed %s: %s\n", f.Email, f.Reason)
	}
	if rep.Tokens > 0 {
		fmt.Fprintf(w, "migration tokens written: %d\n", rep.Tokens)
	}
	for _, d := range rep.Domains {
		fmt.Fprintf(w, "domain provisioned: %s\n", d)
	}
	for _, d := range rep.DomainsOpen {
		fmt.Fprintf(w, "domain incomplete: %s\n", d)
	}
}

func runAuth(ctx context.Context, args []string, stderr io.Writer) error {
	fs, path := newFlags("auth", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	c, err := open(ctx, *path, stderr)
	if err != nil {
		return err
	}
	defer c.b.Close()
	svc := &auth.Service{Config: c.cfg, Broker: c.b, Log: c.log}
	err = svc.Run(ctx)
	if ctx.Err() != nil && err == nil {
		return nil
	}
	return err
}
