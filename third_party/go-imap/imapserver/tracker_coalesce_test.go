package imapserver

import (
	"reflect"
	"testing"
)

func TestCoalesceUpdates(t *testing.T) {
	exists := func(n uint32) trackerUpdate { return trackerUpdate{numMessages: n} }
	expunge := func(n uint32) trackerUpdate { return trackerUpdate{expunge: n} }
	fetch := func(n uint32) trackerUpdate { return trackerUpdate{fetch: &trackerUpdateFetch{seqNum: n}} }
	cases := []struct {
		name      string
		known     uint32
		in, want  []trackerUpdate
		wantKnown uint32
	}{
		{"three deliveries: one EXISTS", 0, []trackerUpdate{exists(1), exists(2), exists(3)}, []trackerUpdate{exists(3)}, 3},
		{"MOVE into the same mailbox: EXPUNGE, then EXISTS", 1, []trackerUpdate{exists(2), expunge(1)}, []trackerUpdate{expunge(1), exists(1)}, 1},
		{"an unannounced message expunged is not sent", 1, []trackerUpdate{exists(2), expunge(2)}, []trackerUpdate{}, 1},
		{"a FETCH of a new message comes after its EXISTS", 1, []trackerUpdate{exists(2), fetch(2), exists(3)}, []trackerUpdate{exists(2), fetch(2), exists(3)}, 3},
		{"a FETCH of a known message does not", 2, []trackerUpdate{exists(3), fetch(1), expunge(2)}, []trackerUpdate{fetch(1), expunge(2), exists(2)}, 2},
		{"nonsense passes as it came", 1, []trackerUpdate{expunge(5)}, []trackerUpdate{expunge(5)}, 0},
	}
	for _, c := range cases {
		got, known := coalesceUpdates(c.in, c.known)
		if !reflect.DeepEqual(got, c.want) || known != c.wantKnown {
			t.Errorf("%s: got %+v (known %d), want %+v (known %d)", c.name, got, known, c.want, c.wantKnown)
		}
	}
}
