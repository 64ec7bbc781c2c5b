package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pmwal/wal"
)

const (
	tortureChildName = "__torture-child"
	tortureMarker    = "TORTURE" // in DIR: the seed and record size the records were made with
	tortureSegSize   = 1 << 20   // small segments: rollovers happen often
	tortureMaxBatch  = 8
)

// tortureRecord is the payload of record idx: its size and bytes follow
// from the seed and the index alone, so the checker knows every record.
func tortureRecord(seed, idx uint64, maxSize int) []byte {
	r := rand.New(rand.NewPCG(seed, idx))
	b := make([]byte, 1+r.IntN(maxSize))
	for i := range b {
		if i%8 == 0 {
			v := r.Uint64()
			for j := i; j < min(i+8, len(b)); j++ {
				b[j] = byte(v >> (8 * (j - i)))
			}
		}
	}
	return b
}

func runTorture(e env) error {
	fs := newFlags("torture", "DIR [--kills N] [--persist MODE] [--seed S] [--max-size BYTES] [--verbose]",
		"Runs a writer process that appends records (single and batched, their contents derived from\n"+
			"the index) and reports each acknowledged index, kills it with SIGKILL at a random moment\n"+
			"(sometimes while it is still recovering), reopens the log and checks that every\n"+
			"acknowledged record is there and intact and that every record kept is one the writer\n"+
			"wrote, whole; then starts the writer again on the same log. DIR must be new, empty, or\n"+
			"a directory an earlier torture run left. Exit 1 on any violation.", e.stderr)
	kills := fs.Int("kills", 100, "how many times to kill the writer")
	persist := fs.String("persist", "auto", "persistence: auto, dax, cacheflush or msync")
	seed := fs.Uint64("seed", 0, "seed for the kill moments and record contents (default: from the clock)")
	maxSize := fs.Int("max-size", 4096, "largest record in bytes")
	verbose := fs.Bool("verbose", false, "one line per kill")
	pos, err := parse(fs, e.args, 1)
	if err != nil {
		return err
	}
	mode, err := wal.ParsePersist(*persist)
	if err != nil || *kills < 1 || *maxSize < 1 || *maxSize > tortureSegSize/(2*tortureMaxBatch) {
		fmt.Fprintln(e.stderr, "pmwal torture: bad --persist, --kills or --max-size (at most", tortureSegSize/(2*tortureMaxBatch), "bytes)")
		fs.Usage()
		return fmt.Errorf("%w: flags", errUsage)
	}
	dir := pos[0]
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}
	if *seed, *maxSize, err = tortureDir(dir, *seed, *maxSize); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(*seed, 0x70127))
	fmt.Fprintf(e.stdout, "torture: %s, persist %s, seed %d, records of 1..%d bytes, %d kills\n", dir, mode, *seed, *maxSize, *kills)
	var floor uint64 // every index up to here was acknowledged or kept by a recovery: it must stay
	var verified, violations, acked uint64
	start := time.Now()
	for k := 1; k <= *kills; k++ {
		delay := time.Duration(rng.IntN(150_000)) * time.Microsecond
		if rng.IntN(5) == 0 {
			delay = time.Duration(rng.IntN(5000)) * time.Microsecond // often inside recovery
		}
		maxAck, n, childErr, err := tortureRound(self, dir, mode, *seed, *maxSize, delay)
		if err != nil {
			return err
		}
		acked += n
		floor = max(floor, maxAck)
		var problems []string
		if childErr != "" {
			problems = append(problems, "writer failed: "+childErr)
		}
		last, checked, bad := tortureCheck(dir, mode, *seed, *maxSize, floor, rng)
		problems = append(problems, bad...)
		verified += checked
		floor = max(floor, last)
		violations += uint64(len(problems))
		if *verbose || len(problems) > 0 {
			fmt.Fprintf(e.stdout, "kill %d after %v: %d acknowledged, log holds 1..%d, %d records checked\n", k, delay, n, last, checked)
		}
		for _, p := range problems {
			fmt.Fprintf(e.stdout, "  VIOLATION: %s\n", p)
		}
	}
	fmt.Fprintf(e.stdout, "kills: %d  acknowledged appends: %d  records verified: %d  violations: %d  (%v)\n",
		*kills, acked, verified, violations, time.Since(start).Round(time.Millisecond))
	if violations > 0 {
		return fmt.Errorf("%w: %d violations (seed %d)", errProblem, violations, *seed)
	}
	return nil
}

// tortureDir prepares DIR: new or empty gets a marker with the seed and
// record size; one an earlier run left keeps its own (the records must
// verify against them).
func tortureDir(dir string, seed uint64, maxSize int) (uint64, int, error) {
	marker := filepath.Join(dir, tortureMarker)
	if b, err := os.ReadFile(marker); err == nil {
		var s uint64
		var m int
		if _, err := fmt.Sscanf(string(b), "seed %d max-size %d", &s, &m); err != nil {
			return 0, 0, fmt.Errorf("%s: %w", marker, err)
		}
		return s, m, nil
	}
	if st, err := os.Stat(dir); err == nil && !st.IsDir() {
		return 0, 0, fmt.Errorf("%s is not a directory", dir)
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return 0, 0, fmt.Errorf("%s is not empty and no torture run made it: torture writes its own records and would not touch another log", dir)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, 0, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, 0, err
	}
	return seed, maxSize, os.WriteFile(marker, fmt.Appendf(nil, "seed %d max-size %d\n", seed, maxSize), 0o600)
}

// tortureRound runs the writer for delay, kills it, and returns the highest
// index it acknowledged, how many appends it acknowledged, and an error it
// reported by itself.
func tortureRound(self, dir string, mode wal.Persist, seed uint64, maxSize int, delay time.Duration) (maxAck, n uint64, childErr string, err error) {
	cmd := exec.Command(self, tortureChildName, "--persist", mode.String(), "--seed", fmt.Sprint(seed), "--max-size", fmt.Sprint(maxSize), dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, "", err
	}
	if err := cmd.Start(); err != nil {
		return 0, 0, "", err
	}
	type ack struct{ last, n uint64 }
	acks := make(chan ack, 1)
	go func() {
		var a ack
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 3 && f[0] == "ack" {
				first, _ := strconv.ParseUint(f[1], 10, 64)
				count, _ := strconv.ParseUint(f[2], 10, 64)
				a.last = max(a.last, first+count-1)
				a.n++
			}
		}
		acks <- a
	}()
	time.Sleep(delay)
	cmd.Process.Signal(syscall.SIGKILL)
	a := <-acks
	werr := cmd.Wait()
	var ee *exec.ExitError
	if errors.As(werr, &ee) && ee.ExitCode() != -1 { // -1: killed by the signal
		childErr = strings.TrimSpace(stderr.String())
		if childErr == "" {
			childErr = werr.Error()
		}
	}
	return a.last, a.n, childErr, nil
}

// tortureCheck recovers the log as a writer would and checks it: it holds
// every index up to floor, and every record checked is exactly the one the
// writer made for its index. New records (from floor-8*batch on) are all
// checked, older ones in a random sample. It returns the last index, how
// many records it checked, and the violations.
func tortureCheck(dir string, mode wal.Persist, seed uint64, maxSize int, floor uint64, rng *rand.Rand) (last, checked uint64, bad []string) {
	l, err := wal.Open(dir, &wal.Options{SegmentSize: tortureSegSize, Persist: mode})
	if err != nil {
		return 0, 0, []string{"recovery failed: " + err.Error()}
	}
	defer l.Close()
	first, last := l.FirstIndex(), l.LastIndex()
	if first != 1 {
		bad = append(bad, fmt.Sprintf("first index %d, want 1", first))
	}
	if last < floor {
		bad = append(bad, fmt.Sprintf("log ends at %d, but records up to %d were acknowledged (or kept by an earlier recovery)", last, floor))
	}
	check := func(i uint64) {
		checked++
		got, err := l.Read(i)
		switch {
		case err != nil:
			bad = append(bad, fmt.Sprintf("record %d: %v", i, err))
		case !bytes.Equal(got, tortureRecord(seed, i, maxSize)):
			bad = append(bad, fmt.Sprintf("record %d: %d bytes that are not what the writer wrote", i, len(got)))
		}
	}
	from := uint64(1)
	if floor > 8*tortureMaxBatch {
		from = floor - 8*tortureMaxBatch
	}
	for i := from; i <= last && len(bad) < 10; i++ {
		check(i)
	}
	for range min(from-1, 256) {
		check(1 + rng.Uint64N(from-1))
	}
	return last, checked, bad
}

// runTortureChild is the writer torture kills: it appends forever and
// prints "ack FIRST COUNT" after each Append or AppendBatch returns.
func runTortureChild(e env) error {
	fs := newFlags(tortureChildName, "DIR", "", e.stderr)
	persist := fs.String("persist", "auto", "")
	seed := fs.Uint64("seed", 1, "")
	maxSize := fs.Int("max-size", 4096, "")
	pos, err := parse(fs, e.args, 1)
	if err != nil {
		return err
	}
	mode, err := wal.ParsePersist(*persist)
	if err != nil {
		return err
	}
	l, err := wal.Open(pos[0], &wal.Options{SegmentSize: tortureSegSize, Persist: mode})
	if err != nil {
		return err
	}
	// A test of the checker: PMWAL_TORTURE_LIE=1 acknowledges one record
	// more than was written, which the checker must catch.
	lie := uint64(0)
	if os.Getenv("PMWAL_TORTURE_LIE") == "1" {
		lie = 1
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(os.Getpid())))
	batch := make([][]byte, 0, tortureMaxBatch)
	for {
		next := l.LastIndex() + 1
		k := 1
		if rng.IntN(4) == 0 {
			k = 2 + rng.IntN(tortureMaxBatch-1)
		}
		batch = batch[:0]
		for i := range k {
			batch = append(batch, tortureRecord(*seed, next+uint64(i), *maxSize))
		}
		var got uint64
		if k == 1 {
			got, err = l.Append(batch[0])
		} else {
			got, err = l.AppendBatch(batch)
		}
		if err != nil {
			return err
		}
		if got != next {
			return fmt.Errorf("%w: append got index %d, expected %d", errProblem, got, next)
		}
		if _, err := fmt.Fprintf(e.stdout, "ack %d %d\n", got, uint64(k)+lie); err != nil {
			return err
		}
	}
}
