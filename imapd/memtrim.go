package imapd

import (
	"context"
	"runtime/debug"
	"time"
)

// Memory of idle connections. Go's collector lets the heap grow to twice what was live at the
// last collection before it collects again, and returns to the OS only what lies beyond that
// goal. A burst of logins leaves the goal high: each login's password hash (argon2id, 7 MiB) is
// live while it runs, and the TLS handshakes' garbage counts until the next collection. Once the
// logins stop, connections that only idle allocate nothing, so no collection comes to lower the
// goal, and the process keeps two to three times the memory its idle connections use (73 to
// 89 KiB RSS per idle IMAP connection instead of about 30). So when logins have stopped for
// trimQuiet, or at the latest trimLate after the first login since the last trim (logins that never
// stop), the trimmer collects once and returns the free memory to the OS (debug.FreeOSMemory), and
// then waits at least trimGap: the cost is one collection after a burst, the gain is RSS close to
// what is live. A burst with a pause in it is trimmed again after its end (one trim in the pause
// and none after left 69 KiB per connection instead of 22 in a bench run).
const (
	trimQuiet = time.Second
	trimLate  = time.Minute
	trimGap   = 10 * time.Second
)

type memTrim struct {
	kick              chan struct{}
	trim              func() // debug.FreeOSMemory; tests count
	quiet, late, wait time.Duration
}

func newMemTrim(ctx context.Context, trim func()) *memTrim {
	return newMemTrimTimes(ctx, trim, trimQuiet, trimLate, trimGap)
}

// newMemTrimTimes is newMemTrim with other durations (tests).
func newMemTrimTimes(ctx context.Context, trim func(), quiet, late, gap time.Duration) *memTrim {
	t := &memTrim{kick: make(chan struct{}, 1), trim: trim, quiet: quiet, late: late, wait: gap}
	if t.trim == nil {
		t.trim = debug.FreeOSMemory
	}
	go t.run(ctx)
	return t
}

// loggedIn tells the trimmer that a login happened; it never blocks.
func (t *memTrim) loggedIn() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

func (t *memTrim) run(ctx context.Context) {
	quiet := time.NewTimer(t.quiet)
	quiet.Stop()
	for {
		select { // a first login
		case <-ctx.Done():
			return
		case <-t.kick:
		}
		quiet.Reset(t.quiet)
		late := time.NewTimer(t.late)
	wait:
		for {
			select {
			case <-ctx.Done():
				late.Stop()
				return
			case <-t.kick:
				quiet.Reset(t.quiet)
			case <-quiet.C:
				break wait
			case <-late.C:
				quiet.Stop()
				break wait
			}
		}
		late.Stop()
		t.trim()
		// Logins during the gap leave a kick behind (the channel holds one): they are trimmed after.
		select {
		case <-ctx.Done():
			return
		case <-time.After(t.wait):
		}
	}
}
