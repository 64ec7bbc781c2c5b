package main

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pmwal/wal"
)

func runRepair(e env) error {
	fs := newFlags("repair", "DIR [--yes]",
		"Cuts the log at the last good record before the first corruption, as Open with\n"+
			"RepairCorruption does, after showing what would be dropped and asking for confirmation.\n"+
			"Before cutting it saves every byte range it drops (and every file it removes) in a tar\n"+
			"archive beside the log directory: DIR.dropped-TIME.tar, one member per range, named\n"+
			"FILE@OFFSET+LENGTH. A log without corruption is left alone (a torn tail is not corruption:\n"+
			"the next Open drops it). Exit 0 when repaired or nothing needed repair, 1 when the\n"+
			"repair was declined.", e.stderr)
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	pos, err := parse(fs, e.args, 1)
	if err != nil {
		return err
	}
	dir := pos[0]

	// First look, without repair: is there anything to do?
	l, err := openReadOnly(dir, false)
	if err == nil {
		rep := l.Recovery()
		l.Close()
		if rep.TornTail {
			fmt.Fprintf(e.stdout, "no corruption in %s: only a torn tail of %d bytes, which the next writer's Open drops by itself\n", dir, rep.DroppedBytes)
		} else {
			fmt.Fprintf(e.stdout, "no corruption in %s: nothing to repair\n", dir)
		}
		return nil
	}
	if !errors.Is(err, wal.ErrCorrupt) {
		return err
	}
	fmt.Fprintf(e.stdout, "corruption: %v\n", err)

	// The plan: the same repair, in a private view.
	l, err = openReadOnly(dir, true)
	if err != nil {
		return fmt.Errorf("planning the repair: %w", err)
	}
	plan := l.Recovery()
	first, last := l.FirstIndex(), l.LastIndex()
	l.Close()
	fmt.Fprintf(e.stdout, "the repair keeps records %d..%d; everything from record %d on is dropped:\n", first, last, last+1)
	removed := 0
	for _, d := range plan.Dropped {
		if d.Why == "repair: file removed" {
			removed++
		}
	}
	shown := 0
	for _, d := range plan.Dropped {
		if d.Why == "repair: file removed" && removed > 4 {
			if shown++; shown > 2 {
				if shown == 3 {
					fmt.Fprintf(e.stdout, "  ... and %d more segment files removed whole\n", removed-2)
				}
				continue
			}
		}
		fmt.Fprintf(e.stdout, "  %s offset %d, %d bytes (%s)\n", filepath.Base(d.File), d.Offset, d.Length, d.Why)
	}

	if !*yes {
		fmt.Fprint(e.stdout, "cut the log? type yes to go on: ")
		line, err := bufio.NewReader(e.stdin).ReadString('\n')
		if err != nil && line == "" {
			fmt.Fprintln(e.stdout)
			fmt.Fprintf(e.stderr, "pmwal repair: no confirmation on standard input; %s is unchanged (pass --yes to repair without asking)\n", dir)
			return fmt.Errorf("%w: no confirmation", errUsage)
		}
		if strings.TrimSpace(line) != "yes" {
			return fmt.Errorf("%w: repair declined; %s is unchanged", errProblem, dir)
		}
	}

	saved, err := saveDropped(dir, plan.Dropped)
	if err != nil {
		return fmt.Errorf("saving the bytes to drop (nothing was changed): %w", err)
	}
	fmt.Fprintf(e.stdout, "saved the dropped bytes in %s\n", saved)

	l, err = wal.Open(dir, &wal.Options{RepairCorruption: true, SegmentSize: logSegmentSize(dir)})
	if err != nil {
		return fmt.Errorf("repair: %w", err)
	}
	done := l.Recovery()
	first, last = l.FirstIndex(), l.LastIndex()
	if err := l.Close(); err != nil {
		return err
	}
	if fmt.Sprint(sameNames(done.Dropped)) != fmt.Sprint(sameNames(plan.Dropped)) {
		return fmt.Errorf("%w: the log changed between the plan and the repair: it dropped %v, the saved archive holds %v",
			errProblem, done.Dropped, plan.Dropped)
	}
	fmt.Fprintf(e.stdout, "repaired: %s now holds records %d..%d\n", dir, first, last)
	return nil
}

// sameNames strips what differs between two views of the same drops.
func sameNames(ds []wal.Extent) []wal.Extent {
	out := make([]wal.Extent, len(ds))
	for i, d := range ds {
		d.File = filepath.Base(d.File)
		out[i] = d
	}
	return out
}

// logSegmentSize returns the size of the log's newest segment file, so
// that a repair's Open keeps creating segments of the log's own size (0:
// the default).
func logSegmentSize(dir string) int64 {
	segs := segFiles(dir)
	if len(segs) == 0 {
		return 0
	}
	st, err := os.Stat(segs[len(segs)-1])
	if err != nil || st.Size() < 1<<20 || st.Size()%4096 != 0 || st.Size() >= 4<<30 {
		return 0
	}
	return st.Size()
}

// saveDropped writes the byte ranges a repair will drop, read from the
// files as they are now, into a tar archive beside dir, and makes it
// durable. It returns the archive's path.
func saveDropped(dir string, ds []wal.Extent) (path string, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	path = fmt.Sprintf("%s.dropped-%s.tar", abs, time.Now().UTC().Format("20060102T150405.000000000Z"))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(path)
		}
	}()
	tw := tar.NewWriter(f)
	for _, d := range ds {
		src, err := os.Open(d.File)
		if err != nil {
			return "", err
		}
		err = tw.WriteHeader(&tar.Header{
			Name: fmt.Sprintf("%s@%d+%d", filepath.Base(d.File), d.Offset, d.Length), Mode: 0o600,
			Size: d.Length, ModTime: time.Now(), Typeflag: tar.TypeReg,
		})
		if err == nil {
			_, err = io.Copy(tw, io.NewSectionReader(src, d.Offset, d.Length))
		}
		src.Close()
		if err != nil {
			return "", fmt.Errorf("%s offset %d: %w", d.File, d.Offset, err)
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	d, err := os.Open(filepath.Dir(abs))
	if err != nil {
		return "", err
	}
	defer d.Close()
	return path, d.Sync()
}
