package imapd

import (
	"log/slog"
	"sort"

	"github.com/emersion/go-imap/v2"
)

// ID answers RFC 2971's ID with the server's name and version, and logs what the client said
// about itself (once per ID command, at info level: clients send it once per connection).
func (s *session) ID(client map[string]string) *imap.IDData {
	args := []any{"remote", s.ip}
	if s.user != nil {
		args = append(args, "user", s.user.Address)
	}
	if client == nil {
		args = append(args, "client", "NIL")
	} else {
		keys := make([]string, 0, len(client))
		for k := range client {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		attrs := make([]any, 0, len(keys))
		for _, k := range keys {
			attrs = append(attrs, slog.String(k, client[k]))
		}
		args = append(args, slog.Group("client", attrs...))
	}
	s.srv.log.Info("imap id", args...)
	version := s.srv.opts.Version
	if version == "" {
		version = "dev"
	}
	return &imap.IDData{Name: "Postie", Version: version}
}
