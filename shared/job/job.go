// Package job defines the mailbox job that starts one migration pass, and
// the inventory file that lists the mailboxes.
package job

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/shared/subject"
)

// Mailbox is one row of the inventory: who to read and who to write.
// Password files are paths; the secrets never travel on the stream.
type Mailbox struct {
	SourceUser         string `json:"source_user"`
	TargetUser         string `json:"target_user"`
	SourcePasswordFile string `json:"source_password_file,omitempty"`
	TargetPasswordFile string `json:"target_password_file,omitempty"`
}

// Job asks the extractor and the loader to run one pass over a mailbox.
type Job struct {
	Mailbox
	Pass     string    `json:"pass"`
	Enqueued time.Time `json:"enqueued"`
	// LastExtraction says no extraction of the mailbox follows this pass
	// (the delta pass after its domain's switch): once it has run, the
	// extractor deletes the source password the mailbox's user handed
	// over at sign-in (shared/sourcecred).
	LastExtraction bool `json:"last_extraction,omitempty"`
	// Retry, when set, makes this a job for the loader alone: append
	// these dead-lettered records again.
	Retry []RetryItem `json:"retry,omitempty"`
	// Replay, when set, makes this a job for the loader alone: deliver
	// the mailbox's records again from a point in the mail stream.
	Replay *Replay `json:"replay,omitempty"`

	// Seq is the job's sequence in the jobs stream, set when it is
	// consumed (0 otherwise); a pass job with a higher one supersedes it.
	Seq uint64 `json:"-"`
}

// LoaderOnly reports whether the extractor has nothing to do for j.
func (j *Job) LoaderOnly() bool { return len(j.Retry) > 0 || j.Replay != nil }

// RetryItem names a dead letter and the mail record it is about.
type RetryItem struct {
	MailSeq uint64 `json:"mail_seq"`
	DeadSeq uint64 `json:"dead_seq"`
}

// Replay says which records of a mailbox to deliver again.
type Replay struct {
	// Folder limits the replay to one source folder ("" for all).
	Folder string `json:"folder,omitempty"`
	// FromSeq is the first mail-stream sequence to deliver.
	FromSeq uint64 `json:"from_seq"`
	// UntilSeq is the last: the stream's end when the replay was asked.
	UntilSeq uint64 `json:"until_seq"`
}

// ReadInventory reads the mailboxes CSV at path. Relative password file
// paths are resolved against the CSV's directory.
func ReadInventory(path string) ([]Mailbox, error) {
	if path == "" {
		return nil, errors.New("read mailboxes: mailboxes.file is not set")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read mailboxes: %w", err)
	}
	defer f.Close()
	return ParseInventory(f, filepath.Dir(path))
}

// ParseInventory parses a mailboxes CSV whose header names the columns
// source_user,target_user[,source_password_file,target_password_file].
func ParseInventory(r io.Reader, dir string) ([]Mailbox, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("mailboxes header: %w", err)
	}
	col := map[string]int{}
	for i, h := range head {
		col[strings.TrimSpace(strings.ToLower(h))] = i
	}
	for _, need := range []string{"source_user", "target_user"} {
		if _, ok := col[need]; !ok {
			return nil, fmt.Errorf("mailboxes header %q: missing column %s", strings.Join(head, ","), need)
		}
	}
	var out []Mailbox
	seen := map[string]int{}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("mailboxes: %w", err)
		}
		get := func(name string) string {
			if i, ok := col[name]; ok && i < len(rec) {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		m := Mailbox{
			SourceUser: get("source_user"), TargetUser: get("target_user"),
			SourcePasswordFile: abs(dir, get("source_password_file")),
			TargetPasswordFile: abs(dir, get("target_password_file")),
		}
		if m.SourceUser == "" || m.TargetUser == "" {
			return nil, fmt.Errorf("mailboxes line %d: source_user and target_user are required", line)
		}
		if prev, dup := seen[m.SourceUser]; dup {
			return nil, fmt.Errorf("mailboxes line %d: %s already listed on line %d", line, m.SourceUser, prev)
		}
		seen[m.SourceUser] = line
		out = append(out, m)
	}
	return out, nil
}

func abs(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// Publish puts a job on the jobs stream. The pass makes it idempotent.
func Publish(ctx context.Context, js jetstream.JetStream, j *Job) error {
	body, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("encode job: %w", err)
	}
	subj := subject.Job(j.SourceUser)
	if j.LoaderOnly() {
		subj = subject.LoaderJob(j.SourceUser)
	}
	m := nats.NewMsg(subj)
	m.Header.Set(nats.MsgIdHdr, "job."+subject.Token(j.SourceUser)+"."+j.Pass)
	m.Data = body
	if _, err := js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("publish job for %q: %w", j.SourceUser, err)
	}
	return nil
}

// Decode decodes a job.
func Decode(data []byte) (*Job, error) {
	j := &Job{}
	if err := json.Unmarshal(data, j); err != nil {
		return nil, fmt.Errorf("decode job: %w", err)
	}
	if j.SourceUser == "" || j.Pass == "" {
		return nil, errors.New("decode job: source_user and pass are required")
	}
	return j, nil
}
