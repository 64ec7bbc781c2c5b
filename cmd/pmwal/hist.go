package main

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// hist is a latency histogram with log-linear buckets: 16 sub-buckets per
// power of two, so any value is placed within 1/16 (6.25%) of its size.
// Record is safe to call from one goroutine while others read it.
type hist struct {
	counts [64 * histSub]atomic.Uint64
	max    atomic.Int64
}

const (
	histSubBits = 4
	histSub     = 1 << histSubBits
)

// bucket returns the bucket of a value in nanoseconds.
func bucket(v uint64) int {
	if v < histSub {
		return int(v)
	}
	e := bits.Len64(v) - 1 // v in [2^e, 2^(e+1))
	sub := (v >> (e - histSubBits)) & (histSub - 1)
	return (e-histSubBits+1)*histSub + int(sub)
}

// bucketLow returns the smallest value in bucket b.
func bucketLow(b int) uint64 {
	if b < histSub {
		return uint64(b)
	}
	e := b/histSub + histSubBits - 1
	sub := uint64(b % histSub)
	return 1<<e | sub<<(e-histSubBits)
}

// Record adds one observation.
func (h *hist) Record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[bucket(uint64(v))].Add(1)
	if v > h.max.Load() {
		h.max.Store(v) // one writer per hist: no lost update
	}
}

// snapshot is a copy of a histogram's counts, for percentiles.
type snapshot struct {
	counts [64 * histSub]uint64
	n      uint64
	max    int64
}

// Snapshot adds h's counts into s.
func (s *snapshot) Add(h *hist) {
	for i := range h.counts {
		c := h.counts[i].Load()
		s.counts[i] += c
		s.n += c
	}
	s.max = max(s.max, h.max.Load())
}

// Sub returns s minus an earlier snapshot of the same histograms.
func (s *snapshot) Sub(earlier *snapshot) snapshot {
	d := *s
	for i := range d.counts {
		d.counts[i] -= earlier.counts[i]
	}
	d.n -= earlier.n
	return d
}

// Quantile returns the value below which a fraction q of the observations
// lie: the middle of the bucket holding it, capped at the maximum seen.
func (s *snapshot) Quantile(q float64) time.Duration {
	if s.n == 0 {
		return 0
	}
	rank := uint64(q*float64(s.n-1)) + 1
	var seen uint64
	for b, c := range s.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketLow(b), bucketLow(b+1)
			return min(time.Duration(lo+(hi-lo)/2), time.Duration(s.max))
		}
	}
	return time.Duration(s.max)
}
