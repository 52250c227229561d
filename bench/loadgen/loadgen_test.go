package main

import (
	"bytes"
	"math/rand/v2"
	"net/mail"
	"strings"
	"testing"
)

func TestMailboxMessages(t *testing.T) {
	gen := func() [][]byte {
		r := rand.New(rand.NewPCG(7, 1))
		var out [][]byte
		for i := 0; i < 300; i++ {
			out = append(out, mailboxMessage(r, i, "reader@bench.test", "quetzalcoatl", i%10 == 0))
		}
		return out
	}
	a, b := gen(), gen()
	kinds := map[string]int{}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			t.Fatalf("message %d differs between two runs with the same seed", i)
		}
		bare := bytes.ReplaceAll(a[i], []byte("\r\n"), nil)
		if bytes.ContainsAny(bare, "\r\n") {
			t.Errorf("message %d has a bare CR or LF", i)
		}
		if n := len(a[i]); n < 2048 || n > 56*1024 {
			t.Errorf("message %d is %d bytes, want 2-50 KiB", i, n)
		}
		m, err := mail.ReadMessage(bytes.NewReader(a[i]))
		if err != nil {
			t.Fatalf("message %d does not parse: %v", i, err)
		}
		kinds[strings.SplitN(m.Header.Get("Content-Type"), ";", 2)[0]]++
		if got := bytes.Contains(a[i], []byte("quetzalcoatl")); got != (i%10 == 0) {
			t.Errorf("message %d: word planted = %v, want %v", i, got, i%10 == 0)
		}
	}
	for _, k := range []string{"text/plain", "multipart/alternative", "multipart/mixed"} {
		if kinds[k] < 30 {
			t.Errorf("only %d of 300 messages are %s: %v", kinds[k], k, kinds)
		}
	}
}

func TestSMTPMessageSize(t *testing.T) {
	for _, size := range []int{4096, 65536} {
		m := smtpMessage(size, 1)
		if len(m) < size-100 || len(m) > size+200 {
			t.Errorf("smtpMessage(%d) is %d bytes", size, len(m))
		}
		if !bytes.Contains(m, []byte("<0000000000.load@")) {
			t.Errorf("smtpMessage(%d) lacks the Message-ID placeholder", size)
		}
	}
}

func TestTableRatio(t *testing.T) {
	var buf bytes.Buffer
	for _, f := range []figure{
		{ID: "rate", Label: "a rate", Unit: "msg/s", Better: higher, Server: "postie", Value: 300},
		{ID: "rate", Label: "a rate", Unit: "msg/s", Better: higher, Server: "ref", Value: 100},
		{ID: "time", Label: "a time", Unit: "ms", Better: lower, Server: "postie", Value: 40},
		{ID: "time", Label: "a time", Unit: "ms", Better: lower, Server: "ref", Value: 20},
		{ID: "only", Label: "reference only", Unit: "ms", Better: lower, Server: "ref", Value: 5},
		{ID: "disk", Label: "disk", Unit: "ops/s", Better: info, Server: "host", Value: 900},
		{ID: "rep", Label: "repeated", Unit: "ms", Better: lower, Server: "ref", Value: 30},
		{ID: "rep", Label: "repeated", Unit: "ms", Better: lower, Server: "postie", Value: 100},
		{ID: "rep", Label: "repeated", Unit: "ms", Better: lower, Server: "ref", Value: 10},
		{ID: "rep", Label: "repeated", Unit: "ms", Better: lower, Server: "postie", Value: 5},
		{ID: "rep", Label: "repeated", Unit: "ms", Better: lower, Server: "ref", Value: 20},
		{ID: "rep", Label: "repeated", Unit: "ms", Better: lower, Server: "postie", Value: 10},
		{ID: "even", Label: "two each", Unit: "MB/s", Better: higher, Server: "postie", Value: 10},
		{ID: "even", Label: "two each", Unit: "MB/s", Better: higher, Server: "postie", Value: 30},
		{ID: "even", Label: "two each", Unit: "MB/s", Better: higher, Server: "ref", Value: 10},
		{ID: "even", Label: "two each", Unit: "MB/s", Better: higher, Server: "ref", Value: 10},
	} {
		buf.WriteString(formatFigure(f) + "\n")
	}
	rows, err := readFigures(&buf)
	if err != nil {
		t.Fatal(err)
	}
	// rep: medians ref 20, postie 10; even: medians postie 20, ref 10.
	want := map[string]float64{"rate": 3, "time": 0.5, "rep": 2, "even": 2}
	for _, rw := range rows {
		got, ok := rw.ratio()
		if w, has := want[rw.id]; has != ok || got != w {
			t.Errorf("%s: ratio %v (ok %v), want %v (ok %v)", rw.id, got, ok, w, has)
		}
	}
	var out bytes.Buffer
	writeTable(&out, rows)
	for _, s := range []string{"3.00x", "0.50x BEHIND", "reference only (ms)", "disk (ops/s)",
		"repeated (median of 3) (ms)", "two each (median of 2) (MB/s)"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, out.String())
		}
	}
	if strings.Contains(out.String(), "a rate (median") {
		t.Errorf("a single sample is labelled as a median:\n%s", out.String())
	}
}
