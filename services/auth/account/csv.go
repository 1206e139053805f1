package account

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mailferry/mailferry/services/auth/passhash"
)

// Columns of users.csv, in this order, as its header row.
var Columns = []string{"email", "role", "legacy_hash"}

// Row is one line of users.csv.
type Row struct {
	Line       int
	Email      string
	Role       string
	LegacyHash string
}

// ReadCSV parses users.csv: a header row email,role,legacy_hash, then one
// user per line. It checks every line and reports all bad ones together
// (by line number and reason; a hash is never quoted).
func ReadCSV(r io.Reader) ([]Row, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = len(Columns)
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("users csv header: %w", err)
	}
	for i, c := range Columns {
		if strings.TrimPrefix(strings.ToLower(strings.TrimSpace(header[i])), "\ufeff") != c {
			return nil, fmt.Errorf("users csv header: column %d is %q, want %s", i+1, header[i], strings.Join(Columns, ","))
		}
	}
	var (
		rows []Row
		errs []error
		seen = map[string]int{}
	)
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) && pe.Err == csv.ErrFieldCount {
				errs = append(errs, fmt.Errorf("line %d: want %d columns", pe.Line, len(Columns)))
				continue
			}
			return nil, fmt.Errorf("users csv: %w", err)
		}
		row, err := parseRow(line, rec)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if first, dup := seen[row.Email]; dup {
			errs = append(errs, fmt.Errorf("line %d: %s already on line %d", line, row.Email, first))
			continue
		}
		seen[row.Email] = line
		rows = append(rows, row)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("users csv: %w", errors.Join(errs...))
	}
	return rows, nil
}

func parseRow(line int, rec []string) (Row, error) {
	email, err := NormalizeEmail(rec[0])
	if err != nil {
		return Row{}, fmt.Errorf("line %d: email %q: %w", line, rec[0], err)
	}
	role := strings.ToLower(strings.TrimSpace(rec[1]))
	if err := ValidRole(role); err != nil {
		return Row{}, fmt.Errorf("line %d: %w", line, err)
	}
	hash := strings.TrimSpace(rec[2])
	if hash != "" {
		if _, err := passhash.Parse(hash); err != nil {
			// Parse errors name the scheme at most, never the hash.
			return Row{}, fmt.Errorf("line %d: legacy_hash: %w", line, err)
		}
	}
	return Row{Line: line, Email: email, Role: role, LegacyHash: hash}, nil
}

// ImportResult counts what an import did.
type ImportResult struct {
	Created   int `json:"created"`
	Updated   int `json:"updated"`
	Unchanged int `json:"unchanged"`
	// Kept counts users who already set a new password: their hash is
	// theirs now, not the legacy platform's.
	Kept int `json:"kept"`
}

// Import writes rows into the store. A new user gets the row as is. An
// existing one gets the row's role and, until the user has set a new
// password, the row's hash when it has one (the legacy platform is the
// truth until then).
func (s *Store) Import(ctx context.Context, rows []Row, now time.Time) (ImportResult, error) {
	var res ImportResult
	for _, r := range rows {
		var outcome *int
		created, err := s.Upsert(ctx, r.Email,
			func() *Account {
				return &Account{Email: r.Email, Domain: Domain(r.Email), Role: r.Role, Hash: r.LegacyHash, ImportedAt: now}
			},
			func(a *Account) error {
				changed := a.Role != r.Role
				a.Role = r.Role
				switch {
				case !a.PasswordUpdateRequired():
					outcome = &res.Kept
				case r.LegacyHash != "" && r.LegacyHash != a.Hash:
					a.Hash = r.LegacyHash
					changed = true
					outcome = &res.Updated
				case changed:
					outcome = &res.Updated
				default:
					outcome = &res.Unchanged
				}
				if !changed {
					return ErrUnchanged
				}
				return nil
			})
		if err != nil {
			return res, fmt.Errorf("import line %d: %w", r.Line, err)
		}
		if created {
			res.Created++
		} else {
			*outcome++
		}
	}
	return res, nil
}
