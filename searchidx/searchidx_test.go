package searchidx

import (
	"bytes"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// doc is a test message: header text and body parts, already folded.
type doc struct {
	uid    uint32
	header string
	parts  []string
}

func (d doc) feed() *Doc {
	x := NewDoc(d.uid)
	x.Reset(false)
	x.Write([]byte(d.header))
	for _, p := range d.parts {
		x.Reset(true)
		// in pieces, so tokens span writes
		for len(p) > 0 {
			n := min(len(p), 3)
			x.Write([]byte(p[:n]))
			p = p[n:]
		}
	}
	return x
}

// scan is the reference: does the text (parts apart) contain the needle?
func (d doc) scan(needle string, body bool) bool {
	if !body && strings.Contains(d.header, needle) {
		return true
	}
	for _, p := range d.parts {
		if strings.Contains(p, needle) {
			return true
		}
	}
	return false
}

var words = []string{"hello", "world", "über", "straße", "mail", "post", "postie", "a", "an", "x1", "42",
	"café", "re:", "foo@bar.example", "<id@x>", "[list]", "mañana", "hellohello", strings.Repeat("z", 70)}

func randomText(r *rand.Rand, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(words[r.IntN(len(words))])
		b.WriteString([]string{" ", "\n", ", ", "-", ""}[r.IntN(5)])
	}
	return b.String()
}

func randomDocs(r *rand.Rand, n int) []doc {
	var docs []doc
	for i := 0; i < n; i++ {
		d := doc{uid: uint32(i*2 + 1), header: "subject: " + randomText(r, 4) + "\n"}
		for p := r.IntN(3); p >= 0; p-- {
			d.parts = append(d.parts, randomText(r, 10))
		}
		docs = append(docs, d)
	}
	return docs
}

var needles = []string{"hello", "ello", "llo wor", "wor", "über", "ber", "straße", "x1", "4", "@bar", "foo@bar",
	"id@x", ", ", "-", "hellohello", "ohe", "zzz", strings.Repeat("z", 66), "mañ", "nothing", "a", "re:", "post"}

// The index never excludes a message the scan finds, and where it says it decides, it agrees.
func checkAgainstScan(t *testing.T, x *Index, docs []doc) {
	t.Helper()
	for _, n := range needles {
		for _, body := range []bool{false, true} {
			r := x.Query([]byte(n), body)
			for _, d := range docs {
				want := d.scan(n, body)
				if want && r.Excludes(d.uid) {
					t.Errorf("needle %q body=%v: uid %d excluded but contains it", n, body, d.uid)
				}
				if !want && r.Includes(d.uid) {
					t.Errorf("needle %q body=%v: uid %d included but does not contain it", n, body, d.uid)
				}
				if r.Decided && !r.Excludes(d.uid) && !r.Includes(d.uid) && !r.maybe.has(d.uid) {
					t.Errorf("needle %q: decided but uid %d neither in nor out", n, d.uid)
				}
			}
		}
	}
}

func TestQueryMatchesScan(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	docs := randomDocs(r, 300)
	x := New(filepath.Join(t.TempDir(), "i.idx"), 7)
	r.Shuffle(len(docs), func(i, j int) { docs[i], docs[j] = docs[j], docs[i] }) // added out of order, as in parallel
	for i, d := range docs {
		x.Add(d.feed(), false)
		if i == 150 {
			x.mu.Lock()
			x.mergeLocked() // half frozen, half delta
			x.mu.Unlock()
		}
	}
	checkAgainstScan(t, x, docs)
	// A one-run needle is decided; "ello" is in messages with hello but not only those with the
	// token "ello": the index must have found it inside tokens.
	res := x.Query([]byte("ello"), false)
	if !res.Decided || res.Candidates() == 0 {
		t.Errorf("ello: decided %v, %d candidates", res.Decided, res.Candidates())
	}
	if res := x.Query([]byte(", "), false); !res.Undecided {
		t.Errorf(`", " should be undecided`)
	}

	// Saved and loaded, it answers the same; expunged messages drop out.
	if err := x.Save(); err != nil {
		t.Fatal(err)
	}
	y, err := Open(x.path)
	if err != nil {
		t.Fatal(err)
	}
	checkAgainstScan(t, y, docs)
	if y.Validity() != 7 || y.Stats().Docs != len(docs) {
		t.Errorf("loaded: validity %d, %d docs", y.Validity(), y.Stats().Docs)
	}
	var live []uint32
	for _, d := range docs[100:] {
		live = append(live, d.uid)
	}
	slices.Sort(live)
	y.Retain(live)
	if y.Covers(docs[0].uid) || !y.Covers(docs[100].uid) {
		t.Error("Retain kept an expunged UID or dropped a live one")
	}
	if m := y.Missing(append(live, 9999)); len(m) != 1 || m[0] != 9999 {
		t.Errorf("Missing = %v", m)
	}
}

func TestFailedDocIsAlwaysACandidate(t *testing.T) {
	x := New(filepath.Join(t.TempDir(), "i.idx"), 1)
	x.Add(doc{uid: 1, parts: []string{"hello"}}.feed(), false)
	x.Add(NewDoc(2), true)
	r := x.Query([]byte("hello"), false)
	if !r.Includes(1) || r.Excludes(2) || r.Includes(2) {
		t.Errorf("hello: includes 1 %v, excludes 2 %v, includes 2 %v", r.Includes(1), r.Excludes(2), r.Includes(2))
	}
	if r.Excludes(3) { // not covered: never excluded
		t.Error("an uncovered UID was excluded")
	}
}

// A damaged file is refused, whatever byte is changed or wherever it is cut.
func TestCorruptFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "i.idx")
	x := New(path, 3)
	for _, d := range randomDocs(rand.New(rand.NewPCG(3, 4)), 20) {
		x.Add(d.feed(), false)
	}
	if err := x.Save(); err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(path)
	if _, err := Open(path); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]byte{
		good[:len(good)-1],
		append(bytes.Clone(good[:len(good)-1]), good[len(good)-1]^1), // only the checksum is wrong
		good[:len(magic)+2],
		append(bytes.Clone(good[:len(good)/2]), append([]byte{good[len(good)/2] ^ 0x40}, good[len(good)/2+1:]...)...),
		[]byte("postie-searchidx 0\n" + string(good[len(magic):])),
		{},
	} {
		os.WriteFile(path, bad, 0o600)
		y, err := Open(path)
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%d bytes: err %v, want ErrCorrupt", len(bad), err)
		}
		if y == nil || y.Stats().Docs != 0 {
			t.Error("a corrupt file must give an empty, usable index")
		}
	}
	os.Remove(path)
	if _, err := Open(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}
