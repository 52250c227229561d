package suppress

import "strings"

// hardTexts are the words of "no such user" replies that come with a
// generic status code (5.0.0, 5.5.0) or a 5.2.1 "mailbox disabled".
var hardTexts = []string{
	"user unknown", "unknown user", "no such user", "no such recipient", "no such mailbox",
	"does not exist", "doesn't exist", "recipient not found", "mailbox not found", "invalid recipient",
	"mailbox unavailable: invalid", "account disabled", "account has been disabled",
	"mailbox disabled", "is disabled", "inactive", "deactivated",
}

// IsHardBounce reports whether a permanent failure with the RFC 3463
// status and the remote reply line means the address is dead (and should
// be suppressed) rather than that this message was refused (policy,
// content, size, reputation), which says nothing about the address.
func IsHardBounce(status, reply string) bool {
	if !strings.HasPrefix(status, "5.") {
		return false
	}
	switch status {
	case "5.1.1", "5.1.10", "5.1.6":
		return true
	case "5.2.1", "5.0.0", "5.5.0", "5.1.0":
		lower := strings.ToLower(reply)
		for _, t := range hardTexts {
			if strings.Contains(lower, t) {
				return true
			}
		}
	}
	return false
}
