package account

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
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
		if err := passhash.CheckWrappable(hash); err != nil {
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

// ImportOptions says how Import stores what it reads.
type ImportOptions struct {
	// Now is the import time recorded on new accounts.
	Now time.Time
	// Argon2 are the parameters legacy hashes are wrapped in: the bucket
	// holds argon2id(legacy digest), never a legacy digest itself.
	Argon2 passhash.Argon2Params
	// Workers is how many rows are wrapped at once (GOMAXPROCS when 0):
	// each wrap costs one argon2id.
	Workers int
}

// Import writes rows into the store. A new user gets the row's role and
// its legacy hash wrapped in argon2id. An existing one gets the row's
// role and, until the user has set a new password, the row's hash when
// it has one and it is not the hash already stored (the legacy platform
// is the truth until then). Rows are written concurrently; an error names
// the first failed line.
func (s *Store) Import(ctx context.Context, rows []Row, o ImportOptions) (ImportResult, error) {
	if o.Argon2.Time == 0 || o.Argon2.MemoryKiB == 0 || o.Argon2.Threads == 0 {
		return ImportResult{}, errors.New("import: argon2 parameters are required to wrap legacy hashes")
	}
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	outcomes := make([]importOutcome, len(rows))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, max(len(rows), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				outcomes[i] = s.importRow(ctx, rows[i], o)
				if outcomes[i].err != nil {
					cancel()
				}
			}
		}()
	}
feed:
	for i := range rows {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	var res ImportResult
	failed := -1
	for i, out := range outcomes {
		// The first line that failed on its own, not because another
		// line's failure cancelled the rest.
		if out.err != nil && (failed < 0 || errors.Is(outcomes[failed].err, context.Canceled) && !errors.Is(out.err, context.Canceled)) {
			failed = i
		}
		if out.counter != nil {
			*out.counter(&res)++
		}
	}
	if failed >= 0 {
		return res, fmt.Errorf("import line %d: %w", rows[failed].Line, outcomes[failed].err)
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("import: %w", err)
	}
	return res, nil
}

// importOutcome is what happened to one row: which counter it adds to.
type importOutcome struct {
	counter func(*ImportResult) *int
	err     error
}

func (s *Store) importRow(ctx context.Context, r Row, o ImportOptions) importOutcome {
	var (
		wrapped string
		known   = map[string]bool{} // stored hash -> wraps r.LegacyHash
		outcome func(*ImportResult) *int
	)
	wrap := func() (string, error) {
		if wrapped == "" && r.LegacyHash != "" {
			w, err := o.Argon2.Wrap(r.LegacyHash)
			if err != nil {
				return "", fmt.Errorf("legacy_hash: %w", err)
			}
			wrapped = w
		}
		return wrapped, nil
	}
	same := func(stored string) bool {
		if v, ok := known[stored]; ok {
			return v
		}
		known[stored] = passhash.Wraps(stored, r.LegacyHash)
		return known[stored]
	}
	if _, err := s.Get(ctx, r.Email); errors.Is(err, ErrNotFound) {
		// A new account: wrap before writing, so a failure leaves nothing.
		if _, err := wrap(); err != nil {
			return importOutcome{err: err}
		}
	}
	created, err := s.Upsert(ctx, r.Email,
		func() *Account {
			// Wrapped above unless the account was deleted since; ReadCSV
			// checked the hash can be wrapped.
			h, _ := wrap()
			return &Account{Email: r.Email, Domain: Domain(r.Email), Role: r.Role, Hash: h, ImportedAt: o.Now}
		},
		func(a *Account) error {
			changed := a.Role != r.Role
			a.Role = r.Role
			switch {
			case !a.PasswordUpdateRequired():
				outcome = func(res *ImportResult) *int { return &res.Kept }
			case r.LegacyHash != "" && !same(a.Hash):
				h, err := wrap()
				if err != nil {
					return err
				}
				a.Hash = h
				changed = true
				outcome = func(res *ImportResult) *int { return &res.Updated }
			case changed:
				outcome = func(res *ImportResult) *int { return &res.Updated }
			default:
				outcome = func(res *ImportResult) *int { return &res.Unchanged }
			}
			if !changed {
				return ErrUnchanged
			}
			return nil
		})
	if err != nil {
		return importOutcome{err: err}
	}
	if created {
		return importOutcome{counter: func(res *ImportResult) *int { return &res.Created }}
	}
	return importOutcome{counter: outcome}
}
