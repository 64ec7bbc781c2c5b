package main

import (
	"math"
	"math/bits"
	"sort"
	"time"
)

// Latencies are kept in a log-linear histogram: exact below 64 ns, then 32
// buckets per power of two, so a percentile read from it is within 1/64
// (about 1.6%) of the true sample. Recording costs a few instructions,
// which keeps latency sampling from dominating the measured operation.
const (
	histSubBits = 5
	histSub     = 1 << histSubBits // buckets per power of two
	histExact   = 2 * histSub      // values below this have their own bucket
	histBuckets = histExact + (63-histSubBits)*histSub
)

// histogram counts latency samples in nanoseconds.
type histogram struct {
	counts [histBuckets]uint64
	n      uint64
}

// bucketOf returns the bucket holding v nanoseconds (negative counts as 0).
func bucketOf(v int64) int {
	if v < histExact {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	e := bits.Len64(uint64(v)) - (histSubBits + 1) // v>>e is in [histSub, 2*histSub)
	m := v >> e
	return histExact + (e-1)*histSub + int(m-histSub)
}

// bucketMid returns the value that stands for bucket i: its midpoint.
func bucketMid(i int) float64 {
	if i < histExact {
		return float64(i)
	}
	e := (i-histExact)/histSub + 1
	m := int64((i-histExact)%histSub + histSub)
	lo := m << e
	hi := (m+1)<<e - 1
	return (float64(lo) + float64(hi)) / 2
}

// record adds one sample.
func (h *histogram) record(d time.Duration) {
	h.counts[bucketOf(int64(d))]++
	h.n++
}

// recordNS adds one sample given in nanoseconds.
func (h *histogram) recordNS(ns int64) {
	h.counts[bucketOf(ns)]++
	h.n++
}

// merge adds o's samples to h.
func (h *histogram) merge(o *histogram) {
	if o == nil {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

// count returns the number of samples.
func (h *histogram) count() uint64 { return h.n }

// percentile returns the p-th percentile (0 < p <= 100) in nanoseconds,
// or NaN when the histogram is empty.
func (h *histogram) percentile(p float64) float64 {
	if h.n == 0 {
		return math.NaN()
	}
	rank := uint64(math.Ceil(p / 100 * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return bucketMid(i)
		}
	}
	return bucketMid(histBuckets - 1)
}

// median returns the median of xs (the mean of the two middle values for
// an even count), or NaN for none. xs is not modified.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
