package rspamd

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeRspamd is an httptest server on 127.0.0.1 that records the requests
// it gets and answers with reply.
type fakeRspamd struct {
	*httptest.Server
	mu    sync.Mutex
	reqs  []recorded
	reply func(w http.ResponseWriter, r *http.Request)
}

type recorded struct {
	method, path string
	header       http.Header
	body         string
}

func newFake(t *testing.T, reply func(w http.ResponseWriter, r *http.Request)) *fakeRspamd {
	f := &fakeRspamd{reply: reply}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, recorded{r.Method, r.URL.Path, r.Header.Clone(), string(b)})
		f.mu.Unlock()
		f.reply(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeRspamd) last(t *testing.T) recorded {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		t.Fatal("no request reached the server")
	}
	return f.reqs[len(f.reqs)-1]
}

func answer(status int, body string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func newClient(t *testing.T, o Options) *Client {
	t.Helper()
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A /checkv2 reply as rspamd 3.4 writes it.
const checkReply = `{"is_skipped":false,"score":6.300000,"required_score":15.0,"action":"add header",
"symbols":{
 "FROM_NEQ_ENVFROM":{"name":"FROM_NEQ_ENVFROM","score":0.0,"metric_score":0.0,"description":"x","options":["a@b.test","c@d.test"]},
 "BAYES_SPAM":{"name":"BAYES_SPAM","score":5.1,"metric_score":5.1,"options":["99.0%"]},
 "R_DKIM_ALLOW":{"name":"R_DKIM_ALLOW","score":-0.2,"metric_score":-0.2,"options":["d.test:s=sel"]},
 "RCVD_COUNT_ZERO":{"name":"RCVD_COUNT_ZERO","score":0.0,"metric_score":0.0,"options":["0"]},
 "FORGED_SENDER":{"name":"FORGED_SENDER","score":0.3,"metric_score":0.3},
 "RDNS_NONE":{"name":"RDNS_NONE","score":1.0,"metric_score":1.0}},
"messages":{},"message-id":"1@d.test","time_real":0.01,"milter":{"remove_headers":{"X-Spam":0}}}`

func TestCheckRequest(t *testing.T) {
	f := newFake(t, answer(200, checkReply))
	c := newClient(t, Options{URL: f.URL + "/"})
	msg := "From: a@b.test\r\nSubject: hi\r\n\r\nbody\r\n"
	meta := Meta{
		IP:    netip.MustParseAddr("::ffff:192.0.2.7"),
		Helo:  "mx.b.test\r\nX-Injected: 1",
		From:  "a@b.test",
		Rcpts: []string{"x@ours.test", "y@ours.test"},
		User:  "ann@ours.test", Hostname: "mx.b.test", QueueID: "17abc",
	}
	// A reader of unknown length: the body goes chunked.
	if _, err := c.Check(context.Background(), io.MultiReader(strings.NewReader(msg)), meta); err != nil {
		t.Fatal(err)
	}
	r := f.last(t)
	if r.method != "POST" || r.path != "/checkv2" || r.body != msg {
		t.Errorf("request %s %s body %q", r.method, r.path, r.body)
	}
	want := map[string][]string{
		"Ip": {"192.0.2.7"}, "Helo": {"mx.b.test??X-Injected: 1"}, "From": {"a@b.test"},
		"Rcpt": {"x@ours.test", "y@ours.test"}, "User": {"ann@ours.test"}, "Hostname": {"mx.b.test"}, "Queue-Id": {"17abc"},
	}
	for k, v := range want {
		if got := r.header.Values(k); strings.Join(got, "|") != strings.Join(v, "|") {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if r.header.Get("X-Injected") != "" || r.header.Get("Password") != "" {
		t.Errorf("unexpected headers %v", r.header)
	}

	// The null sender and an unknown client: From "<>", no IP and no
	// empty headers.
	if _, err := c.Check(context.Background(), strings.NewReader(msg), Meta{}); err != nil {
		t.Fatal(err)
	}
	r = f.last(t)
	if r.header.Get("From") != "<>" {
		t.Errorf("From = %q, want <>", r.header.Get("From"))
	}
	for _, k := range []string{"IP", "Helo", "Rcpt", "User", "Hostname", "Queue-Id"} {
		if _, ok := r.header[http.CanonicalHeaderKey(k)]; ok {
			t.Errorf("header %s sent for a zero field", k)
		}
	}
}

func TestCheckResult(t *testing.T) {
	f := newFake(t, answer(200, checkReply))
	c := newClient(t, Options{URL: f.URL})
	res, err := c.Check(context.Background(), strings.NewReader("x"), Meta{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != ActionAddHeader || res.Score != 6.3 || res.Required != 15 || !res.Junk() || res.Reject() || res.SoftReject() {
		t.Errorf("result %+v", res)
	}
	var names []string
	for _, s := range res.Symbols {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, ","); got != "BAYES_SPAM,RDNS_NONE,FORGED_SENDER,R_DKIM_ALLOW,FROM_NEQ_ENVFROM,RCVD_COUNT_ZERO" {
		t.Errorf("symbol order %s", got)
	}
	wantHeader := "default: False [6.30 / 15.00];\r\n" +
		"\tBAYES_SPAM(5.10)[99.0%];\r\n" +
		"\tRDNS_NONE(1.00)[];\r\n" +
		"\tFORGED_SENDER(0.30)[];\r\n" +
		"\tR_DKIM_ALLOW(-0.20)[d.test:s=sel];\r\n" +
		"\tFROM_NEQ_ENVFROM(0.00)[a@b.test,c@d.test];\r\n" +
		"\tRCVD_COUNT_ZERO(0.00)[0]"
	if res.Header != wantHeader {
		t.Errorf("header\n%q\nwant\n%q", res.Header, wantHeader)
	}
}

func TestActions(t *testing.T) {
	for _, tc := range []struct {
		action                 string
		reject, soft, junkFlag bool
	}{
		{ActionReject, true, false, false},
		{ActionSoftReject, false, true, false},
		{ActionGreylist, false, true, false},
		{ActionAddHeader, false, false, true},
		{ActionRewriteSubject, false, false, true},
		{ActionNoAction, false, false, false},
		{"something new", false, false, false},
	} {
		r := Result{Action: tc.action}
		if r.Reject() != tc.reject || r.SoftReject() != tc.soft || r.Junk() != tc.junkFlag {
			t.Errorf("%q: reject %v soft %v junk %v", tc.action, r.Reject(), r.SoftReject(), r.Junk())
		}
	}
	h := formatHeader(Result{Action: ActionReject, Score: 15, Required: 15})
	if h != "default: True [15.00 / 15.00]" {
		t.Errorf("reject header %q", h)
	}
}

func TestHeaderBounds(t *testing.T) {
	var res Result
	res.Action = ActionNoAction
	for i := range 200 {
		s := Symbol{Name: "SYM\r\nX-Evil: 1\x00" + strings.Repeat("N", i%150), Score: float64(i) / 10}
		for j := range 30 {
			s.Options = append(s.Options, strings.Repeat("o", j*7)+"\x1b[1m\u0085\xff")
		}
		res.Symbols = append(res.Symbols, s)
	}
	h := formatHeader(res)
	if len(h) > maxHeader {
		t.Errorf("header is %d bytes, over %d", len(h), maxHeader)
	}
	if !strings.Contains(h, " more") {
		t.Error("dropped symbols are not counted")
	}
	lines := strings.Split(h, "\r\n")
	for i, l := range lines {
		if i > 0 && !strings.HasPrefix(l, "\t") {
			t.Errorf("line %d is not a continuation: %q", i, l)
		}
		if len(l) >= 998 {
			t.Errorf("line %d is %d bytes", i, len(l))
		}
		for _, r := range strings.TrimPrefix(l, "\t") {
			if r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\uFFFD' {
				t.Fatalf("line %d holds control character %U: %q", i, r, l)
			}
		}
	}
}

func TestCheckErrors(t *testing.T) {
	huge := `{"action":"no action","score":0,"symbols":{"A":{"name":"A","options":["` + strings.Repeat("x", maxResponse) + `"]}}}`
	for _, tc := range []struct {
		name  string
		reply func(http.ResponseWriter, *http.Request)
		want  string
	}{
		{"5xx", answer(500, `{"error":"Internal error\nprocessing"}`), "http status 500: Internal error?processing"},
		{"502 text", answer(502, "bad gateway"), "http status 502: bad gateway"},
		{"garbage", answer(200, "<html>not json</html>"), "bad reply"},
		{"no action", answer(200, `{"score":1.0}`), "no action or score"},
		{"no score", answer(200, `{"action":"reject"}`), "no action or score"},
		{"oversized", answer(200, huge), "reply over"},
		{"truncated", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1000")
			io.WriteString(w, `{"action":`)
		}, "reply"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, tc.reply)
			c := newClient(t, Options{URL: f.URL, Timeout: 5 * time.Second})
			_, err := c.Check(context.Background(), strings.NewReader("x"), Meta{QueueID: "Q9"})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "rspamd: check Q9: ") {
				t.Errorf("error %v, want one with %q", err, tc.want)
			}
		})
	}
}

func TestCheckTimeout(t *testing.T) {
	release := make(chan struct{})
	for _, stage := range []string{"headers", "body"} {
		t.Run(stage, func(t *testing.T) {
			f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
				if stage == "body" {
					w.WriteHeader(200)
					io.WriteString(w, `{"action":`)
					w.(http.Flusher).Flush()
				}
				select {
				case <-release:
				case <-r.Context().Done():
				}
			})
			c := newClient(t, Options{URL: f.URL, Timeout: 200 * time.Millisecond})
			// A watchdog, far beyond Options.Timeout, so that a missing
			// timeout fails the test instead of hanging it.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			_, err := c.Check(ctx, strings.NewReader("x"), Meta{})
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error %v, want a deadline", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Check returned after %v, not after its 200ms timeout", d)
			}
		})
	}
	close(release)
}

func TestCheckErrorWithoutQueueID(t *testing.T) {
	f := newFake(t, answer(500, ""))
	_, err := newClient(t, Options{URL: f.URL}).Check(context.Background(), strings.NewReader("x"), Meta{})
	if err == nil || !strings.HasPrefix(err.Error(), "rspamd: check: http status 500") {
		t.Errorf("error %v", err)
	}
}

func TestCheckDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	c := newClient(t, Options{URL: url})
	if _, err := c.Check(context.Background(), strings.NewReader("x"), Meta{}); err == nil || !strings.Contains(err.Error(), "rspamd: check") {
		t.Errorf("error %v, want a check error", err)
	}
	// The caller's cancellation stops a check too.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f := newFake(t, answer(200, checkReply))
	if _, err := newClient(t, Options{URL: f.URL}).Check(ctx, strings.NewReader("x"), Meta{}); !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestCheckReaderError(t *testing.T) {
	f := newFake(t, answer(200, checkReply))
	_, err := newClient(t, Options{URL: f.URL}).Check(context.Background(), failingReader{}, Meta{})
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("error %v, want the reader's", err)
	}
}

func TestLearn(t *testing.T) {
	f := newFake(t, answer(200, `{"success":true}`))
	c := newClient(t, Options{URL: "http://127.0.0.1:1", ControllerURL: f.URL, Password: "pw"})
	for _, spam := range []bool{true, false} {
		if err := c.Learn(context.Background(), spam, strings.NewReader("message")); err != nil {
			t.Fatal(err)
		}
		r := f.last(t)
		want := map[bool]string{true: "/learnspam", false: "/learnham"}[spam]
		if r.method != "POST" || r.path != want || r.header.Get("Password") != "pw" || r.body != "message" {
			t.Errorf("request %s %s password %q body %q", r.method, r.path, r.header.Get("Password"), r.body)
		}
	}
	nopw := newClient(t, Options{URL: "http://127.0.0.1:1", ControllerURL: f.URL})
	if err := nopw.Learn(context.Background(), true, strings.NewReader("m")); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.last(t).header["Password"]; ok {
		t.Error("a Password header without a password")
	}
	if err := newClient(t, Options{URL: "http://127.0.0.1:1"}).Learn(context.Background(), true, strings.NewReader("m")); !errors.Is(err, ErrNoController) {
		t.Errorf("no controller: %v", err)
	}
}

func TestLearnReplies(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   string // "" for success
	}{
		{"already learned", 208, `{"error":"<1@x> has been already learned as spam, ignore it"}`, ""},
		{"nothing learned", 204, ``, "nothing learned"},
		{"unauthorized", 401, `{"error":"Unauthorized"}`, "http status 401: Unauthorized"},
		{"not success", 200, `{"success":false,"error":"no\u0001way"}`, "not learned: no?way"},
		{"garbage", 200, `ok`, "bad reply"},
		{"5xx", 503, ``, "http status 503"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, answer(tc.status, tc.body))
			c := newClient(t, Options{URL: f.URL, ControllerURL: f.URL})
			err := c.Learn(context.Background(), true, strings.NewReader("m"))
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestNewURLs(t *testing.T) {
	for _, o := range []Options{
		{URL: ""},
		{URL: "127.0.0.1:11333"},
		{URL: "ftp://127.0.0.1/"},
		{URL: "http://127.0.0.1:11333", ControllerURL: "::bad"},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
	c := newClient(t, Options{URL: "http://127.0.0.1:11333/", ControllerURL: "https://rspamd.example.test/ctl/"})
	if c.checkURL != "http://127.0.0.1:11333/checkv2" || c.controller != "https://rspamd.example.test/ctl" || c.timeout != DefaultTimeout {
		t.Errorf("client %+v", c)
	}
}

func FuzzParseResult(f *testing.F) {
	f.Add([]byte(checkReply))
	f.Add([]byte(`{"action":"reject","score":15,"required_score":15,"symbols":{"GTUBE":{"name":"GTUBE","score":0}}}`))
	f.Add([]byte(`{"action":"x\u0000","score":-1e308,"symbols":{"\n":{"options":["\r\n\t"]}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := parseResult(b)
		if err != nil {
			return
		}
		h := res.Header
		if len(h) > maxHeader {
			t.Fatalf("header %d bytes", len(h))
		}
		for _, l := range strings.Split(h, "\r\n") {
			if strings.ContainsAny(strings.TrimPrefix(l, "\t"), "\r\n\x00") {
				t.Fatalf("control character in %q", l)
			}
		}
	})
}
