package wal

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestOsMediaDurabilityOrder checks the order of fsyncs, renames and
// directory syncs in the OS Media's writing operations: file contents
// durable before the rename that publishes them, the rename durable
// before the operation returns. Neither the crash simulator (which stands
// in for this layer) nor a killed process (whose page cache survives) can
// see a missing fsync here, so the order is checked directly.
func TestOsMediaDurabilityOrder(t *testing.T) {
	h, err := resolveHW("/sys")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		do   func(m *osMedia, dir string) error
		want func(dir string) []string
	}{
		{"ReplaceFile",
			func(m *osMedia, dir string) error {
				return m.ReplaceFile(filepath.Join(dir, "META"), []byte("meta"), 0o600)
			},
			func(dir string) []string {
				return []string{"fsync " + filepath.Join(dir, "META.tmp"), "rename " + filepath.Join(dir, "META"), "syncdir " + dir}
			}},
		{"Rename",
			func(m *osMedia, dir string) error {
				if err := os.WriteFile(filepath.Join(dir, "a"), nil, 0o600); err != nil {
					return err
				}
				return m.Rename(filepath.Join(dir, "a"), filepath.Join(dir, "b"))
			},
			func(dir string) []string { return []string{"rename " + filepath.Join(dir, "b"), "syncdir " + dir} }},
		{"CreateSegment",
			func(m *osMedia, dir string) error {
				return m.CreateSegment(filepath.Join(dir, segName(1)), minSegmentSize, []byte("header"), 0o600)
			},
			func(dir string) []string {
				return []string{"fsync " + filepath.Join(dir, "00000000000000000001"+tmpSuffix), "rename " + filepath.Join(dir, segName(1)), "syncdir " + dir}
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			var got []string
			m := &osMedia{hw: &h, trace: func(op, path string) { got = append(got, op+" "+path) }}
			if err := c.do(m, dir); err != nil {
				t.Fatal(err)
			}
			if want := c.want(dir); !slices.Equal(got, want) {
				t.Errorf("durability steps\n got %q\nwant %q", got, want)
			}
		})
	}
	// What ReplaceFile published is what it was given, and no temporary
	// file is left.
	dir := t.TempDir()
	m := &osMedia{hw: &h}
	if err := m.ReplaceFile(filepath.Join(dir, "META"), []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.ReplaceFile(filepath.Join(dir, "META"), []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "META")); err != nil || !bytes.Equal(b, []byte("two")) {
		t.Errorf("META = %q, %v; want \"two\"", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "META.tmp")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("META.tmp left behind: %v", err)
	}
}
