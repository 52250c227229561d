package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Size is a number of bytes. In the file it is a TOML integer (bytes) or a
// string with a decimal or binary unit: "25MB", "512KB", "1GB", "10MiB".
type Size int64

// Units of Size.
const (
	B   Size = 1
	KB  Size = 1000
	MB  Size = 1000 * KB
	GB  Size = 1000 * MB
	TB  Size = 1000 * GB
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
	TiB Size = 1 << 40
)

// sizeUnits lists the units, larger first within each family, as String
// prefers them.
var sizeUnits = []struct {
	name string
	size Size
}{
	{"TB", TB}, {"GB", GB}, {"MB", MB}, {"KB", KB},
	{"TiB", TiB}, {"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB},
	{"B", B},
}

// ParseSize reads "25MB", "1.5GB", "10 MiB", "4096" or "4096B". Units are
// case-insensitive; KB, MB, GB, TB are powers of 1000 and KiB, MiB, GiB, TiB
// powers of 1024.
func ParseSize(s string) (Size, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, unit := s[:i], strings.TrimSpace(s[i:])
	if num == "" {
		return 0, fmt.Errorf("size %q: want a number of bytes or a number with a unit, like \"25MB\"", s)
	}
	mult := Size(0)
	if unit == "" {
		mult = B
	}
	for _, u := range sizeUnits {
		if strings.EqualFold(unit, u.name) {
			mult = u.size
		}
	}
	if mult == 0 {
		return 0, fmt.Errorf("size %q: unknown unit %q (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)", s, unit)
	}
	whole, frac, _ := strings.Cut(num, ".")
	if whole == "" || strings.Contains(frac, ".") {
		return 0, fmt.Errorf("size %q: bad number", s)
	}
	// whole.frac × mult, in integers: (whole×10^d + frac) × mult / 10^d.
	digits, err := strconv.ParseInt(whole+frac, 10, 64)
	if err != nil || len(frac) > 18 {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	scale := int64(math.Pow10(len(frac)))
	if digits > math.MaxInt64/int64(mult) {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	n := digits * int64(mult)
	if n%scale != 0 {
		return 0, fmt.Errorf("size %q: not a whole number of bytes", s)
	}
	return Size(n / scale), nil
}

// String formats s with the largest unit that divides it exactly.
func (s Size) String() string {
	if s != 0 {
		for _, u := range sizeUnits {
			if s%u.size == 0 {
				return strconv.FormatInt(int64(s/u.size), 10) + u.name
			}
		}
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}

// UnmarshalText lets other TOML and JSON decoders read a Size as Load does.
func (s *Size) UnmarshalText(text []byte) error {
	v, err := ParseSize(string(text))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// MarshalText writes the form String gives, which ParseSize reads back.
func (s Size) MarshalText() ([]byte, error) {
	if s < 0 {
		return nil, errors.New("negative size")
	}
	return []byte(s.String()), nil
}
