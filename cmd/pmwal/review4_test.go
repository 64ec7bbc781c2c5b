package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pmwal/wal"
)

// TestReview4CmdBenchHugeSizeOrBatch: flag values whose product with the
// record overhead overflows int64 must be refused as a usage error; they
// once passed bench's "a batch must fit in a quarter of a segment" check
// and then panicked in make.
func TestReview4CmdBenchHugeSizeOrBatch(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--dir", shmDir(t), "--duration", "100ms", "--size", "9223372036854775800"},
		{"bench", "--dir", shmDir(t), "--duration", "100ms", "--size", "0", "--batch", "4611686018427387904"},
	} {
		r := pmwal(t, "", args...)
		if strings.Contains(r.stderr, "panic:") || r.code != 2 || !strings.Contains(r.stderr, "usage: pmwal bench") {
			t.Errorf("pmwal %v: exit %d, want a usage error (exit 2); stderr:\n%.400s", args, r.code, r.stderr)
		}
	}
}

// TestReview4CmdGlobMetaInDir: a log directory whose name holds a glob
// metacharacter ("[", "*", "?") must be read like any other. segFiles once
// globbed the directory name joined with "*.seg", so info found no segment
// files and probed nothing, and logSegmentSize fell back to 64 MiB, so
// verify, dump and repair opened a 1 MiB log with the wrong segment size.
func TestReview4CmdGlobMetaInDir(t *testing.T) {
	dir := filepath.Join(shmDir(t), "log[1]")
	makeLog(t, dir, 2500)
	segs, _ := os.ReadDir(dir)
	n := 0
	for _, e := range segs {
		if strings.HasSuffix(e.Name(), ".seg") {
			n++
		}
	}
	r := pmwal(t, "", "info", "--json", dir)
	r.want(t, 0)
	var got infoReport
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatal(err)
	}
	if got.SegmentFiles != n || got.SegmentSize != 1<<20 || got.FS.Auto == "unknown" {
		t.Fatalf("info on %s: %d segment files of %d bytes, persistence %q (%s); the directory holds %d segment files of 1 MiB",
			dir, got.SegmentFiles, got.SegmentSize, got.FS.Auto, got.FS.MapSyncWhy, n)
	}
}

// TestReview4CmdDemoAndBenchWriteIntoExistingLog: demo --dir and bench
// --dir, pointed at a real log by mistake, must leave it alone, as torture
// does with a directory it did not make. They once opened it as a writer
// and appended their own records (bench also truncated it).
func TestReview4CmdDemoAndBenchWriteIntoExistingLog(t *testing.T) {
	for _, c := range [][]string{
		{"demo", "--records", "20"},
		{"bench", "--duration", "300ms", "--persist", "cacheflush", "--segment-size", "1048576", "--size", "100"},
	} {
		t.Run(c[0], func(t *testing.T) {
			dir := filepath.Join(shmDir(t), "log")
			makeLog(t, dir, 30)
			before := snapFiles(t, dir)
			r := pmwal(t, "", append(c, "--dir", dir)...)
			l, err := wal.Open(dir, &wal.Options{SegmentSize: 1 << 20, ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			first, last := l.FirstIndex(), l.LastIndex()
			l.Close()
			if first != 1 || last != 30 {
				t.Fatalf("pmwal %s --dir on a log of records 1..30 (exit %d) left it holding %d..%d", c[0], r.code, first, last)
			}
			sameFiles(t, dir, before)
		})
	}
}

// TestReview4CmdInfoHangsOnFifo: info probes the newest segment file with
// os.Open. A FIFO with a segment file's name (a stray file the log itself
// ignores) must not be taken for one: info once blocked for ever in
// open(2) on it, while verify on the same directory finished.
func TestReview4CmdInfoHangsOnFifo(t *testing.T) {
	dir := filepath.Join(shmDir(t), "log")
	makeLog(t, dir, 10)
	if err := syscall.Mkfifo(filepath.Join(dir, "00000000000000000099.seg"), 0o600); err != nil {
		t.Skip("mkfifo:", err)
	}
	pmwal(t, "", "verify", dir).want(t, 0, "ok: records 1..10")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "info", dir)
	cmd.Env = append(os.Environ(), "WAL_PERSIST=")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("pmwal info did not finish in 10s (blocked opening the FIFO); output so far:\n%s", out)
	}
	if err != nil {
		t.Fatalf("pmwal info: %v\n%s", err, out)
	}
}
