package main

import (
	"archive/tar"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pmwal/wal"
)

// bin is the pmwal binary TestMain builds once; every test runs it as an
// operator would.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pmwal-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	bin = filepath.Join(dir, "pmwal")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building pmwal:", err)
		os.RemoveAll(dir)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is one run of the binary.
type result struct {
	code           int
	stdout, stderr string
}

// pmwal runs the binary with args (and stdin, if not nil).
func pmwal(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "WAL_PERSIST=")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("pmwal %v: %v", args, err)
	}
	return r
}

// want fails the test unless the run exited with code and its output
// (stdout and stderr) holds every one of the strings.
func (r result) want(t *testing.T, code int, has ...string) {
	t.Helper()
	all := r.stdout + r.stderr
	if r.code != code {
		t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	for _, s := range has {
		if !strings.Contains(all, s) {
			t.Fatalf("output lacks %q\nstdout:\n%s\nstderr:\n%s", s, r.stdout, r.stderr)
		}
	}
}

func shmDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("/dev/shm", "pmwal-cmd-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// record is the payload of record i in the test logs.
func record(i uint64) []byte {
	if i%5 == 0 {
		return bytes.Repeat([]byte{byte(i), 0, 0xff}, int(i%300))
	}
	return []byte(fmt.Sprintf("record %d: %s", i, strings.Repeat("x", int(i%3000))))
}

// makeLog writes n records into a new log in dir (1 MiB segments) and
// closes it; it returns where each record's header lies, by index.
func makeLog(t *testing.T, dir string, n uint64) {
	t.Helper()
	l, err := wal.Open(dir, &wal.Options{SegmentSize: 1 << 20, Persist: wal.PersistCacheFlush})
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= n; i++ {
		if _, err := l.Append(record(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// snapFiles reads every file in dir but LOCK.
func snapFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]byte{}
	for _, e := range ents {
		if e.Name() == "LOCK" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = b
	}
	return m
}

func sameFiles(t *testing.T, dir string, before map[string][]byte) {
	t.Helper()
	after := snapFiles(t, dir)
	if len(after) != len(before) {
		t.Fatalf("files in %s changed: %d before, %d after", dir, len(before), len(after))
	}
	for name, b := range before {
		if !bytes.Equal(b, after[name]) {
			t.Fatalf("%s was modified", name)
		}
	}
}

// corruptSealed flips a byte in a record header of the first segment, which
// is sealed when the log has more than one.
func corruptSealed(t *testing.T, dir string) string {
	t.Helper()
	seg := filepath.Join(dir, "00000000000000000001.seg")
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(b, []byte("record 7:"))
	if at < 0 {
		t.Fatal("record 7 not found")
	}
	b[at] ^= 0x20
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return seg
}

// tearLast flips a byte of the last record's payload, as a crash in the
// middle of its append would leave it.
func tearLast(t *testing.T, dir string, last uint64) (file string, off int) {
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	want := record(last)
	for i := len(segs) - 1; i >= 0; i-- {
		b, err := os.ReadFile(segs[i])
		if err != nil {
			t.Fatal(err)
		}
		if at := bytes.LastIndex(b, want); at >= 0 {
			b[at+len(want)-1] ^= 1
			if err := os.WriteFile(segs[i], b, 0o600); err != nil {
				t.Fatal(err)
			}
			return segs[i], at - 32 // the record header is 32 bytes
		}
	}
	t.Fatal("last record not found")
	return "", 0
}

func TestUsageAndHelp(t *testing.T) {
	pmwal(t, "").want(t, 2, "usage: pmwal COMMAND", "verify", "torture")
	pmwal(t, "", "--help").want(t, 0, "usage: pmwal COMMAND")
	pmwal(t, "", "frobnicate").want(t, 2, `unknown command "frobnicate"`)
	for _, c := range []string{"info", "verify", "dump", "repair", "bench", "torture", "demo"} {
		pmwal(t, "", c, "--help").want(t, 0, "usage: pmwal "+c)
		pmwal(t, "", c, "--no-such-flag").want(t, 2, "flag provided but not defined", "usage: pmwal "+c)
	}
	for _, c := range []string{"info", "verify", "dump", "repair", "torture"} {
		pmwal(t, "", c).want(t, 2, "DIR is missing")
		pmwal(t, "", c, "a", "b").want(t, 2, "want 1 argument")
	}
	pmwal(t, "", "dump", "--format", "xml", "x").want(t, 2, `unknown --format "xml"`)
	pmwal(t, "", "bench", "--writers", "0").want(t, 2, "--writers must be")
	pmwal(t, "", "bench", "--persist", "floppy").want(t, 2, "unknown persistence mode")
}

// TestBadInput: every command that reads a log refuses, with exit 2 and a
// message naming the problem, a missing directory, a file, an empty
// directory and a log held open by another process; garbage segment files
// are corruption (exit 1). None of them creates or changes a file.
func TestBadInput(t *testing.T) {
	base := shmDir(t)
	missing := filepath.Join(base, "missing")
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, []byte("not a log"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(base, "empty")
	os.Mkdir(empty, 0o700)
	garbage := filepath.Join(base, "garbage")
	os.Mkdir(garbage, 0o700)
	junk := bytes.Repeat([]byte("garbage!"), 1<<17)
	os.WriteFile(filepath.Join(garbage, "00000000000000000001.seg"), junk, 0o600)
	os.WriteFile(filepath.Join(garbage, "00000000000000000002.seg"), junk[:5000], 0o600)
	busy := filepath.Join(base, "busy")
	makeLog(t, busy, 10)
	l, err := wal.Open(busy, &wal.Options{SegmentSize: 1 << 20, Persist: wal.PersistCacheFlush})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busySnap := snapFiles(t, busy)

	for _, c := range []string{"verify", "dump", "repair"} {
		pmwal(t, "yes\n", c, missing).want(t, 2, "no such file or directory")
		pmwal(t, "yes\n", c, file).want(t, 2, "not a directory")
		pmwal(t, "yes\n", c, empty).want(t, 2, "holds no log")
		pmwal(t, "yes\n", c, busy).want(t, 2, "locked", "never takes a writer's lock")
	}
	pmwal(t, "", "info", missing).want(t, 2, "no such file or directory")
	pmwal(t, "", "info", file).want(t, 2, "not a directory")
	pmwal(t, "", "info", empty).want(t, 0, "no log in this directory yet")
	pmwal(t, "", "info", busy).want(t, 0, "in use by a writer")
	pmwal(t, "", "verify", garbage).want(t, 1, "CORRUPT", "00000000000000000001.seg")
	pmwal(t, "", "dump", garbage).want(t, 1, "corrupt")
	pmwal(t, "", "info", garbage).want(t, 1, "corrupt")
	pmwal(t, "", "torture", file).want(t, 2, "not a directory")
	pmwal(t, "", "torture", busy).want(t, 2, "not empty and no torture run made it")

	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a command created %s", missing)
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Errorf("a command created files in the empty directory")
	}
	sameFiles(t, busy, busySnap)
	if b, _ := os.ReadFile(filepath.Join(garbage, "00000000000000000001.seg")); !bytes.Equal(b, junk) {
		t.Errorf("a garbage segment file was changed")
	}
}

func TestInfo(t *testing.T) {
	dir := shmDir(t)
	makeLog(t, dir, 2500)
	r := pmwal(t, "", "info", dir)
	r.want(t, 0, "file system:       tmpfs", "DAX:               no", "MAP_SYNC:          false",
		"persistence:       msync with PersistAuto", "flush:", "eADR:", "records:           1..2500 (2500 records)",
		"segments in use:", "bytes:")
	r = pmwal(t, "", "info", "--json", dir)
	r.want(t, 0)
	var got infoReport
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatal(err)
	}
	if got.FirstIndex != 1 || got.LastIndex != 2500 || got.Segments < 2 || got.SegmentSize != 1<<20 ||
		got.FS.Auto != "msync" || got.FS.Filesystem != "tmpfs" || got.BytesUsed <= 0 || got.BytesFree <= 0 || got.Hardware.Flush == "" {
		t.Fatalf("info --json: %+v", got)
	}
}

func TestVerify(t *testing.T) {
	dir := shmDir(t)
	makeLog(t, dir, 2500)
	pmwal(t, "", "verify", dir).want(t, 0, "ok: records 1..2500 (2500 records")

	file, off := tearLast(t, dir, 2500)
	before := snapFiles(t, dir)
	pmwal(t, "", "verify", dir).want(t, 0, fmt.Sprintf("torn tail: %s offset %d", filepath.Base(file), off), "ok: records 1..2499")
	sameFiles(t, dir, before)

	seg := corruptSealed(t, dir)
	before = snapFiles(t, dir)
	pmwal(t, "", "verify", dir).want(t, 1, "CORRUPT", filepath.Base(seg)+" offset ", "record 7", "pmwal repair")
	sameFiles(t, dir, before)
}

func TestDump(t *testing.T) {
	dir := shmDir(t)
	makeLog(t, dir, 30)
	r := pmwal(t, "", "dump", dir, "--from", "3", "--to", "6", "--preview", "12")
	r.want(t, 0)
	wantText := "3\t13\t\"record 3: xx\"...\n" +
		"4\t14\t\"record 4: xx\"...\n" +
		"5\t15\thex:0500ff0500ff0500ff0500ff...\n" +
		"6\t16\t\"record 6: xx\"...\n"
	if r.stdout != wantText {
		t.Fatalf("dump text:\n%s\nwant:\n%s", r.stdout, wantText)
	}
	r = pmwal(t, "", "dump", "--format", "json", dir)
	r.want(t, 0)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 30 {
		t.Fatalf("dump json: %d lines, want 30", len(lines))
	}
	for i, line := range lines {
		var rec struct {
			Index uint64
			Size  int
			Data  string
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		data, _ := base64.StdEncoding.DecodeString(rec.Data)
		if rec.Index != uint64(i+1) || rec.Size != len(data) || !bytes.Equal(data, record(rec.Index)) {
			t.Fatalf("dump json line %d: %s", i, line)
		}
	}
	r = pmwal(t, "", "dump", "--format", "raw", "--from", "28", dir)
	r.want(t, 0)
	if want := string(record(28)) + string(record(29)) + string(record(30)); r.stdout != want {
		t.Fatalf("dump raw: %d bytes, want %d", len(r.stdout), len(want))
	}
	pmwal(t, "", "dump", "--from", "31", dir).want(t, 0)
}

func TestRepair(t *testing.T) {
	base := shmDir(t)
	dir := filepath.Join(base, "log")
	makeLog(t, dir, 2500)
	pmwal(t, "", "repair", dir).want(t, 0, "nothing to repair")

	seg := corruptSealed(t, dir)
	before := snapFiles(t, dir)
	// Declined, and no answer at all: nothing changes.
	pmwal(t, "no\n", "repair", dir).want(t, 1, "repair declined", "keeps records 1..6; everything from record 7 on is dropped")
	pmwal(t, "", "repair", dir).want(t, 2, "pass --yes")
	sameFiles(t, dir, before)
	if m, _ := filepath.Glob(dir + ".dropped-*"); len(m) != 0 {
		t.Fatalf("declined repair saved %v", m)
	}

	r := pmwal(t, "", "repair", "--yes", dir)
	r.want(t, 0, "corruption:", "keeps records 1..6; everything from record 7 on is dropped", filepath.Base(seg), "saved the dropped bytes in", "repaired: "+dir+" now holds records 1..6")
	pmwal(t, "", "verify", dir).want(t, 0, "ok: records 1..6 (6 records")

	// The archive holds exactly the bytes the repair dropped, as they were.
	m, _ := filepath.Glob(dir + ".dropped-*.tar")
	if len(m) != 1 {
		t.Fatalf("archives beside the log: %v", m)
	}
	f, err := os.Open(m[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	members, files := 0, map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var name string
		var off, n int64
		if _, err := fmt.Sscanf(strings.Replace(strings.Replace(h.Name, "@", " ", 1), "+", " ", 1), "%s %d %d", &name, &off, &n); err != nil {
			t.Fatalf("member %q: %v", h.Name, err)
		}
		got, _ := io.ReadAll(tr)
		if int64(len(got)) != n || !bytes.Equal(got, before[name][off:off+n]) {
			t.Fatalf("member %q does not hold the original bytes", h.Name)
		}
		members++
		files[name] = true
	}
	if members == 0 || !files[filepath.Base(seg)] {
		t.Fatalf("archive members: %d, files %v", members, files)
	}
	// Every later segment file was removed whole; they are in the archive.
	for name := range before {
		if strings.HasSuffix(name, ".seg") && name > filepath.Base(seg) && !files[name] {
			t.Errorf("segment %s was dropped but is not in the archive", name)
		}
	}
}

func TestBench(t *testing.T) {
	dir := shmDir(t)
	r := pmwal(t, "", "bench", "--dir", dir, "--duration", "300ms", "--persist", "cacheflush", "--writers", "2", "--batch", "4", "--size", "100", "--segment-size", "1048576", "--json")
	r.want(t, 0)
	var got benchResult
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	if got.Persist != "cacheflush" || got.Writers != 2 || got.Batch != 4 || got.Records != 4*got.Appends || got.Appends == 0 ||
		got.LatP50 <= 0 || got.LatP50 > got.LatP99 || got.LatP99 > got.LatMax || got.RecordsPerS <= 0 || got.Truncations == 0 {
		t.Fatalf("bench --json: %+v", got)
	}
	// Not on a terminal: no progress line, just the summary.
	r = pmwal(t, "", "bench", "--duration", "200ms", "--size", "64")
	r.want(t, 0, "throughput", "records/s", "p99.9", "each durable before its call returned")
	if strings.Contains(r.stdout, "\r") || strings.Contains(r.stdout, "\x1b") {
		t.Fatalf("bench wrote terminal controls to a pipe:\n%q", r.stdout)
	}
}

func TestTorture(t *testing.T) {
	dir := filepath.Join(shmDir(t), "t")
	r := pmwal(t, "", "torture", dir, "--kills", "12", "--persist", "cacheflush", "--seed", "42", "--max-size", "2000")
	r.want(t, 0, "kills: 12", "violations: 0")
	if !strings.Contains(r.stdout, "acknowledged appends: ") || strings.Contains(r.stdout, "acknowledged appends: 0 ") {
		t.Fatalf("no append was acknowledged in 12 rounds:\n%s", r.stdout)
	}
	// A second run continues on the same log, with the seed it was made with.
	pmwal(t, "", "torture", dir, "--kills", "3", "--persist", "msync").want(t, 0, "seed 42", "violations: 0")
	pmwal(t, "", "verify", dir).want(t, 0, "ok: records 1..")
}

// TestTortureCatchesLies: a writer that acknowledges a record it never
// wrote is caught (exit 1).
func TestTortureCatchesLies(t *testing.T) {
	dir := filepath.Join(shmDir(t), "t")
	cmd := exec.Command(bin, "torture", dir, "--kills", "6", "--persist", "cacheflush", "--seed", "7")
	cmd.Env = append(os.Environ(), "PMWAL_TORTURE_LIE=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "VIOLATION: log ends at") {
		t.Fatalf("torture with a lying writer: %v\n%s", err, out)
	}
}

func TestDemo(t *testing.T) {
	pmwal(t, "", "demo", "--dir", shmDir(t), "--records", "500").want(t, 0, "torn last record: recovery dropped", "the next append got index 491")
}

func TestPreview(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"hello", 10, `"hello"`},
		{"hello world", 5, `"hello"...`},
		{"tab\there", 20, `"tab\there"`},
		{"héllo", 2, `"h"...`}, // a character cut by the preview's end
		{"\x00\x01\x02", 10, "hex:000102"},
		{"", 10, `""`},
	} {
		if got := previewOf([]byte(c.in), c.n); got != c.want {
			t.Errorf("previewOf(%q, %d) = %s, want %s", c.in, c.n, got, c.want)
		}
	}
}

func TestHistogram(t *testing.T) {
	var h hist
	for v := 1; v <= 100000; v++ {
		h.Record(time.Duration(v))
	}
	var s snapshot
	s.Add(&h)
	for _, c := range []struct {
		q    float64
		want float64
	}{{0.5, 50000}, {0.9, 90000}, {0.99, 99000}, {0, 1}} {
		got := float64(s.Quantile(c.q))
		if got < c.want*0.93 || got > c.want*1.07 {
			t.Errorf("Quantile(%v) = %v, want %v within 7%%", c.q, got, c.want)
		}
	}
	if s.max != 100000 || s.n != 100000 {
		t.Errorf("max %d n %d", s.max, s.n)
	}
	for v := uint64(0); v < 1<<20; v = v*9/8 + 1 {
		if b := bucket(v); bucketLow(b) > v || bucketLow(b+1) <= v {
			t.Fatalf("value %d in bucket %d [%d, %d)", v, b, bucketLow(b), bucketLow(b+1))
		}
	}
}
