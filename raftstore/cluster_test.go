package raftstore

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/pmwal/wal"
)

// testFSM is a small state machine: a key/value map, the set of command
// ids applied, and a hash chain over every command in the order applied.
// Two FSMs that applied the same commands in the same order are equal.
type testFSM struct {
	mu sync.Mutex
	st fsmState
}

type fsmState struct {
	KV      map[string]uint64
	Applied []byte // bit i: command i was applied
	Count   uint64 // commands applied, duplicates included
	Chain   uint64 // hash chain over the commands in order
	Last    uint64 // raft index of the last command applied
}

// command i sets key k<i%97> to i.
func command(i int) []byte { return binary.BigEndian.AppendUint64(nil, uint64(i)) }

func (f *testFSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand || len(l.Data) != 8 {
		return fmt.Errorf("unexpected entry %d type %v len %d", l.Index, l.Type, len(l.Data))
	}
	i := binary.BigEndian.Uint64(l.Data)
	f.mu.Lock()
	defer f.mu.Unlock()
	s := &f.st
	if s.KV == nil {
		s.KV = map[string]uint64{}
	}
	s.KV[fmt.Sprintf("k%d", i%97)] = i
	for uint64(len(s.Applied)) <= i/8 {
		s.Applied = append(s.Applied, 0)
	}
	s.Applied[i/8] |= 1 << (i % 8)
	s.Count++
	s.Last = l.Index
	h := fnv.New64a()
	binary.Write(h, binary.BigEndian, [2]uint64{s.Chain, i})
	s.Chain = h.Sum64()
	return nil
}

func (f *testFSM) state() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := json.Marshal(f.st) // map keys are sorted: deterministic
	if err != nil {
		panic(err)
	}
	return b
}

func (f *testFSM) last() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st.Last
}

func (f *testFSM) Snapshot() (raft.FSMSnapshot, error) { return fsmSnapshot(f.state()), nil }

func (f *testFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var st fsmState
	if err := json.NewDecoder(rc).Decode(&st); err != nil {
		return err
	}
	f.mu.Lock()
	f.st = st
	f.mu.Unlock()
	return nil
}

type fsmSnapshot []byte

func (s fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s fsmSnapshot) Release() {}

// node is one cluster member; everything it keeps lives under dir.
type node struct {
	id    raft.ServerID
	addr  raft.ServerAddress
	dir   string
	store *Store
	fsm   *testFSM
	trans *raft.InmemTransport
	raft  *raft.Raft
}

type cluster struct {
	t     *testing.T
	opts  *wal.Options
	nodes []*node
}

func (c *cluster) config(id raft.ServerID) *raft.Config {
	conf := raft.DefaultConfig()
	conf.LocalID = id
	conf.HeartbeatTimeout = 200 * time.Millisecond
	conf.ElectionTimeout = 200 * time.Millisecond
	conf.LeaderLeaseTimeout = 100 * time.Millisecond
	conf.CommitTimeout = 5 * time.Millisecond
	// Snapshots only when the test asks, keeping few entries behind.
	conf.SnapshotThreshold = 1 << 40
	conf.SnapshotInterval = time.Hour
	conf.TrailingLogs = 200
	conf.Logger = hclog.NewNullLogger()
	return conf
}

// start opens n's store from its directory and starts raft on it,
// connected to every running node.
func (c *cluster) start(n *node) {
	t := c.t
	t.Helper()
	var err error
	if n.store, err = Open(filepath.Join(n.dir, "store"), c.opts); err != nil {
		t.Fatal(err)
	}
	snaps, err := raft.NewFileSnapshotStore(filepath.Join(n.dir, "snapshots"), 2, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	logs, err := raft.NewLogCache(128, n.store)
	if err != nil {
		t.Fatal(err)
	}
	_, n.trans = raft.NewInmemTransport(n.addr)
	for _, o := range c.nodes {
		if o != n && o.raft != nil {
			n.trans.Connect(o.addr, o.trans)
			o.trans.Connect(n.addr, n.trans)
		}
	}
	n.fsm = &testFSM{}
	if n.raft, err = raft.NewRaft(c.config(n.id), n.fsm, logs, n.store, snaps, n.trans); err != nil {
		t.Fatal(err)
	}
}

// stop shuts n down and closes its store, as a process exit would.
func (c *cluster) stop(n *node) {
	c.t.Helper()
	for _, o := range c.nodes {
		if o != n && o.trans != nil {
			o.trans.Disconnect(n.addr)
		}
	}
	if err := n.raft.Shutdown().Error(); err != nil {
		c.t.Fatal(err)
	}
	n.trans.DisconnectAll()
	n.trans.Close()
	if err := n.store.Close(); err != nil {
		c.t.Fatal(err)
	}
	n.raft, n.trans, n.store = nil, nil, nil
}

// leader waits for one running node to be leader and returns it.
func (c *cluster) leader() *node {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range c.nodes {
			if n.raft != nil && n.raft.State() == raft.Leader {
				return n
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatal("no leader elected within 30s")
	return nil
}

// apply applies commands [from, to) through the leader, many futures in
// flight at once, retrying a window on a leadership change (a command
// may then be applied twice; the test counts distinct ids).
func (c *cluster) apply(from, to int) {
	c.t.Helper()
	const window = 512
	for i := from; i < to; {
		end := min(i+window, to)
		l := c.leader()
		futures := make([]raft.ApplyFuture, 0, end-i)
		for j := i; j < end; j++ {
			futures = append(futures, l.raft.Apply(command(j), 10*time.Second))
		}
		var err error
		for _, f := range futures {
			if e := f.Error(); e != nil && err == nil {
				err = e
			} else if e == nil && f.Response() != nil {
				c.t.Fatalf("FSM: %v", f.Response())
			}
		}
		switch {
		case err == nil:
			i = end
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrEnqueueTimeout):
			c.t.Logf("commands %d..%d: %v; retrying", i, end-1, err)
		default:
			c.t.Fatalf("apply %d..%d: %v", i, end-1, err)
		}
	}
}

// converge waits until every running node's FSM has applied every command
// the leader's has.
func (c *cluster) converge() {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		l := c.leader()
		if err := l.raft.Barrier(10 * time.Second).Error(); err != nil {
			c.t.Logf("barrier: %v", err)
			continue
		}
		want := l.fsm.last()
		for time.Now().Before(deadline) {
			done := true
			for _, n := range c.nodes {
				if n.raft != nil && n.fsm.last() < want {
					done = false
				}
			}
			if done {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	c.t.Fatal("nodes did not converge within 60s")
}

// snapshot takes a snapshot on every running node and checks that each
// compacted its log: FirstIndex moves to TrailingLogs behind the
// snapshot, or past it.
func (c *cluster) snapshot() {
	c.t.Helper()
	for _, n := range c.nodes {
		if n.raft == nil {
			continue
		}
		if err := n.raft.Snapshot().Error(); err != nil {
			c.t.Fatalf("%s: snapshot: %v", n.id, err)
		}
		first, _ := n.store.FirstIndex()
		last, _ := n.store.LastIndex()
		snapIdx := snapshotIndex(n)
		if snapIdx == 0 || first == 0 || first+c.config("").TrailingLogs < snapIdx {
			c.t.Fatalf("%s: snapshot at %d, log %d..%d: not compacted", n.id, snapIdx, first, last)
		}
		if first < 2 {
			c.t.Fatalf("%s: log still starts at %d", n.id, first)
		}
	}
}

func snapshotIndex(n *node) uint64 {
	var idx uint64
	fmt.Sscan(n.raft.Stats()["last_snapshot_index"], &idx)
	return idx
}

// TestCluster runs three raft nodes in one process, each on its own Store,
// through leader elections, a restart from disk with log replay, a
// restart that needs a snapshot install, and compactions, and checks that
// all FSMs end identical with all 10,000 commands applied.
func TestCluster(t *testing.T) {
	const total = 10000
	dir, p := testDir(t)
	c := &cluster{t: t, opts: testOpts(p)}
	var servers []raft.Server
	for i := range 3 {
		n := &node{
			id:   raft.ServerID(fmt.Sprintf("node%d", i)),
			addr: raft.ServerAddress(fmt.Sprintf("addr%d", i)),
			dir:  filepath.Join(dir, fmt.Sprintf("node%d", i)),
		}
		c.nodes = append(c.nodes, n)
		servers = append(servers, raft.Server{ID: n.id, Address: n.addr})
	}
	for _, n := range c.nodes {
		c.start(n)
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			if n.raft != nil {
				n.raft.Shutdown().Error()
				n.store.Close()
			}
		}
	})
	if err := c.nodes[0].raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		t.Fatal(err)
	}

	// 1. Elect, apply, stop the leader, apply more without it, restart it
	// from its own log and stable store: it catches up by replication.
	c.apply(0, 3000)
	old := c.leader()
	oldLast, _ := old.store.LastIndex()
	oldTerm, _ := old.store.GetUint64([]byte("CurrentTerm"))
	c.stop(old)
	c.apply(3000, 5000)
	c.start(old)
	if last, _ := old.store.LastIndex(); last < oldLast {
		t.Fatalf("%s reopened with last index %d, had %d", old.id, last, oldLast)
	}
	if term, _ := old.store.GetUint64([]byte("CurrentTerm")); term < oldTerm || term == 0 {
		t.Fatalf("%s reopened with term %d, had %d", old.id, term, oldTerm)
	}
	c.apply(5000, 6000)
	c.converge()

	// 2. Snapshot and compact every node.
	c.snapshot()

	// 3. Stop the leader again; the others move on and compact past its
	// log, so on restart it must install a snapshot (raft then deletes
	// its whole log and stores from the snapshot index on).
	old = c.leader()
	oldLast, _ = old.store.LastIndex()
	c.stop(old)
	c.apply(6000, 8000)
	c.snapshot()
	leaderSnap := snapshotIndex(c.leader())
	c.start(old)
	c.apply(8000, total)
	c.converge()
	if got := snapshotIndex(old); got < leaderSnap || got <= oldLast {
		t.Fatalf("%s: last snapshot %d; it had log up to %d and should have installed the leader's snapshot at %d", old.id, got, oldLast, leaderSnap)
	}
	c.snapshot()

	// Every node holds the same state, with every command applied.
	want := c.nodes[0].fsm.state()
	for _, n := range c.nodes {
		got := n.fsm.state()
		if string(got) != string(want) {
			t.Fatalf("%s FSM state differs from %s's", n.id, c.nodes[0].id)
		}
		var st fsmState
		if err := json.Unmarshal(got, &st); err != nil {
			t.Fatal(err)
		}
		for i := range total {
			if st.Applied[i/8]&(1<<(i%8)) == 0 {
				t.Fatalf("%s never applied command %d", n.id, i)
			}
		}
		if st.Count < total {
			t.Fatalf("%s applied %d commands", n.id, st.Count)
		}
		t.Logf("%s: %d commands applied, chain %x, log %v", n.id, st.Count, st.Chain, n.raft.Stats()["last_log_index"])
	}
}
