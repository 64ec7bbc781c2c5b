package wal

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// stRecord makes a self-describing record for index idx: the index, a
// length, and bytes derived from both, so any reader can tell a record
// that is not the one written at its index (across TruncateBack, which
// makes indexes be written again, the content still follows the index).
func stRecord(idx uint64, n int) []byte {
	b := make([]byte, 16+n)
	binary.LittleEndian.PutUint64(b, idx)
	binary.LittleEndian.PutUint64(b[8:], uint64(n))
	for i := range n {
		b[16+i] = byte(idx*31 + uint64(i)*7)
	}
	return b
}

func stCheck(idx uint64, rec []byte) error {
	if len(rec) < 16 || binary.LittleEndian.Uint64(rec) != idx || binary.LittleEndian.Uint64(rec[8:]) != uint64(len(rec)-16) {
		return fmt.Errorf("record %d: header %x does not describe it", idx, rec[:min(16, len(rec))])
	}
	if !bytes.Equal(rec, stRecord(idx, len(rec)-16)) {
		return fmt.Errorf("record %d: contents differ", idx)
	}
	return nil
}

// TestStressEverythingAtOnce runs appenders (single records and batches),
// random readers, iterators, tailers, TruncateFront and TruncateBack
// together, with segment recycling, for both persistence paths (meant for
// -race). Every record anyone reads must be the one written at its index,
// iterators must see consecutive indexes, and the log must reopen to a
// consistent state.
func TestStressEverythingAtOnce(t *testing.T) {
	rtEnv(t)
	for _, mode := range []Persist{PersistCacheFlush, PersistMsync} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := rtDir(t)
			o := &Options{SegmentSize: 1 << 20, Persist: mode, RecycleSegments: 2}
			l := rtOpen(t, dir, o)
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			defer cancel()
			var wg sync.WaitGroup
			var failed atomic.Value
			fail := func(err error) {
				failed.CompareAndSwap(nil, err)
				cancel()
			}
			var appended, reads, iterated, tailed, truncs atomic.Uint64
			// Appenders: each append's content follows the index it gets,
			// which it learns only from the return value, so it appends
			// under a lock of its own shared with TruncateBack (which
			// changes what the next index is).
			var appendMu sync.Mutex
			// backGen is odd while a TruncateBack runs and counts them: a
			// record it drops is cleared under a loop body that borrowed it
			// (the documented exception to the borrowed slice's lifetime).
			var backGen atomic.Uint64
			for w := range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(w), 1))
					for ctx.Err() == nil {
						appendMu.Lock()
						next := l.LastIndex() + 1
						var err error
						var got uint64
						if rng.IntN(4) == 0 {
							batch := make([][]byte, 1+rng.IntN(5))
							for i := range batch {
								batch[i] = stRecord(next+uint64(i), rng.IntN(3000))
							}
							got, err = l.AppendBatch(batch)
							appended.Add(uint64(len(batch)))
						} else {
							got, err = l.Append(stRecord(next, rng.IntN(3000)))
							appended.Add(1)
						}
						appendMu.Unlock()
						if err != nil {
							fail(fmt.Errorf("append: %w", err))
							return
						}
						if got != next {
							fail(fmt.Errorf("append got %d, expected %d", got, next))
							return
						}
					}
				}()
			}
			// Random readers.
			for r := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(r), 2))
					for ctx.Err() == nil {
						first, last := l.FirstIndex(), l.LastIndex()
						if last < first {
							continue
						}
						idx := first + rng.Uint64N(last-first+1)
						rec, err := l.Read(idx)
						if errors.Is(err, ErrNotFound) {
							continue // truncated meanwhile
						}
						if err == nil {
							err = stCheck(idx, rec)
						}
						if err != nil {
							fail(fmt.Errorf("read: %w", err))
							return
						}
						reads.Add(1)
					}
				}()
			}
			// Iterators, from the front and from the middle.
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					from := l.FirstIndex() + uint64(rand.IntN(50))
					it := l.Records(from)
					prev := uint64(0)
					gen := backGen.Load()
					for idx, rec := range it.All() {
						if prev != 0 && idx != prev+1 {
							fail(fmt.Errorf("iterator: %d after %d", idx, prev))
							return
						}
						if err := stCheck(idx, rec); err != nil {
							if g := backGen.Load(); g != gen || g%2 == 1 {
								break // TruncateBack dropped what this loop reads
							}
							fail(fmt.Errorf("iterator: %w", err))
							return
						}
						gen = backGen.Load()
						prev = idx
						iterated.Add(1)
						if ctx.Err() != nil || rand.IntN(500) == 0 {
							break
						}
					}
					if err := it.Err(); err != nil && !errors.Is(err, ErrNotFound) {
						fail(fmt.Errorf("iterator: %w", err))
						return
					}
				}
			}()
			// A tailer.
			wg.Add(1)
			go func() {
				defer wg.Done()
				tl := l.Tail(l.LastIndex() + 1)
				buf := make([]byte, 0, 4096)
				for {
					idx, rec, err := tl.Next(ctx, buf)
					if ctx.Err() != nil {
						return
					}
					if errors.Is(err, ErrNotFound) {
						tl = l.Tail(l.LastIndex() + 1) // cut from under it: follow the log again
						continue
					}
					if err == nil {
						err = stCheck(idx, rec)
					}
					if err != nil {
						fail(fmt.Errorf("tailer: %w", err))
						return
					}
					tailed.Add(1)
				}
			}()
			// Truncations.
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(9, 9))
				for ctx.Err() == nil {
					time.Sleep(time.Duration(5+rng.IntN(20)) * time.Millisecond)
					first, last := l.FirstIndex(), l.LastIndex()
					var err error
					if rng.IntN(5) == 0 && last > first+10 {
						appendMu.Lock()
						backGen.Add(1)
						err = l.TruncateBack(last - uint64(rng.IntN(10)))
						backGen.Add(1)
						appendMu.Unlock()
					} else if last > first+500 {
						err = l.TruncateFront(last - 300)
					}
					if err != nil {
						fail(fmt.Errorf("truncate: %w", err))
						return
					}
					truncs.Add(1)
				}
			}()
			wg.Wait()
			if err, _ := failed.Load().(error); err != nil {
				t.Fatal(err)
			}
			st := l.Stats()
			t.Logf("%d appended, %d reads, %d iterated, %d tailed, %d truncations, %d segments recycled",
				appended.Load(), reads.Load(), iterated.Load(), tailed.Load(), truncs.Load(), st.Recycled)
			if appended.Load() == 0 || reads.Load() == 0 || iterated.Load() == 0 || truncs.Load() == 0 {
				t.Fatal("some part of the stress did not run")
			}
			first, last := l.FirstIndex(), l.LastIndex()
			rtClose(t, l)
			l = rtOpen(t, dir, o)
			if l.FirstIndex() != first || l.LastIndex() != last {
				t.Fatalf("reopened as %d..%d, closed as %d..%d", l.FirstIndex(), l.LastIndex(), first, last)
			}
			it := l.Records(first)
			n := first
			for idx, rec := range it.All() {
				if idx != n {
					t.Fatalf("after reopen: %d where %d was expected", idx, n)
				}
				if err := stCheck(idx, rec); err != nil {
					t.Fatal(err)
				}
				n++
			}
			if err := it.Err(); err != nil || n != last+1 {
				t.Fatalf("after reopen: iterated to %d of %d: %v", n-1, last, err)
			}
		})
	}
}
