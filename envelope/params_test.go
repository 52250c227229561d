package envelope

import (
	"encoding/json"
	"testing"
)

func TestParseNotify(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Notify
		ok      bool
		success bool
		failure bool
		delay   bool
	}{
		{"", 0, true, false, true, true},
		{"NEVER", NotifyNever, true, false, false, false},
		{"success,Failure", NotifySuccess | NotifyFailure, true, true, true, false},
		{"DELAY", NotifyDelay, true, false, false, true},
		{"NEVER,SUCCESS", 0, false, false, false, false},
		{"SOMETIMES", 0, false, false, false, false},
		{"SUCCESS,", 0, false, false, false, false},
	} {
		n, err := ParseNotify(tc.in)
		if (err == nil) != tc.ok || n != tc.want {
			t.Errorf("ParseNotify(%q) = %v, %v", tc.in, n, err)
			continue
		}
		if tc.ok && (n.Success() != tc.success || n.Failure() != tc.failure || n.Delay() != tc.delay) {
			t.Errorf("%q: success %v failure %v delay %v", tc.in, n.Success(), n.Failure(), n.Delay())
		}
	}
	// State files keep the readable form and read it back.
	b, err := json.Marshal(struct{ N Notify }{NotifySuccess | NotifyDelay})
	if err != nil || string(b) != `{"N":"SUCCESS,DELAY"}` {
		t.Fatalf("marshal: %s %v", b, err)
	}
	var back struct{ N Notify }
	if err := json.Unmarshal(b, &back); err != nil || back.N != NotifySuccess|NotifyDelay {
		t.Errorf("unmarshal: %v %v", back.N, err)
	}
}

// FuzzParseNotify: any NOTIFY value from the network parses without panic,
// and what parses prints back (String, the state-file form) to itself.
func FuzzParseNotify(f *testing.F) {
	for _, s := range []string{"NEVER", "success,Failure,DELAY", "SUCCESS,SUCCESS", "NEVER,SUCCESS", ",", "FAILURE,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseNotify(s)
		if err != nil {
			return
		}
		if n&NotifyNever != 0 && n != NotifyNever {
			t.Fatalf("%q: NEVER with others: %v", s, n)
		}
		back, err := ParseNotify(n.String())
		if err != nil || back != n {
			t.Fatalf("%q -> %v -> %q -> %v, %v", s, n, n.String(), back, err)
		}
	})
}
