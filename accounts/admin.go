package accounts

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"postie/envelope"
	"postie/safeio"
)

// Errors of the admin commands, wrapped with the address concerned.
var (
	ErrExists   = errors.New("already exists")
	ErrNotFound = errors.New("not found")
)

// Admin edits the accounts file for "postie user ..." and "postie alias
// ...". Each change re-reads the file under an exclusive lock on
// Path+".lock", applies the change and replaces the file atomically (mode
// 0600), so concurrent commands never lose each other's changes and a
// running server (which notices within a second) never reads half a file.
type Admin struct {
	Path    string     // the accounts file
	Domains []string   // our domains: users and aliases must be in one of them
	FS      *safeio.FS // writes the file; nil: the real file system

	params hashParams // zero: defaultParams (tests lower the cost)
}

// Alias is one alias as the file holds it: Address is "local@domain" or the
// catch-all "@domain", lower-cased.
type Alias struct {
	Address string
	Targets []string
}

// AddUser adds a user with a password (hashed here) and a quota in bytes
// (0: none).
func (a *Admin) AddUser(address, password string, quota int64) error {
	addr, err := a.userAddress(address)
	if err != nil {
		return err
	}
	if quota < 0 {
		return fmt.Errorf("accounts: add %s: negative quota", addr)
	}
	hash, err := a.hash(password)
	if err != nil {
		return err
	}
	return a.update(func(fd *fileData) error {
		if fd.user(addr) != nil {
			return fmt.Errorf("accounts: user %s: %w", addr, ErrExists)
		}
		if fd.alias(addr) != nil {
			return fmt.Errorf("accounts: add %s: an alias of that address exists; delete it first: %w", addr, ErrExists)
		}
		fd.Users = append(fd.Users, fileUser{Address: addr, Password: hash, Quota: quota})
		return nil
	})
}

// SetPassword replaces a user's password.
func (a *Admin) SetPassword(address, password string) error {
	hash, err := a.hash(password)
	if err != nil {
		return err
	}
	return a.updateUser(address, func(u *fileUser) error { u.Password = hash; return nil })
}

// SetQuota sets a user's quota in bytes (0: none).
func (a *Admin) SetQuota(address string, quota int64) error {
	if quota < 0 {
		return fmt.Errorf("accounts: set quota of %s: negative quota", address)
	}
	return a.updateUser(address, func(u *fileUser) error { u.Quota = quota; return nil })
}

// SetMaxMessagesPerHour sets a user's submission limit (0: the configured
// default).
func (a *Admin) SetMaxMessagesPerHour(address string, n int) error {
	if n < 0 {
		return fmt.Errorf("accounts: set limit of %s: negative limit", address)
	}
	return a.updateUser(address, func(u *fileUser) error { u.MaxMessagesPerHour = n; return nil })
}

// DeleteUser removes a user from the file. Its mail stays on disk, and
// aliases naming it are left alone (they are reported when the server
// loads the file).
func (a *Admin) DeleteUser(address string) error {
	key := envelope.Key(address)
	return a.update(func(fd *fileData) error {
		i := slices.IndexFunc(fd.Users, func(u fileUser) bool { return u.Address == key })
		if i < 0 {
			return fmt.Errorf("accounts: user %s: %w", key, ErrNotFound)
		}
		fd.Users = slices.Delete(fd.Users, i, i+1)
		return nil
	})
}

// ListUsers returns the users in file order.
func (a *Admin) ListUsers() ([]User, error) {
	fd, err := a.read()
	if err != nil {
		return nil, err
	}
	users := make([]User, len(fd.Users))
	for i, fu := range fd.Users {
		local, domain := envelope.Split(fu.Address)
		users[i] = User{Address: fu.Address, Local: local, Domain: domain, Quota: fu.Quota, MaxMessagesPerHour: fu.MaxMessagesPerHour}
	}
	return users, nil
}

// AddAlias adds targets to the alias address, creating it if needed.
// address is "local@domain" or the catch-all "@domain", in one of our
// domains, and may not be (or be a +tag of) a user's address. Targets are
// addresses, local or remote.
func (a *Admin) AddAlias(address string, targets []string) error {
	addr, err := normalizeAliasAddress(address)
	if err != nil {
		return fmt.Errorf("accounts: %w", err)
	}
	if err := a.checkDomain(addr); err != nil {
		return err
	}
	if len(targets) == 0 {
		return fmt.Errorf("accounts: alias %s: no targets given", addr)
	}
	nts := make([]string, len(targets))
	for i, t := range targets {
		if nts[i], err = normalizeTarget(addr, t); err != nil {
			return fmt.Errorf("accounts: %w", err)
		}
	}
	return a.update(func(fd *fileData) error {
		if !strings.HasPrefix(addr, "@") {
			local, domain := envelope.Split(addr)
			base, _ := envelope.StripTag(local)
			if fd.user(base+"@"+domain) != nil {
				return fmt.Errorf("accounts: alias %s would be hidden by the user %s@%s: %w", addr, base, domain, ErrExists)
			}
		}
		al := fd.alias(addr)
		if al == nil {
			fd.Aliases = append(fd.Aliases, fileAlias{Address: addr})
			al = &fd.Aliases[len(fd.Aliases)-1]
		}
		for _, t := range nts {
			if !slices.ContainsFunc(al.Targets, func(x string) bool { return envelope.Key(x) == envelope.Key(t) }) {
				al.Targets = append(al.Targets, t)
			}
		}
		return nil
	})
}

// DeleteAlias removes targets from an alias, or the whole alias when no
// targets are given (or none remain).
func (a *Admin) DeleteAlias(address string, targets []string) error {
	addr := envelope.Key(address)
	return a.update(func(fd *fileData) error {
		i := slices.IndexFunc(fd.Aliases, func(al fileAlias) bool { return al.Address == addr })
		if i < 0 {
			return fmt.Errorf("accounts: alias %s: %w", addr, ErrNotFound)
		}
		al := &fd.Aliases[i]
		for _, t := range targets {
			j := slices.IndexFunc(al.Targets, func(x string) bool { return envelope.Key(x) == envelope.Key(t) })
			if j < 0 {
				return fmt.Errorf("accounts: alias %s: target %s: %w", addr, t, ErrNotFound)
			}
			al.Targets = slices.Delete(al.Targets, j, j+1)
		}
		if len(targets) == 0 || len(al.Targets) == 0 {
			fd.Aliases = slices.Delete(fd.Aliases, i, i+1)
		}
		return nil
	})
}

// ListAliases returns the aliases in file order.
func (a *Admin) ListAliases() ([]Alias, error) {
	fd, err := a.read()
	if err != nil {
		return nil, err
	}
	aliases := make([]Alias, len(fd.Aliases))
	for i, fa := range fd.Aliases {
		aliases[i] = Alias{Address: fa.Address, Targets: slices.Clone(fa.Targets)}
	}
	return aliases, nil
}

func (a *Admin) userAddress(address string) (string, error) {
	addr, err := normalizeUserAddress(address)
	if err != nil {
		return "", fmt.Errorf("accounts: %w", err)
	}
	return addr, a.checkDomain(addr)
}

func (a *Admin) checkDomain(addr string) error {
	_, domain := envelope.Split(addr)
	for _, d := range a.Domains {
		if envelope.CanonDomain(d) == domain {
			return nil
		}
	}
	return fmt.Errorf("accounts: %s: domain %s is not one of ours (config domains)", addr, domain)
}

func (a *Admin) hash(password string) (string, error) {
	p := a.params
	if p == (hashParams{}) {
		p = defaultParams()
	}
	return hashPassword(password, p)
}

func (a *Admin) read() (*fileData, error) {
	data, _, err := readFile(a.Path)
	if err != nil {
		return nil, err
	}
	return decodeFile(a.Path, data)
}

// update applies change to the file under the lock; nothing is written
// when change fails.
func (a *Admin) update(change func(fd *fileData) error) error {
	unlock, err := lockFile(a.Path + ".lock")
	if err != nil {
		return err
	}
	defer unlock()
	fd, err := a.read()
	if err != nil {
		return err
	}
	if err := change(fd); err != nil {
		return err
	}
	return writeFileAtomic(a.FS, a.Path, encodeFile(fd))
}

func (a *Admin) updateUser(address string, change func(u *fileUser) error) error {
	key := envelope.Key(address)
	return a.update(func(fd *fileData) error {
		u := fd.user(key)
		if u == nil {
			return fmt.Errorf("accounts: user %s: %w", key, ErrNotFound)
		}
		return change(u)
	})
}

func (fd *fileData) user(addr string) *fileUser {
	for i := range fd.Users {
		if fd.Users[i].Address == addr {
			return &fd.Users[i]
		}
	}
	return nil
}

func (fd *fileData) alias(addr string) *fileAlias {
	for i := range fd.Aliases {
		if fd.Aliases[i].Address == addr {
			return &fd.Aliases[i]
		}
	}
	return nil
}
