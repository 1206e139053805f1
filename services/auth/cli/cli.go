// Package cli is the auth service's commands of the mailferry CLI: users
// import and list, provision, and auth (the sign-in and change-password
// service).
package cli

import (
	"context"
	"encoding/json"
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
	"github.com/mailferry/mailferry/shared/command"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/daemon"
	"github.com/mailferry/mailferry/shared/logging"
	"github.com/mailferry/mailferry/shared/mailenable"
	"github.com/mailferry/mailferry/shared/metrics"
)

// ErrUsage matches (errors.Is) the error of a command line that could not
// be understood.
var ErrUsage = command.ErrUsage

// Commands are the auth service's commands, for the mailferry binary's
// table.
var Commands = []*command.Command{
	{
		Name:      "users import",
		UsageLine: "[-c FILE] -file users.csv [-json]",
		Short:     "import accounts (columns email,role,legacy_hash)",
		Long: `Users import loads accounts from a CSV file with the header
email,role,legacy_hash; legacy_hash is the old platform's hash
({SHA512-CRYPT}...) or empty. Importing again updates changed accounts and
keeps passwords users have set since. Every bad line is reported.`,
		Setup: usersImport,
	},
	{
		Name:      "users import-mailenable",
		UsageLine: "[-c FILE] -auth-tab AUTH.TAB [-postoffice-map FILE] [-json]",
		Short:     "import MailEnable's accounts: mailboxes file, source passwords, auth accounts",
		Long: `Users import-mailenable reads MailEnable's Config\AUTH.TAB (copied here,
mode 0600: a file others may read is refused) and writes what a migration
from it needs: the mailboxes file mailboxes.file names (source_user
mailbox@postoffice, target_user mailbox@domain), each source password in a
file of its own (source-passwords/ beside it, mode 0600), and the auth
accounts (email-only, the current password as a legacy hash). A post
office whose mail domain is another name is mapped by -postoffice-map (one
"postoffice domain" per line). Lines without a usable password are listed:
those users prove their password at sign-in. Running it again rewrites
the files to match AUTH.TAB and keeps passwords users have set since.`,
		Setup: usersImportMailEnable,
	},
	{
		Name:      "users list",
		UsageLine: "[-c FILE] [-json]",
		Short:     "list accounts: role, provisioned, password updated",
		Long: `Users list shows every account's role, whether it has a legacy hash,
whether its mailbox is provisioned and when its password was updated; never
a hash.`,
		Setup: usersList,
	},
	{
		Name:      "provision",
		UsageLine: "[-c FILE] [-json]",
		Short:     "create every imported mailbox at the target provider",
		Long: `Provision creates every imported mailbox at the target provider (dovecot or
opensrs) and announces mailbox.provisioned and, once a domain's mailboxes
all exist, domain.provisioned. Running it again creates only what is missing.`,
		Setup: runProvision,
	},
	{
		Name:      "auth",
		UsageLine: "[-c FILE]",
		Short:     "run the sign-in and change-password service",
		Long: `Auth serves the sign-in notice and the change-password page and API until
SIGINT or SIGTERM; services/auth/README.md explains the endpoints.`,
		Setup: runAuth,
	},
}

// Main runs one command of Commands as the mailferry binary does: cmd is
// "users", "provision" or "auth", args what follows it.
func Main(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	p := &command.Program{Name: "mailferry", Commands: Commands}
	return p.Run(ctx, append([]string{cmd}, args...), stdout, stderr)
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
		return nil, &command.ConfigError{Err: err}
	}
	// The auth section is checked before anything is opened, as the
	// shared sections are.
	if _, err := authconfig.Load(cfg); err != nil {
		return nil, &command.ConfigError{Err: err}
	}
	log, err := logging.New(stderr, cfg.Log.Level, cfg.Log.Format, auth.ServiceName)
	if err != nil {
		return nil, &command.ConfigError{Err: err}
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

func usersImport(fs *flag.FlagSet) command.Run {
	path := command.ConfigFlag(fs)
	file := fs.String("file", "", "users CSV: header email,role,legacy_hash")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	return func(ctx context.Context, stdout, stderr io.Writer) error {
		return importUsers(ctx, *path, *file, *asJSON, stdout, stderr)
	}
}

func importUsers(ctx context.Context, path, file string, asJSON bool, stdout, stderr io.Writer) error {
	if file == "" {
		return command.Usagef("pass -file users.csv")
	}
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	defer f.Close()
	c, err := open(ctx, path, stderr)
	if err != nil {
		return err
	}
	defer c.b.Close()
	res, err := auth.Import(ctx, c.cfg, c.b, f)
	if err != nil {
		return fmt.Errorf("import %s: %w", file, err)
	}
	c.log.Info().Int("created", res.Created).Int("updated", res.Updated).Int("unchanged", res.Unchanged).Int("kept", res.Kept).Msg("users imported")
	if asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	_, err = fmt.Fprintf(stdout, "imported %d users: %d created, %d updated, %d unchanged, %d kept their new password\n",
		res.Created+res.Updated+res.Unchanged+res.Kept, res.Created, res.Updated, res.Unchanged, res.Kept)
	return err
}

func usersImportMailEnable(fs *flag.FlagSet) command.Run {
	path := command.ConfigFlag(fs)
	authTab := fs.String("auth-tab", "", "MailEnable's AUTH.TAB (mode 0600)")
	offices := fs.String("postoffice-map", "", `post office to mail domain, one "postoffice domain" per line`)
	asJSON := fs.Bool("json", false, "print the result as JSON")
	return func(ctx context.Context, stdout, stderr io.Writer) error {
		if *authTab == "" {
			return command.Usagef("pass -auth-tab AUTH.TAB")
		}
		accounts, err := mailenable.ReadAuthTab(*authTab)
		if err != nil {
			return err
		}
		po := mailenable.PostOffices{}
		if *offices != "" {
			raw, err := os.ReadFile(*offices)
			if err != nil {
				return fmt.Errorf("post office map: %w", err)
			}
			if po, err = mailenable.ParsePostOffices(raw); err != nil {
				return err
			}
		}
		c, err := open(ctx, *path, stderr)
		if err != nil {
			return err
		}
		defer c.b.Close()
		res, err := auth.ImportMailEnable(ctx, c.cfg, c.b, accounts, po)
		if err != nil {
			return fmt.Errorf("import %s: %w", *authTab, err)
		}
		c.log.Info().Int("mailboxes", res.Mailboxes).Int("passwords", res.Passwords).Int("need_sign_in", len(res.NeedSignIn)).Msg("MailEnable accounts imported")
		if *asJSON {
			return json.NewEncoder(stdout).Encode(res)
		}
		fmt.Fprintf(stdout, "%d mailboxes written to %s, %d with their source password; accounts: %d created, %d updated, %d unchanged, %d kept their new password\n",
			res.Mailboxes, c.cfg.Mailboxes.File, res.Passwords, res.Accounts.Created, res.Accounts.Updated, res.Accounts.Unchanged, res.Accounts.Kept)
		for _, u := range res.NeedSignIn {
			fmt.Fprintf(stdout, "needs sign-in  %s (AUTH.TAB holds no usable password)\n", u)
		}
		return nil
	}
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

func usersList(fs *flag.FlagSet) command.Run {
	path := command.ConfigFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON lines")
	return func(ctx context.Context, stdout, stderr io.Writer) error {
		return listUsers(ctx, *path, *asJSON, stdout, stderr)
	}
}

func listUsers(ctx context.Context, path string, asJSON bool, stdout, stderr io.Writer) error {
	c, err := open(ctx, path, stderr)
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
	if asJSON {
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

func runProvision(fs *flag.FlagSet) command.Run {
	path := command.ConfigFlag(fs)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	return func(ctx context.Context, stdout, stderr io.Writer) error {
		return provisionAll(ctx, *path, *asJSON, stdout, stderr)
	}
}

func provisionAll(ctx context.Context, path string, asJSON bool, stdout, stderr io.Writer) error {
	c, err := open(ctx, path, stderr)
	if err != nil {
		return err
	}
	defer c.b.Close()
	rep, runErr := auth.Provision(ctx, c.cfg, c.b, c.log)
	if asJSON {
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

func runAuth(fs *flag.FlagSet) command.Run {
	path := command.ConfigFlag(fs)
	return func(ctx context.Context, _, _ io.Writer) error {
		cfg, err := config.Load(*path)
		if err != nil {
			return &command.ConfigError{Err: err}
		}
		// The life every daemon has (daemon.Run): metrics and health
		// listener, broker connection, a refusal explained.
		return daemon.Run(ctx, auth.ServiceName, cfg, auth.CheckConfig, func(ctx context.Context, cfg *config.Config, b *broker.Broker, log zerolog.Logger, m *metrics.Metrics) error {
			svc := &auth.Service{Config: cfg, Broker: b, Log: log, Metrics: m}
			return svc.Run(ctx)
		})
	}
}
