// Package contrib holds the files for installing Postie on a machine, for
// `postie init` to install: the systemd unit (postie.service).
package contrib

import _ "embed"

// SystemdUnit is postie.service: `postie serve` as the unprivileged user
// postie, with the config at /etc/postie/config.toml and data_dir
// /var/lib/postie. Read it; never change it.
//
//go:embed postie.service
var SystemdUnit string
