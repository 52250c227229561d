package smtpd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-smtp"

	"postie/envelope"
)

// nopDelivery reads the message and accepts it.
type nopDelivery struct{}

func (nopDelivery) Deliver(_ context.Context, env *envelope.Envelope, body io.Reader) []error {
	io.Copy(io.Discard, body)
	return make([]error, len(env.To))
}

// BenchmarkMXAccept measures MX acceptance of 4 KiB messages over
// loopback with a delivery that stores nothing: the cost of the protocol
// front-end itself. Each client has its own connection and sends its
// messages one after another.
func BenchmarkMXAccept(b *testing.B) {
	msg := "From: a@remote.example\r\nTo: ann@example.test\r\nSubject: bench\r\n\r\n" +
		strings.Repeat(strings.Repeat("x", 62)+"\r\n", 4096/64)
	for _, clients := range []int{1, 10} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			f := start(b, RoleMX, func(o *Options) {
				o.Delivery = nopDelivery{}
				o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			})
			conns := make([]*smtp.Client, clients)
			for i := range conns {
				conns[i] = dial(b, f.addr)
			}
			var left atomic.Int64
			left.Store(int64(b.N))
			b.SetBytes(int64(len(msg)))
			b.ResetTimer()
			var wg sync.WaitGroup
			for _, c := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for left.Add(-1) >= 0 {
						if _, err := send(c, "a@remote.example", []string{"ann@example.test"}, msg); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
