//go:build race

package wal

// raceEnabled reports a -race build, where the race detector must see
// every publication as an atomic store.
const raceEnabled = true
