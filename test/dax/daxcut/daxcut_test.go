package daxcut

import (
	"math/rand/v2"
	"strings"
	"testing"
)

const testSeed = 42

// appendCalls returns the payloads of calls of the given sizes, appended by
// boot inc from index first.
func appendCalls(inc uint32, first uint64, sizes ...int) [][]byte {
	rng := rand.New(rand.NewPCG(1, uint64(inc)))
	var out [][]byte
	for _, n := range sizes {
		for j := 0; j < n; j++ {
			r := Rec{Index: first + uint64(j), CallFirst: first, CallSize: uint16(n), Inc: inc, Len: Len(rng)}
			out = append(out, Payload(nil, testSeed, r))
		}
		first += uint64(n)
	}
	return out
}

// verify runs a Verifier over recs (index 1 onward) and returns the summary
// a guest would report.
func verify(inc uint32, recs [][]byte) Summary {
	v := Verifier{Seed: testSeed}
	s := Summary{Inc: inc, First: 1, Last: uint64(len(recs)), Persist: "dax"}
	for i, b := range recs {
		if err := v.Next(uint64(i+1), b); err != nil {
			s.Bad = append(s.Bad, err.Error())
			return s
		}
	}
	if err := v.End(s.Last); err != nil {
		s.Bad = append(s.Bad, err.Error())
	}
	s.Runs = v.Runs
	return s
}

func TestPayloadRoundTrip(t *testing.T) {
	var scratch []byte
	for i, b := range appendCalls(3, 1, 1, 5, 1, 8) {
		r, err := Decode(b, testSeed, uint64(i+1), &scratch)
		if err != nil || r.Inc != 3 || r.Index != uint64(i+1) {
			t.Fatalf("record %d: %+v, %v", i+1, r, err)
		}
		for _, k := range []int{0, 9, HdrSize, len(b) - 1} {
			bad := append([]byte(nil), b...)
			bad[k] ^= 0x10
			if _, err := Decode(bad, testSeed, uint64(i+1), &scratch); err == nil {
				t.Fatalf("record %d with byte %d flipped verified", i+1, k)
			}
		}
		if _, err := Decode(b, testSeed, uint64(i+2), &scratch); err == nil {
			t.Fatalf("record %d verified at index %d", i+1, i+2)
		}
		if _, err := Decode(b[:len(b)-1], testSeed, uint64(i+1), &scratch); err == nil {
			t.Fatalf("record %d cut short verified", i+1)
		}
	}
}

func TestVerifierRejects(t *testing.T) {
	ok := appendCalls(1, 1, 1, 4, 2)
	if s := verify(2, ok); len(s.Bad) > 0 || len(s.Runs) != 1 {
		t.Fatalf("a good log: %+v", s)
	}
	later := appendCalls(2, 8, 3)
	cases := map[string][][]byte{
		"torn batch at the end":     ok[:4],                                          // 1 + 3 of a batch of 4
		"batch cut short by a call": append(append([][]byte{}, ok[:3]...), later[0]), // wrong index too
		"incarnation going back":    append(append(append([][]byte{}, ok...), later...), appendCalls(1, 11, 1)...),
		"missing record":            append(append([][]byte{}, ok[:1]...), ok[2:]...),
	}
	for name, recs := range cases {
		if s := verify(3, recs); len(s.Bad) == 0 {
			t.Errorf("%s: verified", name)
		}
	}
}

func TestOracle(t *testing.T) {
	var o Oracle
	// Boot 1 appends 1..10 (acked up to 6) and is cut; boot 2 finds 1..8.
	b1 := appendCalls(1, 1, 1, 4, 1, 2, 2)
	o.Started(1, 1)
	if err := o.Acked(1, 6); err != nil {
		t.Fatal(err)
	}
	if v := o.Check(verify(2, b1[:8])); len(v) > 0 {
		t.Fatalf("a good recovery failed: %v", v)
	}
	// Boot 2 appends from 9, acks 9..12, cut; boot 3 finds 1..13.
	b2 := appendCalls(2, 9, 2, 2, 1)
	log3 := append(append([][]byte{}, b1[:8]...), b2...)
	o.Started(2, 9)
	o.Acked(2, 12)
	bad := func(name string, s Summary, want string) {
		t.Helper()
		saved := o
		saved.verified = append([]Run(nil), o.verified...)
		v := o.Check(s)
		o = saved
		if len(v) == 0 || !strings.Contains(strings.Join(v, "\n"), want) {
			t.Errorf("%s: violations %q, want one containing %q", name, v, want)
		}
	}
	bad("acked lost", verify(3, log3[:10]), "acknowledged records were lost")
	bad("verified lost", verify(3, log3[:6]), "an earlier recovery kept records up to 8")
	resurrected := append(append([][]byte{}, b1...), appendCalls(2, 11, 2)...) // boot 1's 9,10 came back
	bad("resurrection", verify(3, resurrected), "acknowledged by boot 2, is from boot 1")
	s := verify(3, log3)
	s.Persist = "msync"
	bad("not dax", s, "Persist() = msync")
	s = verify(3, log3)
	s.First = 2
	bad("first", s, "FirstIndex is 2")
	if v := o.Check(verify(3, log3)); len(v) > 0 {
		t.Fatalf("a good recovery failed: %v", v)
	}
	// Boot 3 is cut before it appends; boot 4 finds a record of boot 1
	// past what boot 3 verified: a dropped record came back.
	o.Started(3, 14)
	bad("dropped came back", verify(4, append(append([][]byte{}, log3...), appendCalls(1, 14, 1)...)), "a dropped record came back")
	if v := o.Check(verify(4, append(append([][]byte{}, log3...), appendCalls(3, 14, 3)...))); len(v) > 0 {
		t.Fatalf("boot 3's unacknowledged batch kept: %v", v)
	}
	if o.Checks != 3 || o.KeptUnacked != 2+1+3 {
		t.Fatalf("checks %d, kept unacked %d", o.Checks, o.KeptUnacked)
	}
}
