package junk

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postie/safeio"
)

var (
	hamWords    = strings.Fields("meeting project report budget schedule lunch tomorrow agenda minutes review draft quarterly team office invoice attached thanks regards colleague deadline proposal")
	spamWords   = strings.Fields("viagra lottery winner prize crypto casino pills discount unclaimed inheritance bitcoin jackpot miracle cheap replica guaranteed urgent wire refinance loan")
	commonWords = strings.Fields("the and you your for with this that have from will please today")
)

// mkMessage makes a message from the given sender with words drawn from
// pool (and common words), seeded so each call differs.
func mkMessage(rng *rand.Rand, from, subjectWord string, pool []string, n int) []byte {
	var body strings.Builder
	for i := 0; i < n; i++ {
		if rng.IntN(3) == 0 {
			body.WriteString(commonWords[rng.IntN(len(commonWords))])
		} else {
			body.WriteString(pool[rng.IntN(len(pool))])
		}
		body.WriteByte(' ')
	}
	return []byte(fmt.Sprintf("From: %s\r\nTo: ann@example.test\r\nSubject: %s %s\r\nMessage-ID: <%d@test>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n",
		from, subjectWord, pool[rng.IntN(len(pool))], rng.Uint64(), body.String()))
}

func readers(msgs ...[]byte) []io.Reader {
	out := make([]io.Reader, len(msgs))
	for i, m := range msgs {
		out[i] = bytes.NewReader(m)
	}
	return out
}

// trained returns a filter and a user file trained on n ham and n spam
// messages from many senders.
func trained(t testing.TB, n int) (*Filter, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "junk.db")
	f := New(Options{MinTrained: 20})
	rng := rand.New(rand.NewPCG(1, 2))
	var ham, spam [][]byte
	for i := 0; i < n; i++ {
		ham = append(ham, mkMessage(rng, fmt.Sprintf("colleague%d@work.test", i), "Re:", hamWords, 60))
		spam = append(spam, mkMessage(rng, fmt.Sprintf("promo%d@spam%d.test", i, i), "WIN", spamWords, 60))
	}
	if err := f.Train(path, false, readers(ham...)...); err != nil {
		t.Fatal(err)
	}
	if err := f.Train(path, true, readers(spam...)...); err != nil {
		t.Fatal(err)
	}
	return f, path
}

func classify(t testing.TB, f *Filter, path string, msg []byte, s Sender) Verdict {
	t.Helper()
	v, err := f.Classify(path, bytes.NewReader(msg), s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// After training, new spam-like mail from unknown senders is junk and
// ham-like mail is not; each verdict gives its reason and score.
func TestClassifyAfterTraining(t *testing.T) {
	f, path := trained(t, 40)
	rng := rand.New(rand.NewPCG(9, 9))
	for i := 0; i < 20; i++ {
		v := classify(t, f, path, mkMessage(rng, fmt.Sprintf("new%d@elsewhere.test", i), "WIN", spamWords, 50), Sender{})
		if !v.Junk || v.Score < 0.95 || !strings.HasPrefix(v.Reason, "bayes ") {
			t.Fatalf("spam-like message: %+v, want junk by bayes", v)
		}
		v = classify(t, f, path, mkMessage(rng, fmt.Sprintf("new%d@partner.test", i), "Re:", hamWords, 50), Sender{})
		if v.Junk || v.Score > 0.2 {
			t.Fatalf("ham-like message: %+v, want not junk", v)
		}
	}
	st, err := f.Status(path)
	if err != nil || st.Ham != 40 || st.Spam != 40 || st.Tokens == 0 || st.Senders != 80 {
		t.Fatalf("Status = %+v, %v", st, err)
	}
}

// Below MinTrained of either kind the statistics do not decide.
func TestUntrainedDecidesNothing(t *testing.T) {
	f, path := trained(t, 10) // MinTrained is 20
	rng := rand.New(rand.NewPCG(3, 3))
	v := classify(t, f, path, mkMessage(rng, "x@elsewhere.test", "WIN", spamWords, 50), Sender{})
	if v.Junk || v.Reason != "untrained" {
		t.Fatalf("%+v, want not junk, untrained", v)
	}
	if v.Score <= 0.5 {
		t.Errorf("score %.3f: the statistics should still lean to spam", v.Score)
	}
	v = classify(t, f, filepath.Join(t.TempDir(), "none.db"), mkMessage(rng, "x@y.test", "WIN", spamWords, 50), Sender{})
	if v.Junk || v.Score != 0.5 || v.Reason != "untrained" {
		t.Fatalf("no file: %+v", v)
	}
}

// Reputation comes before words: a verified sender the user wrote to, or
// kept as ham, is welcome whatever it says; a sender put in Junk is junk
// whatever it says. An unverified known sender gets no pass.
func TestReputationBeforeContent(t *testing.T) {
	f, path := trained(t, 40)
	rng := rand.New(rand.NewPCG(4, 4))
	spammy := func(from string) []byte { return mkMessage(rng, from, "WIN", spamWords, 50) }
	hammy := func(from string) []byte { return mkMessage(rng, from, "Re:", hamWords, 50) }

	if err := f.NoteSent(path, "Friend@Family.test"); err != nil {
		t.Fatal(err)
	}
	if v := classify(t, f, path, spammy("friend@family.test"), Sender{Verified: true}); v.Junk || v.Reason != "known sender" {
		t.Errorf("written-to sender, verified: %+v", v)
	}
	if v := classify(t, f, path, spammy("friend@family.test"), Sender{Verified: false}); !v.Junk {
		t.Errorf("written-to sender, unverified, spammy words: %+v, want junk by words", v)
	}
	// colleague0 was trained as ham.
	if v := classify(t, f, path, spammy("colleague0@work.test"), Sender{Verified: true}); v.Junk || v.Reason != "known sender" {
		t.Errorf("sender kept as ham: %+v", v)
	}
	// promo0 was trained as spam.
	if v := classify(t, f, path, hammy("promo0@spam0.test"), Sender{Verified: true}); !v.Junk || v.Reason != "junk sender" {
		t.Errorf("sender put in Junk: %+v", v)
	}
}

// Moving a message out of Junk trains it as ham and takes back its spam
// training; training it the same way twice counts once.
func TestRetrainMovesCounts(t *testing.T) {
	f, path := trained(t, 30)
	rng := rand.New(rand.NewPCG(5, 5))
	msg := mkMessage(rng, "newsletter@shop.test", "WIN", spamWords, 50)
	for i := 0; i < 2; i++ {
		if err := f.Train(path, true, bytes.NewReader(msg)); err != nil {
			t.Fatal(err)
		}
	}
	st, _ := f.Status(path)
	if st.Spam != 31 || st.Ham != 30 {
		t.Fatalf("after training one message twice as spam: %+v", st)
	}
	if v := classify(t, f, path, mkMessage(rng, "newsletter@shop.test", "Re:", hamWords, 50), Sender{Verified: true}); !v.Junk || v.Reason != "junk sender" {
		t.Fatalf("before the move back: %+v", v)
	}
	if err := f.Train(path, false, bytes.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	st, _ = f.Status(path)
	if st.Spam != 30 || st.Ham != 31 {
		t.Fatalf("after moving it out of Junk: %+v, want spam 30 ham 31", st)
	}
	if v := classify(t, f, path, mkMessage(rng, "newsletter@shop.test", "WIN", spamWords, 50), Sender{Verified: true}); v.Junk || v.Reason != "known sender" {
		t.Fatalf("after the move back, the sender is known: %+v", v)
	}
}

// Training by another Filter (another process) is seen at the next
// classification.
func TestCacheSeesOtherWriters(t *testing.T) {
	f, path := trained(t, 30)
	rng := rand.New(rand.NewPCG(6, 6))
	msg := mkMessage(rng, "someone@new.test", "Re:", hamWords, 50)
	if v := classify(t, f, path, msg, Sender{}); v.Junk {
		t.Fatalf("before: %+v", v)
	}
	other := New(Options{MinTrained: 20})
	if err := other.Train(path, true, bytes.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	if v := classify(t, f, path, msg, Sender{}); !v.Junk || v.Reason != "junk sender" {
		t.Fatalf("after another writer trained it as spam: %+v", v)
	}
}

// A failure at any step of writing the user's file fails the training and
// leaves the file as it was.
func TestTrainFailsAtEachStep(t *testing.T) {
	for _, op := range safeio.Steps() {
		t.Run(string(op), func(t *testing.T) {
			_, path := trained(t, 25)
			before, _ := os.ReadFile(path)
			inj := &safeio.Injector{}
			f := New(Options{FS: &safeio.FS{Fault: inj.Fault}, MinTrained: 20})
			inj.Arm(op, "")
			rng := rand.New(rand.NewPCG(7, 7))
			err := f.Train(path, true, bytes.NewReader(mkMessage(rng, "a@b.test", "x", spamWords, 20)))
			if !errors.Is(err, safeio.ErrInjected) {
				t.Fatalf("Train with a failing %s: %v", op, err)
			}
			if op != safeio.OpSyncDir {
				if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
					t.Errorf("the file changed after a failed %s", op)
				}
			}
			entries, _ := os.ReadDir(filepath.Dir(path))
			for _, e := range entries {
				if e.Name() != "junk.db" && e.Name() != "junk.db.lock" {
					t.Errorf("left behind: %s", e.Name())
				}
			}
		})
	}
}

// The table stays within MaxRecords, dropping rare words first and keeping
// senders; a damaged file is refused for reading and replaced by training.
func TestBoundsAndDamage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "junk.db")
	f := New(Options{MaxRecords: 500, MinTrained: 1})
	rng := rand.New(rand.NewPCG(8, 8))
	for i := 0; i < 50; i++ {
		var words []string
		for j := 0; j < 40; j++ {
			words = append(words, fmt.Sprintf("w%dx%d", i, j))
		}
		if err := f.Train(path, i%2 == 0, bytes.NewReader(mkMessage(rng, fmt.Sprintf("s%d@x.test", i), "s", words, 40))); err != nil {
			t.Fatal(err)
		}
	}
	st, err := f.Status(path)
	if err != nil || st.FileBytes > headerSize+500*recordSize || st.Senders != 50 {
		t.Fatalf("Status = %+v, %v: want at most 500 records, all 50 senders", st, err)
	}
	os.WriteFile(path, []byte("garbage"), 0o600)
	if _, err := f.Classify(path, strings.NewReader("Subject: x\r\n\r\nhi\r\n"), Sender{}); !errors.Is(err, errCorrupt) {
		t.Fatalf("Classify on a damaged file: %v", err)
	}
	if err := f.Train(path, false, strings.NewReader("Subject: x\r\n\r\nhi\r\n")); err != nil {
		t.Fatalf("Train over a damaged file: %v", err)
	}
	if st, _ := f.Status(path); st.Ham != 1 {
		t.Fatalf("after retraining a damaged file: %+v", st)
	}
}

// HTML is stripped to its text and link hosts; MIME text parts in other
// charsets are decoded; attachments count by type only.
func TestExtract(t *testing.T) {
	msg := "From: \"Big Sale\" <deals@shop.test>\r\nSubject: =?iso-8859-1?q?Gr=FC=DFe?=\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/html; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		"<html><style>.x{color:red}</style><p>Sch=F6ne <b>Angebote</b></p><a href=3D\"https://click.example.test/x\">here</a></html>\r\n" +
		"--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b--\r\n"
	fe := extract(strings.NewReader(msg))
	have := map[string]bool{}
	for _, tok := range fe.tokens {
		have[tok] = true
	}
	for _, want := range []string{"s:grüße", "schöne", "angebote", "click.example.test", "here", "ct:application/pdf", "f:deals@shop.test", "fd:shop.test", "fn:big", "fn:sale"} {
		if !have[want] {
			t.Errorf("token %q missing from %v", want, fe.tokens)
		}
	}
	for _, not := range []string{"color", "red", "html", "jvberi0"} {
		if have[not] {
			t.Errorf("token %q should not be there", not)
		}
	}
	if fe.from != "deals@shop.test" {
		t.Errorf("from %q", fe.from)
	}
}

func FuzzExtract(f *testing.F) {
	f.Add([]byte("From: a@b\r\nSubject: hi\r\n\r\nbody <b>x</b>\r\n"))
	f.Add([]byte("Content-Type: multipart/alternative; boundary=x\r\n\r\n--x\r\nContent-Type: text/html\r\n\r\n<a href=\"http://h/\">x<!-- --><script>y</script>\r\n--x--\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fe := extract(bytes.NewReader(b))
		if len(fe.tokens) > maxTokens {
			t.Fatalf("%d tokens", len(fe.tokens))
		}
		tb := &table{nham: 1, nspam: 1}
		e := make(edits)
		learn(tb, e, fe, true, 1)
		tb.apply(e)
		if s, _ := tb.score(fe.tokens); s < 0 || s > 1 {
			t.Fatalf("score %v", s)
		}
	})
}

func BenchmarkClassify(b *testing.B) {
	f, path := trained(b, 500)
	rng := rand.New(rand.NewPCG(10, 10))
	msg := mkMessage(rng, "x@elsewhere.test", "WIN", append(spamWords, hamWords...), 400)
	st, _ := f.Status(path)
	b.ReportMetric(float64(st.FileBytes), "file-bytes/user")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := f.Classify(path, bytes.NewReader(msg), Sender{}); err != nil {
			b.Fatal(err)
		}
	}
}
