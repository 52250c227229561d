package maildir

import "strings"

// Roles says which folders play each special-use role (RFC 6154: `\Junk`,
// `\Trash`...), as one user's folders stood when it was read. A folder
// under one with a role plays it too: a sub-folder of Junk is junk. The
// junk filter's training (imapd) and `postie junk train` decide by it.
type Roles struct {
	byUse map[string][]string
}

// Roles reads the user's folders. A role no folder has falls to the
// default folder of that use, by name ("Junk", "Trash"...).
func (u *User) Roles() (Roles, error) {
	infos, err := u.ListMailboxes()
	if err != nil {
		return Roles{}, err
	}
	r := Roles{byUse: make(map[string][]string)}
	for _, mi := range infos {
		if mi.SpecialUse != "" {
			r.byUse[mi.SpecialUse] = append(r.byUse[mi.SpecialUse], mi.Name)
		}
	}
	for _, d := range defaultFolders {
		if len(r.byUse[d.use]) == 0 {
			r.byUse[d.use] = []string{d.name}
		}
	}
	return r, nil
}

// Has reports whether the folder name plays the role use (`\Junk`): it
// has that special use, or lies under a folder that has it.
func (r Roles) Has(name, use string) bool {
	for _, root := range r.byUse[use] {
		if name == root || strings.HasPrefix(name, root) && name[len(root)] == '/' {
			return true
		}
	}
	return false
}
