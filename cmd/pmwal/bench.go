package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pmwal/wal"
)

// benchResult is the summary pmwal bench prints (and --json encodes).
type benchResult struct {
	Dir          string  `json:"dir"`
	Persist      string  `json:"persist"` // the path in effect
	AskedPersist string  `json:"asked_persist"`
	Flush        string  `json:"flush"`
	Size         int     `json:"record_size"`
	Writers      int     `json:"writers"`
	Batch        int     `json:"batch"`
	Seconds      float64 `json:"seconds"`
	Appends      uint64  `json:"appends"` // Append or AppendBatch calls
	Records      uint64  `json:"records"`
	RecordsPerS  float64 `json:"records_per_second"`
	MBPerS       float64 `json:"payload_mb_per_second"`
	// Latency of one Append (or AppendBatch) call, in nanoseconds.
	LatMin  int64 `json:"latency_min_ns"`
	LatP50  int64 `json:"latency_p50_ns"`
	LatP90  int64 `json:"latency_p90_ns"`
	LatP99  int64 `json:"latency_p99_ns"`
	LatP999 int64 `json:"latency_p999_ns"`
	LatMax  int64 `json:"latency_max_ns"`
	// Truncations that kept the log bounded during the run, and segments
	// made from their emptied files.
	Truncations int    `json:"truncations"`
	Recycled    uint64 `json:"recycled_segments"`
}

func runBench(e env) error {
	fs := newFlags("bench", "[--dir D] [--size N] [--writers K] [--batch B] [--persist MODE] [--duration T] [--json]",
		"Appends records of --size bytes from --writers goroutines (--batch records per call) for\n"+
			"--duration into a fresh log, with a live progress line on a terminal, then prints\n"+
			"throughput and the latency percentiles of each call (from a histogram with 6% buckets).\n"+
			"The log is kept to a few segments with TruncateFront, as a long-running user keeps it.\n"+
			"With no flags: 256-byte records, one writer, 10 seconds, in a new directory under\n"+
			"/dev/shm (or the temporary directory), removed afterwards.", e.stderr)
	dir := fs.String("dir", "", "directory for the log, new or empty (default: a new one under /dev/shm, removed afterwards)")
	size := fs.Int("size", 256, "record size in bytes")
	writers := fs.Int("writers", 1, "concurrent appending goroutines")
	batch := fs.Int("batch", 1, "records per call (1: Append; more: AppendBatch)")
	persist := fs.String("persist", "auto", "persistence: auto, dax, cacheflush or msync")
	duration := fs.Duration("duration", 10*time.Second, "how long to append")
	segSize := fs.Int64("segment-size", 64<<20, "segment size in bytes")
	recycle := fs.Int("recycle", 2, "emptied segment files kept for reuse (Options.RecycleSegments); 0 creates every segment anew")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	if _, err := parse(fs, e.args, 0); err != nil {
		return err
	}
	bad := ""
	switch {
	case *size < 0:
		bad = "--size must not be negative"
	case *writers < 1 || *writers > 4096:
		bad = "--writers must be from 1 to 4096"
	case *batch < 1:
		bad = "--batch must be at least 1"
	case *recycle < 0:
		bad = "--recycle must not be negative"
	case *duration <= 0:
		bad = "--duration must be positive"
	case int64(*size) > *segSize/4 || int64(*batch) > *segSize/4/(int64(*size)+64):
		bad = "a batch must fit in a quarter of a segment: raise --segment-size or lower --batch or --size"
	}
	mode, err := wal.ParsePersist(*persist)
	if err != nil {
		bad = err.Error()
	}
	if bad != "" {
		fmt.Fprintln(e.stderr, "pmwal bench:", bad)
		fs.Usage()
		return fmt.Errorf("%w: %s", errUsage, bad)
	}
	if *dir != "" {
		if err := freshDir(*dir); err != nil {
			return err
		}
	} else {
		base := "/dev/shm"
		if st, err := os.Stat(base); err != nil || !st.IsDir() {
			base = os.TempDir()
		}
		d, err := os.MkdirTemp(base, "pmwal-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	l, err := wal.Open(*dir, &wal.Options{SegmentSize: *segSize, Persist: mode, RecycleSegments: *recycle})
	if err != nil {
		return err
	}
	defer l.Close()

	payload := make([]byte, *size)
	for i := range payload {
		payload[i] = byte(i*7 + 1)
	}
	recs := make([][]byte, *batch)
	for i := range recs {
		recs[i] = payload
	}
	hists := make([]hist, *writers)
	var calls atomic.Uint64
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, *writers+1)
	start := time.Now()
	for w := range *writers {
		wg.Add(1)
		go func(h *hist) {
			defer wg.Done()
			for !stop.Load() {
				t0 := time.Now()
				var err error
				if *batch == 1 {
					_, err = l.Append(payload)
				} else {
					_, err = l.AppendBatch(recs)
				}
				h.Record(time.Since(t0))
				if err != nil {
					errs <- err
					stop.Store(true)
					return
				}
				calls.Add(1)
			}
		}(&hists[w])
	}
	// Keep the log to a few segments, as a long-running user would.
	truncations := 0
	keep := uint64(*segSize/int64(*size+64)) * 2
	live := isTerminal(e.stdout) && !*asJSON
	tick := time.NewTicker(100 * time.Millisecond)
	var prev snapshot
	prevCalls, prevT := uint64(0), start
	lastPrint := start
	for !stop.Load() {
		now := <-tick.C
		if now.Sub(start) >= *duration {
			break
		}
		if st := l.Stats(); st.Segments > 4 && st.LastIndex > keep {
			if err := l.TruncateFront(st.LastIndex - keep); err != nil {
				errs <- err
				break
			}
			truncations++
		}
		if live && now.Sub(lastPrint) >= 500*time.Millisecond {
			var cur snapshot
			for i := range hists {
				cur.Add(&hists[i])
			}
			win := cur.Sub(&prev)
			c := calls.Load()
			rate := float64(c-prevCalls) * float64(*batch) / now.Sub(prevT).Seconds()
			fmt.Fprintf(e.stdout, "\r%5.1fs  %12s records/s  p50 %-8v p99 %-8v\x1b[K",
				now.Sub(start).Seconds(), commas(uint64(rate)), win.Quantile(0.5), win.Quantile(0.99))
			prev, prevCalls, prevT, lastPrint = cur, c, now, now
		}
	}
	tick.Stop()
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start)
	if live {
		fmt.Fprint(e.stdout, "\r\x1b[K")
	}
	select {
	case err := <-errs:
		return err
	default:
	}
	var all snapshot
	for i := range hists {
		all.Add(&hists[i])
	}
	n := calls.Load()
	r := benchResult{
		Dir: *dir, Persist: l.Persist().String(), AskedPersist: mode.String(), Flush: l.Hardware().Flush,
		Size: *size, Writers: *writers, Batch: *batch, Seconds: elapsed.Seconds(),
		Appends: n, Records: n * uint64(*batch), Truncations: truncations, Recycled: l.Stats().Recycled,
		LatMin: int64(all.Quantile(0)), LatP50: int64(all.Quantile(0.5)), LatP90: int64(all.Quantile(0.9)),
		LatP99: int64(all.Quantile(0.99)), LatP999: int64(all.Quantile(0.999)), LatMax: all.max,
	}
	r.RecordsPerS = float64(r.Records) / elapsed.Seconds()
	r.MBPerS = r.RecordsPerS * float64(*size) / 1e6
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	printBench(e.stdout, r)
	return nil
}

func printBench(w io.Writer, r benchResult) {
	p := func(k, f string, a ...any) { fmt.Fprintf(w, "%-12s %s\n", k, fmt.Sprintf(f, a...)) }
	flush := ""
	if r.Persist == "dax" || r.Persist == "cacheflush" {
		flush = ", flush " + r.Flush
	}
	p("log", "%s", r.Dir)
	p("persistence", "%s (asked for %s%s)", r.Persist, r.AskedPersist, flush)
	p("workload", "%d-byte records, %d writer(s), %d record(s) per call, %.1fs", r.Size, r.Writers, r.Batch, r.Seconds)
	p("appends", "%s calls, %s records, each durable before its call returned", commas(r.Appends), commas(r.Records))
	p("segments", "%d truncations kept the log short; %d segments made from emptied files", r.Truncations, r.Recycled)
	p("throughput", "%s records/s, %.1f MB/s of payload", commas(uint64(r.RecordsPerS)), r.MBPerS)
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-12s %9s %9s %9s %9s %9s %9s\n", "latency", "min", "p50", "p90", "p99", "p99.9", "max")
	d := func(ns int64) string { return time.Duration(ns).String() }
	fmt.Fprintf(w, "%-12s %9s %9s %9s %9s %9s %9s\n", "per call", d(r.LatMin), d(r.LatP50), d(r.LatP90), d(r.LatP99), d(r.LatP999), d(r.LatMax))
}

// commas formats n with thousands separators.
func commas(n uint64) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
