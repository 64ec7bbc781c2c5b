package wal

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
)

// Recycling (Options.RecycleSegments). A segment file that TruncateFront
// empties is renamed NAME.free instead of removed, up to the limit. The
// next segment is then made from a free file instead of a new one: renamed
// to its .seg.tmp name, zeroed in full and given a fresh header (a new
// salt) and made durable, and only then renamed to its segment name. A
// crash before that last rename leaves a .seg.tmp file, which recovery
// removes; after it, the file is indistinguishable from a newly created
// segment. No byte of the file's earlier life survives into its new one,
// and every record's checksum is salted with the segment's salt besides,
// so a stale record can never pass for a new one (FORMAT.md).

const freeSuffix = ".free"

func (l *Log) freePath(seq uint64) string {
	return filepath.Join(l.dir, strings.TrimSuffix(segName(seq), segSuffix)+freeSuffix)
}

// recycling reports whether emptied segments are kept for reuse.
func (l *Log) recycling() bool { return l.opts.RecycleSegments > 0 && !l.opts.ReadOnly }

// retire disposes of the file of a segment that holds no record of the
// log any more (already closed): kept as a free file when it is reusable
// (unpinned, of the current size) and recycling allows it, else removed.
func (l *Log) retire(s *segment, reusable bool) error {
	if l.recycling() && reusable {
		// Renamed under poolMu, so that the free files on the media are
		// never more than the limit.
		l.poolMu.Lock()
		kept := false
		if len(l.pool) < l.opts.RecycleSegments {
			free := l.freePath(s.seq)
			if err := l.media.Rename(s.path, free); err == nil {
				l.pool = append(l.pool, free)
				kept = true
			} // else remove it, below
		}
		l.poolMu.Unlock()
		if kept {
			return nil
		}
	}
	if err := l.media.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("wal: remove %s: %w", s.path, err)
	}
	return nil
}

// takeFree renames a free file to the temporary name of the segment at
// path and returns that name, or "" when there is none.
func (l *Log) takeFree(path string) string {
	l.poolMu.Lock()
	defer l.poolMu.Unlock()
	tmp := strings.TrimSuffix(path, segSuffix) + tmpSuffix
	for len(l.pool) > 0 {
		free := l.pool[0]
		l.pool = l.pool[1:]
		if err := l.media.Rename(free, tmp); err == nil {
			return tmp
		} else {
			l.log(slog.LevelWarn, "wal: could not reuse a free segment file", "file", free, "err", err)
		}
	}
	return ""
}

// reuseSegment makes the segment file path from tmp, a free file just
// renamed by takeFree, with header hdr. On failure nothing is left under
// path (tmp is removed, and recovery would remove it) and the caller
// creates the file anew.
func (l *Log) reuseSegment(tmp, path string, hdr []byte) (err error) {
	defer func() {
		if err != nil {
			l.media.Remove(tmp)
		}
	}()
	f, err := l.media.Open(tmp)
	if err != nil {
		return err
	}
	defer f.Close()
	if f.Size() != l.opts.SegmentSize {
		return fmt.Errorf("wal: %s: %d bytes, want %d", tmp, f.Size(), l.opts.SegmentSize)
	}
	m, err := f.Map(l.persist)
	if err != nil {
		return err
	}
	defer m.Unmap()
	mem := m.Bytes()
	err = guardFault("recycle", func() error {
		if m.Persist() == PersistMsync {
			clear(mem)
			copy(mem, hdr)
			return m.Sync(0, len(mem))
		}
		// Non-temporal stores: the zeros go to the media without a pass
		// of cache-line write-backs, and without evicting what appends use.
		zeros := make([]byte, 64<<10)
		for off := 0; off < len(mem); off += len(zeros) {
			m.StoreNT(off, zeros[:min(len(zeros), len(mem)-off)])
		}
		if err := m.Fence(); err != nil {
			return err
		}
		copy(mem, hdr)
		m.Flush(0, len(hdr))
		return m.Fence()
	})
	if err != nil {
		return err
	}
	if err := m.Unmap(); err != nil {
		return err
	}
	return l.media.Rename(tmp, path)
}

// adoptFree takes the free files recovery found: up to the limit, of the
// current segment size, are kept, in order; the rest are removed (a
// writer's Open only).
func (l *Log) adoptFree(names []string) error {
	sort.Strings(names)
	for _, name := range names {
		p := filepath.Join(l.dir, name)
		keep := false
		if l.recycling() && len(l.pool) < l.opts.RecycleSegments {
			if f, err := l.media.Open(p); err == nil {
				keep = f.Size() == l.opts.SegmentSize
				f.Close()
			}
		}
		if keep {
			l.pool = append(l.pool, p)
			continue
		}
		if l.opts.ReadOnly {
			continue
		}
		if err := l.media.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("wal: remove %s: %w", p, err)
		}
	}
	return nil
}
