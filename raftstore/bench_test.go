package raftstore

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/pmwal/wal"
)

// benchFS is a filesystem the benchmarks run on and the pmwal persistence
// path that fits it.
type benchFS struct {
	name    string
	dir     string // parent directory; empty means b.TempDir()
	persist wal.Persist
}

// benchFilesystems: tmpfs with the persistent-memory path, and the working
// disk (the temporary directory, or RAFTSTORE_BENCH_DISK) with msync. The
// other stores use their normal fsync on both.
func benchFilesystems() []benchFS {
	fss := []benchFS{}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		fss = append(fss, benchFS{"shm", "/dev/shm", wal.PersistCacheFlush})
	}
	return append(fss, benchFS{"disk", os.Getenv("RAFTSTORE_BENCH_DISK"), wal.PersistMsync})
}

func benchDir(b *testing.B, parent string) string {
	if parent == "" {
		return b.TempDir()
	}
	dir, err := os.MkdirTemp(parent, "raftstore-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// benchStores opens each store compared, in a fresh directory.
var benchStores = []struct {
	name string
	open func(b *testing.B, dir string, p wal.Persist) (raft.LogStore, func() error)
}{
	{"pmwal", func(b *testing.B, dir string, p wal.Persist) (raft.LogStore, func() error) {
		s, err := Open(dir, &wal.Options{Persist: p}) // 64 MiB segments, like raft-wal's
		if err != nil {
			b.Fatal(err)
		}
		return s, s.Close
	}},
	{"raft-wal", func(b *testing.B, dir string, p wal.Persist) (raft.LogStore, func() error) {
		w, err := raftwal.Open(dir)
		if err != nil {
			b.Fatal(err)
		}
		return w, w.Close
	}},
	{"raft-boltdb", func(b *testing.B, dir string, p wal.Persist) (raft.LogStore, func() error) {
		s, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
		if err != nil {
			b.Fatal(err)
		}
		return s, s.Close
	}},
}

// BenchmarkStoreLogs stores batches of 64 entries of 256 bytes, as a raft
// follower does, in pmwal, raft-wal and raft-boltdb on the same
// filesystem, each batch durable before StoreLogs returns. Bytes per
// operation count the entries' data only.
func BenchmarkStoreLogs(b *testing.B) {
	const batch, size = 64, 256
	for _, fs := range benchFilesystems() {
		for _, st := range benchStores {
			b.Run("fs="+fs.name+"/store="+st.name, func(b *testing.B) {
				ls, closeFn := st.open(b, benchDir(b, fs.dir), fs.persist)
				defer closeFn()
				rng := rand.New(rand.NewPCG(1, 2))
				logs := make([]*raft.Log, batch)
				now := time.Now()
				for i := range logs {
					data := make([]byte, size)
					for j := range data {
						data[j] = byte(rng.Uint32())
					}
					logs[i] = &raft.Log{Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: now}
				}
				next := uint64(1)
				b.SetBytes(batch * size)
				b.ReportAllocs()
				for b.Loop() {
					for i, l := range logs {
						l.Index = next + uint64(i)
					}
					if err := ls.StoreLogs(logs); err != nil {
						b.Fatal(err)
					}
					next += batch
				}
			})
		}
	}
}
