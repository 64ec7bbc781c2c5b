package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/pmwal/wal"
	"golang.org/x/sys/unix"
)

// fsReport is what the file system under a log directory offers.
type fsReport struct {
	Filesystem string `json:"filesystem"`            // tmpfs, ext4, xfs, ... by statfs magic
	DAX        string `json:"dax"`                   // "yes", "no" or "unknown" (statx STATX_ATTR_DAX)
	DAXWhy     string `json:"dax_why"`               // which file statx looked at and what it said
	MapSync    bool   `json:"map_sync"`              // a MAP_SHARED_VALIDATE|MAP_SYNC mapping succeeded
	MapSyncWhy string `json:"map_sync_why"`          // the mmap error, or the file probed
	Auto       string `json:"auto"`                  // what PersistAuto chooses here
	AutoWhy    string `json:"auto_why"`              // why
	EnvPersist string `json:"wal_persist,omitempty"` // WAL_PERSIST, which overrides Options.Persist
}

var fsNames = map[int64]string{
	unix.TMPFS_MAGIC: "tmpfs", unix.EXT4_SUPER_MAGIC: "ext4 (or ext2/ext3)", unix.XFS_SUPER_MAGIC: "xfs",
	unix.BTRFS_SUPER_MAGIC: "btrfs", unix.NFS_SUPER_MAGIC: "nfs", unix.OVERLAYFS_SUPER_MAGIC: "overlayfs",
	0x2fc12fc1: "zfs", unix.F2FS_SUPER_MAGIC: "f2fs",
}

// probeFS inspects the file system of dir without writing to it: statfs
// for its type, statx for the DAX attribute of a segment file (or of dir),
// and a read-only MAP_SYNC mapping of a segment file, which the kernel
// grants only where the file is on a DAX file system (Linux 4.15+).
func probeFS(dir, segFile string) fsReport {
	var r fsReport
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err == nil {
		if name, ok := fsNames[int64(sfs.Type)]; ok {
			r.Filesystem = name
		} else {
			r.Filesystem = fmt.Sprintf("magic %#x", sfs.Type)
		}
	} else {
		r.Filesystem = "unknown: " + err.Error()
	}
	target := dir
	if segFile != "" {
		target = segFile
	}
	var stx unix.Statx_t
	switch err := unix.Statx(unix.AT_FDCWD, target, 0, unix.STATX_BASIC_STATS, &stx); {
	case err != nil:
		r.DAX, r.DAXWhy = "unknown", fmt.Sprintf("statx %s: %v", target, err)
	case stx.Attributes_mask&unix.STATX_ATTR_DAX == 0:
		r.DAX, r.DAXWhy = "unknown", fmt.Sprintf("statx %s: the kernel does not report the DAX attribute (Linux 5.8+ does)", target)
	case stx.Attributes&unix.STATX_ATTR_DAX != 0:
		r.DAX, r.DAXWhy = "yes", fmt.Sprintf("statx %s: STATX_ATTR_DAX set", target)
	default:
		r.DAX, r.DAXWhy = "no", fmt.Sprintf("statx %s: STATX_ATTR_DAX not set", target)
	}
	if segFile == "" {
		r.MapSyncWhy = "no segment file to probe"
	} else if f, err := os.Open(segFile); err != nil {
		r.MapSyncWhy = err.Error()
	} else {
		m, err := unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ, unix.MAP_SHARED_VALIDATE|unix.MAP_SYNC)
		if err == nil {
			r.MapSync, r.MapSyncWhy = true, "mmap MAP_SHARED_VALIDATE|MAP_SYNC of "+filepath.Base(segFile)+" succeeded"
			unix.Munmap(m)
		} else {
			r.MapSyncWhy = fmt.Sprintf("mmap MAP_SHARED_VALIDATE|MAP_SYNC of %s: %v", filepath.Base(segFile), err)
		}
		f.Close()
	}
	switch {
	case r.MapSync:
		r.Auto, r.AutoWhy = "dax", "MAP_SYNC works: appends are made durable by cache flush and fence, with no system call"
	case segFile == "":
		r.Auto, r.AutoWhy = "unknown", "decided when the first segment is mapped"
	default:
		r.Auto, r.AutoWhy = "msync", "MAP_SYNC refused: not a DAX file system; appends are made durable with msync"
		if r.Filesystem == "tmpfs" {
			r.AutoWhy += " (on tmpfs, --persist cacheflush runs the persistent-memory path, like PMDK's PMEM_IS_PMEM_FORCE=1)"
		}
	}
	r.EnvPersist = os.Getenv("WAL_PERSIST")
	return r
}

// segFiles lists the segment files in dir, oldest first: regular files
// named as the log names them (20 digits, then .seg). Not a glob, which
// would read a directory name holding [, * or ? as a pattern; not other
// kinds of file, which the log ignores too (opening a FIFO would block).
func segFiles(dir string) []string {
	ents, _ := os.ReadDir(dir) // sorted by name
	var m []string
	for _, e := range ents {
		num, ok := strings.CutSuffix(e.Name(), ".seg")
		if ok && len(num) == 20 && strings.Trim(num, "0123456789") == "" && e.Type().IsRegular() {
			m = append(m, filepath.Join(dir, e.Name()))
		}
	}
	return m
}

// infoReport is what pmwal info prints.
type infoReport struct {
	Dir          string       `json:"dir"`
	FS           fsReport     `json:"fs"`
	Hardware     wal.Hardware `json:"hardware"`
	Log          string       `json:"log"` // "ok", or why the log could not be opened read-only
	SegmentFiles int          `json:"segment_files"`
	SegmentSize  int64        `json:"segment_size"`
	Segments     int          `json:"segments_in_use"`
	FirstIndex   uint64       `json:"first_index"`
	LastIndex    uint64       `json:"last_index"`
	BytesUsed    int64        `json:"bytes_used"`
	BytesFree    int64        `json:"bytes_free"`
	TornTail     bool         `json:"torn_tail"`
	Dropped      []wal.Extent `json:"would_drop,omitempty"`
}

func runInfo(e env) error {
	fs := newFlags("info", "[--json] DIR",
		"Shows the persistence path a writer gets in DIR and why (MAP_SYNC/DAX, msync or cache flush),\n"+
			"whether the file system reports DAX, the flush instruction, non-temporal threshold and eADR,\n"+
			"and the log's segments, index range and space. Read-only.", e.stderr)
	asJSON := fs.Bool("json", false, "print JSON instead of text")
	pos, err := parse(fs, e.args, 1)
	if err != nil {
		return err
	}
	dir := pos[0]
	if st, err := os.Stat(dir); err != nil {
		return err
	} else if !st.IsDir() {
		return fmt.Errorf("%s is not a directory: %w", dir, unix.ENOTDIR)
	}
	hw, err := wal.DetectHardware()
	if err != nil {
		return err
	}
	segs := segFiles(dir)
	r := infoReport{Dir: dir, Hardware: hw, SegmentFiles: len(segs), Log: "ok"}
	probe := ""
	if len(segs) > 0 {
		probe = segs[len(segs)-1]
		if st, err := os.Stat(probe); err == nil {
			r.SegmentSize = st.Size()
		}
	}
	r.FS = probeFS(dir, probe)
	l, err := openReadOnly(dir, false)
	switch {
	case err == nil:
		st := l.Stats()
		r.Segments, r.FirstIndex, r.LastIndex, r.BytesUsed, r.BytesFree = st.Segments, st.FirstIndex, st.LastIndex, st.BytesUsed, st.BytesFree
		r.TornTail, r.Dropped = st.Recovery.TornTail, st.Recovery.Dropped
		l.Close()
	case errors.Is(err, wal.ErrLocked):
		r.Log = "in use by a writer (locked): index range not shown; info never takes a writer's lock"
	case errors.Is(err, os.ErrNotExist):
		r.Log = "no log in this directory yet"
	default:
		r.Log = err.Error()
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else {
		printInfo(e.stdout, r)
	}
	if errors.Is(err, wal.ErrCorrupt) {
		return fmt.Errorf("%w: %v (run pmwal verify for details)", errProblem, err)
	}
	return nil
}

func printInfo(w io.Writer, r infoReport) {
	p := func(k, f string, a ...any) { fmt.Fprintf(w, "%-18s %s\n", k+":", fmt.Sprintf(f, a...)) }
	p("directory", "%s", r.Dir)
	p("file system", "%s", r.FS.Filesystem)
	p("DAX", "%s (%s)", r.FS.DAX, r.FS.DAXWhy)
	p("MAP_SYNC", "%v (%s)", r.FS.MapSync, r.FS.MapSyncWhy)
	p("persistence", "%s with PersistAuto: %s", r.FS.Auto, r.FS.AutoWhy)
	if r.FS.EnvPersist != "" {
		p("", "WAL_PERSIST=%s is set and overrides the mode a program asks for", r.FS.EnvPersist)
	}
	nt := "never"
	if r.Hardware.NTThreshold >= 0 {
		nt = fmt.Sprintf("from %d bytes (%s)", r.Hardware.NTThreshold, r.Hardware.NTStores)
	}
	p("flush", "%s on %s CPU; non-temporal stores %s", r.Hardware.Flush, r.Hardware.CPU, nt)
	p("eADR", "%v", r.Hardware.EADR)
	p("log", "%s", r.Log)
	if r.SegmentFiles > 0 {
		p("segment files", "%d of %d bytes", r.SegmentFiles, r.SegmentSize)
	}
	if r.Log != "ok" {
		return
	}
	p("segments in use", "%d", r.Segments)
	if r.LastIndex >= r.FirstIndex {
		p("records", "%d..%d (%d records)", r.FirstIndex, r.LastIndex, r.LastIndex-r.FirstIndex+1)
	} else {
		p("records", "none (the next append gets index %d)", r.FirstIndex)
	}
	p("bytes", "%d used, %d free in the active segment", r.BytesUsed, r.BytesFree)
	if r.TornTail {
		var parts []string
		for _, d := range r.Dropped {
			if d.Why == "torn tail" {
				parts = append(parts, fmt.Sprintf("%s offset %d, %d bytes", filepath.Base(d.File), d.Offset, d.Length))
			}
		}
		p("torn tail", "%s (the next writer's Open drops it)", strings.Join(parts, "; "))
	}
}
