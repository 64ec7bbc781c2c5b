package wal

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// apiLockOpts are the options of both sides of the lock tests.
var apiLockOpts = Options{SegmentSize: apiSeg, Persist: PersistCacheFlush}

func apiLockOpen(dir string) (*Log, error) {
	o := apiLockOpts
	return Open(dir, &o)
}

func TestApiLockSameProcess(t *testing.T) {
	apiNoEnv(t)
	dir := apiShmDir(t)
	l1, err := apiLockOpen(dir)
	if err != nil {
		t.Fatalf("first Open: %v", err)
	}
	apiAppend(t, l1, []byte("one"))

	// The same directory, however it is named, is refused at once.
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{dir, dir + "/", dir + "/.", link} {
		l2, err := apiLockOpen(name)
		if err == nil {
			l2.Close()
			l1.Close()
			t.Fatalf("second Open(%s) while the first is open succeeded", name)
		}
		if !errors.Is(err, ErrLocked) {
			t.Errorf("second Open(%s) = %v, want ErrLocked", name, err)
		}
	}
	// The refused Open disturbed nothing.
	apiAppend(t, l1, []byte("two"))
	apiCheckAll(t, l1, [][]byte{[]byte("one"), []byte("two")})
	apiClose(t, l1)

	l2, err := apiLockOpen(dir)
	if err != nil {
		t.Fatalf("Open after the first was closed: %v", err)
	}
	defer l2.Close()
	apiCheckAll(t, l2, [][]byte{[]byte("one"), []byte("two")})
	if _, err := apiLockOpen(dir); !errors.Is(err, ErrLocked) {
		t.Errorf("Open while the reopened log is open = %v, want ErrLocked", err)
	}
}

// apiReadUntil reads lines from r until one equal to want; it returns the
// lines read before it and whether it was found.
func apiReadUntil(r *bufio.Reader, want string) (seen []string, ok bool) {
	for {
		line, err := r.ReadString('\n')
		if strings.TrimSpace(line) == want {
			return seen, true
		}
		if line != "" {
			seen = append(seen, line)
		}
		if err != nil {
			return seen, false
		}
	}
}

func TestApiLockOtherProcess(t *testing.T) {
	apiNoEnv(t)
	dir := apiShmDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // safety net only
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestApiLockChild$", "-test.count=1", "-test.timeout=110s")
	cmd.Env = append(os.Environ(), "PMWAL_API_LOCK_CHILD="+dir, "WAL_PERSIST=")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	r := bufio.NewReader(stdout)
	if seen, ok := apiReadUntil(r, "locked"); !ok {
		stdin.Close()
		cmd.Wait()
		t.Fatalf("child never reported holding the log\nstdout: %s\nstderr: %s", strings.Join(seen, ""), stderr.String())
	}

	// The child holds the log: this process is refused.
	if l, err := apiLockOpen(dir); err == nil {
		l.Close()
		t.Errorf("Open while another process holds the log succeeded")
	} else if !errors.Is(err, ErrLocked) {
		t.Errorf("Open while another process holds the log = %v, want ErrLocked", err)
	}

	// Let the child close the log and exit.
	stdin.Close()
	rest, _ := io.ReadAll(r)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v\nstdout: %s\nstderr: %s", err, rest, stderr.String())
	}
	l, err := apiLockOpen(dir)
	if err != nil {
		t.Fatalf("Open after the child exited: %v", err)
	}
	defer l.Close()
	apiCheckAll(t, l, [][]byte{[]byte("written by the child")})
}

// TestApiLockChild is the child process of TestApiLockOtherProcess: it opens
// the log, appends a record, says "locked" and holds the log until its
// stdin is closed.
func TestApiLockChild(t *testing.T) {
	dir := os.Getenv("PMWAL_API_LOCK_CHILD")
	if dir == "" {
		t.Skip("runs only as the child of TestApiLockOtherProcess")
	}
	l, err := apiLockOpen(dir)
	if err != nil {
		t.Fatalf("child Open: %v", err)
	}
	if _, err := l.Append([]byte("written by the child")); err != nil {
		t.Fatalf("child Append: %v", err)
	}
	fmt.Fprintln(os.Stdout, "locked")
	io.Copy(io.Discard, os.Stdin)
	if err := l.Close(); err != nil {
		t.Fatalf("child Close: %v", err)
	}
}
