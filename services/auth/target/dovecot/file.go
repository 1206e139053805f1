package dovecot

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// file is a passwd-file in memory: its lines in order, and where each
// user's line is. Lines the adapter does not understand (comments, blank
// lines) are kept verbatim.
type file struct {
	lines []string
	index map[string]int
}

func parseFile(data []byte) *file {
	f := &file{index: map[string]int{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if user, _, ok := strings.Cut(line, ":"); ok && user != "" && !strings.HasPrefix(line, "#") {
			f.index[user] = len(f.lines)
		}
		f.lines = append(f.lines, line)
	}
	return f
}

func (f *file) has(user string) bool {
	_, ok := f.index[user]
	return ok
}

// set replaces user's password field, keeping the fields after it (uid,
// gid, home, extra fields), or appends a line whose other fields the
// userdb's defaults fill in.
func (f *file) set(user, hash string) {
	i, ok := f.index[user]
	if !ok {
		f.index[user] = len(f.lines)
		f.lines = append(f.lines, user+":"+hash+"::::::")
		return
	}
	_, rest, _ := strings.Cut(f.lines[i], ":")
	_, tail, hasTail := strings.Cut(rest, ":")
	line := user + ":" + hash
	if hasTail {
		line += ":" + tail
	}
	f.lines[i] = line
}

func (f *file) bytes() []byte {
	var b bytes.Buffer
	for _, l := range f.lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// lockPoll is how often a waiting edit retries the lock.
const lockPoll = 20 * time.Millisecond

// edit runs fn on the current file under an exclusive lock (shared with
// other mailferry processes) and, when fn reports a change, replaces the
// file atomically. It returns when the new file was put in place.
func (p *PasswdFile) edit(ctx context.Context, fn func(*file) bool) (time.Time, error) {
	unlock, err := lock(ctx, p.Path+".lock")
	if err != nil {
		return time.Time{}, err
	}
	defer unlock()
	data, info, err := readExisting(p.Path)
	if err != nil {
		return time.Time{}, err
	}
	f := parseFile(data)
	if !fn(f) {
		return time.Now(), nil
	}
	if err := replace(p.Path, f.bytes(), info); err != nil {
		return time.Time{}, err
	}
	return time.Now(), nil
}

func lock(ctx context.Context, path string) (func(), error) {
	lf, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	for {
		err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(lf.Fd()), syscall.LOCK_UN)
				lf.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			lf.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			lf.Close()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-time.After(lockPoll):
		}
	}
}

// readExisting returns the file's content and stat; a missing file is
// empty with no stat.
func readExisting(path string) ([]byte, fs.FileInfo, error) {
	info, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("stat: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read: %w", err)
	}
	return data, info, nil
}

// replace writes data next to path and renames it over path, with the
// old file's mode and owner (Dovecot's auth process must keep reading
// it) and a modification time in a later second than the old one's:
// Dovecot notices a changed passwd-file only by whole-second mtime and
// size, and a changed hash often has the same size.
func replace(path string, data []byte, old fs.FileInfo) error {
	mode := fs.FileMode(0o640)
	if old != nil {
		mode = old.Mode().Perm()
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write temporary file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync temporary file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write temporary file: %w", err)
	}
	if err := os.Chmod(tmp.Name(), mode); err != nil {
		return fmt.Errorf("chmod temporary file: %w", err)
	}
	if err := keepOwner(tmp.Name(), old); err != nil {
		return err
	}
	stamp := time.Now().Truncate(time.Second)
	if old != nil && !stamp.After(old.ModTime().Truncate(time.Second)) {
		stamp = old.ModTime().Truncate(time.Second).Add(time.Second)
	}
	if err := os.Chtimes(tmp.Name(), stamp, stamp); err != nil {
		return fmt.Errorf("set modification time: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("replace: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// keepOwner gives path the owner and group of old, when they differ from
// what a new file gets (only then is the privilege to chown needed).
func keepOwner(path string, old fs.FileInfo) error {
	if old == nil {
		return nil
	}
	want, ok := old.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("stat temporary file: %w", err)
	}
	if have, ok := fi.Sys().(*syscall.Stat_t); ok && have.Uid == want.Uid && have.Gid == want.Gid {
		return nil
	}
	if err := os.Chown(path, int(want.Uid), int(want.Gid)); err != nil {
		return fmt.Errorf("give temporary file the passwd-file's owner: %w", err)
	}
	return nil
}

// syncDir makes the rename durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	return nil
}
