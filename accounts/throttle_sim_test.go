package accounts

import (
	"container/heap"
	"fmt"
	"testing"
	"time"
)

// The attacker's rate, measured in simulated time: connections that guess
// as fast as the throttle lets them (a refused connection tries again a
// second later, soon enough to find any slot: the throttle queues what can
// start within 5s), each check taking a production argon2id's 20ms.

type simConn struct {
	ip, user string
	start    time.Duration // its first try, after the simulation starts
	r        *attempt
	gen      int // events of older generations are stale
}

type simEvent struct {
	at   time.Time
	seq  int
	c    *simConn
	gen  int
	done bool // the check ends (else: look at the attempt)
}

type simQueue []simEvent

func (q simQueue) Len() int { return len(q) }
func (q simQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q simQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *simQueue) Push(x any)   { *q = append(*q, x.(simEvent)) }
func (q *simQueue) Pop() any     { old := *q; e := old[len(old)-1]; *q = old[:len(old)-1]; return e }

type simResult struct {
	checked, refused int
}

// simulate runs conns against th for window and counts the passwords checked.
func simulate(th *Throttle, clock *fakeClock, conns []*simConn, window time.Duration) simResult {
	const check, retry = 20 * time.Millisecond, time.Second
	var q simQueue
	seq := 0
	push := func(c *simConn, at time.Time, done bool) {
		c.gen++
		seq++
		heap.Push(&q, simEvent{at: at, seq: seq, c: c, gen: c.gen, done: done})
	}
	start := clock.Now()
	for _, c := range conns {
		push(c, start.Add(c.start), false)
	}
	waiting := map[*simConn]bool{}
	var res simResult
	for q.Len() > 0 {
		ev := heap.Pop(&q).(simEvent)
		if ev.at.Sub(start) > window {
			break
		}
		clock.mu.Lock()
		clock.now = ev.at
		clock.mu.Unlock()
		c := ev.c
		if ev.gen != c.gen {
			continue
		}
		if ev.done {
			c.r.finish(attemptFailed)
			c.r = nil
			push(c, ev.at, false) // the next guess on the same connection
			for w := range waiting {
				push(w, ev.at, false)
			}
			continue
		}
		if c.r == nil {
			c.r = th.begin(c.ip, c.user)
		}
		th.mu.Lock()
		sr := th.step(c.r, ev.at)
		th.mu.Unlock()
		delete(waiting, c)
		switch {
		case sr.admitted:
			res.checked++
			push(c, ev.at.Add(check), true)
		case sr.err != nil:
			res.refused++
			c.r = nil
			push(c, ev.at.Add(retry), false)
		default:
			waiting[c] = true
			until := ev.at.Add(th.p.recheck)
			if !sr.until.IsZero() {
				until = sr.until
			}
			push(c, until, false)
		}
	}
	return res
}

// maxGuesses is the most checks the policy allows one address (or one
// account's failing lane) in window: free failures, then spacings doubling
// to maxDelay.
func maxGuesses(th *Throttle, window time.Duration, free int) int {
	n, elapsed := 1, time.Duration(0)
	for f := 1; ; f++ {
		elapsed += th.delay(f, free)
		if elapsed > window {
			return n
		}
		n++
	}
}

func TestThrottleAttackRate(t *testing.T) {
	window := 10 * time.Minute
	if testing.Short() {
		window = 2 * time.Minute
	}
	type scenario struct {
		conns, addrs, accounts int
		stagger                time.Duration // between the first tries of successive connections
	}
	var scenarios []scenario
	for _, n := range []int{10, 100, 1000} {
		scenarios = append(scenarios,
			scenario{n, 1, 1, 0},  // one address, one account
			scenario{n, 1, 50, 0}, // one address spraying 50 accounts
			scenario{n, n, 1, 0},  // a botnet on one account, one connection per address
			// A botnet bringing in a fresh address each time the clean budget refills.
			scenario{n, n, 1, time.Second},
		)
	}
	for _, sc := range scenarios {
		c := newClock()
		th := fakeThrottle(t, c)
		var conns []*simConn
		for i := range sc.conns {
			a := i % sc.addrs
			conns = append(conns, &simConn{
				ip:    fmt.Sprintf("10.%d.%d.1", a/256, a%256),
				user:  fmt.Sprintf("user%d@example.test", i%sc.accounts),
				start: time.Duration(i) * sc.stagger,
			})
		}
		res := simulate(th, c, conns, window)
		rate := float64(res.checked) / window.Seconds()
		t.Logf("%4d connections, %4d addresses, %2d accounts, fresh addresses every %v: %4d passwords checked in %v (%.3f/s), %d refused",
			sc.conns, sc.addrs, sc.accounts, sc.stagger, res.checked, window, rate, res.refused)
		// One address: its spacing bounds it, whatever the connections.
		bound := maxGuesses(th, window, th.p.freeFailures)
		if sc.addrs > 1 {
			// Many addresses on one account: each fresh one gets its clean try from the
			// account's clean budget, then all queue in its failing lane.
			clean := min(sc.addrs, int(th.p.cleanBurst)+int(window/th.p.cleanEvery)+1)
			bound = clean + maxGuesses(th, window, th.p.accountFree)
		}
		if res.checked > bound {
			t.Errorf("%+v: %d passwords checked in %v, bound %d", sc, res.checked, window, bound)
		}
		th.mu.Lock()
		n := len(th.addrs.m) + len(th.accts.m) + len(th.pairs.m)
		th.mu.Unlock()
		if n > sc.addrs+sc.accounts+min(sc.conns, sc.addrs*sc.accounts) {
			t.Errorf("%+v: %d entries", sc, n)
		}
	}
}
