package config

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// A decoder fills a Config from the text of one file, collecting an *Error
// for each problem instead of stopping at the first. The TOML library
// parses the text into plain maps; decoder then binds those to the struct
// fields itself, so that a wrong type, a bad duration or an unknown key in
// one place does not hide the problems in another.
type decoder struct {
	file  string
	text  string
	raw   map[string]any  // the parsed document
	lines map[string]int  // key → line, from keyLines
	bad   map[string]bool // keys whose values could not be decoded
	errs  []*Error
}

func newDecoder(file, text string) *decoder {
	return &decoder{file: file, text: text, bad: map[string]bool{}}
}

// decode binds the document to c. It returns false if the text is not
// TOML at all; other problems are recorded and decoding goes on.
func (d *decoder) decode(c *Config) bool {
	if _, err := toml.Decode(d.text, &d.raw); err != nil {
		e := &Error{File: d.file, Msg: "invalid TOML: " + err.Error()}
		if pe, ok := errors.AsType[toml.ParseError](err); ok {
			e.Line, e.Msg = parseErrorLine(d.text, pe.Position), "invalid TOML: "+pe.Message
		}
		d.errs = append(d.errs, e)
		return false
	}
	d.lines = keyLines(d.text)
	d.bindTable(d.raw, reflect.ValueOf(c).Elem(), nil)
	return true
}

// parseErrorLine returns the line of a syntax error. The library counts a
// line end as the start of the next line, so an error found at a '\n' (an
// unfinished "[table" or "key =") would point one line too far.
func parseErrorLine(text string, p toml.Position) int {
	text = strings.TrimPrefix(text, "\ufeff") // the library skips it too
	if p.Start >= 0 && p.Start < len(text) && text[p.Start] == '\n' && p.Len <= 1 {
		return strings.Count(text[:p.Start], "\n") + 1
	}
	return p.Line
}

// has reports whether the file sets the top-level key.
func (d *decoder) has(key string) bool {
	_, ok := d.raw[key]
	return ok
}

// add records a problem with key; key is in toml.Key's String form,
// optionally ending in "[i]" for an array element.
func (d *decoder) add(key, msg string) {
	d.errs = append(d.errs, &Error{File: d.file, Line: lineOf(d.lines, key), Key: key, Msg: msg})
}

// errf records a validation problem, unless key (or its table) already
// failed to decode: one mistake, one message.
func (d *decoder) errf(key, format string, args ...any) {
	for _, k := range ancestors(key) {
		if d.bad[k] {
			return
		}
	}
	d.add(key, fmt.Sprintf(format, args...))
}

// fail records a value that cannot be decoded into its field.
func (d *decoder) fail(key, format string, args ...any) {
	d.bad[key] = true
	d.add(key, fmt.Sprintf(format, args...))
}

// err joins the problems found, in line order (missing keys, which have no
// line, first).
func (d *decoder) err() error {
	if len(d.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(d.errs, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
	errs := make([]error, len(d.errs))
	for i, e := range d.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	sizeType     = reflect.TypeFor[Size]()
)

// bindTable sets the fields of the struct rv from the table m found at path.
func (d *decoder) bindTable(m map[string]any, rv reflect.Value, path []string) {
	fields := map[string]int{}
	for i := range rv.NumField() {
		if tag := rv.Type().Field(i).Tag.Get("toml"); tag != "" && tag != "-" {
			fields[tag] = i
		}
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		kp := append(slices.Clip(path), k)
		i, ok := fields[k]
		if !ok {
			d.errs = append(d.errs, &Error{File: d.file, Line: lineOf(d.lines, toml.Key(kp).String()),
				Key: toml.Key(kp).String(), Msg: msgUnknownKey})
			continue
		}
		d.bindValue(m[k], rv.Field(i), kp)
	}
}

// bindValue sets the field fv from the TOML value v found at path.
func (d *decoder) bindValue(v any, fv reflect.Value, path []string) {
	key := toml.Key(path).String()
	switch {
	case fv.Type() == durationType:
		d.bindDuration(v, fv, key)
	case fv.Type() == sizeType:
		d.bindSize(v, fv, key)
	case fv.Kind() == reflect.String:
		s, ok := v.(string)
		if !ok {
			d.fail(key, "must be a string, not %s", tomlType(v))
			return
		}
		fv.SetString(s)
	case fv.Kind() == reflect.Int:
		n, ok := v.(int64)
		if !ok {
			d.fail(key, "must be an integer, not %s", tomlType(v))
			return
		}
		if n < math.MinInt || n > math.MaxInt {
			d.fail(key, "%d is out of range", n)
			return
		}
		fv.SetInt(n)
	case fv.Kind() == reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			d.fail(key, "must be true or false, not %s", tomlType(v))
			return
		}
		fv.SetBool(b)
	case fv.Kind() == reflect.Float64:
		switch x := v.(type) {
		case float64:
			fv.SetFloat(x)
		case int64:
			fv.SetFloat(float64(x))
		default:
			d.fail(key, "must be a number, not %s", tomlType(v))
		}
	case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.String:
		d.bindStrings(v, fv, key)
	case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.Struct:
		d.bindTables(v, fv, path)
	case fv.Kind() == reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			d.fail(key, "must be a table, not %s", tomlType(v))
			return
		}
		d.bindTable(m, fv, path)
	default:
		// Every field type of Config is handled above; TestSchemaTypes
		// keeps it so.
		d.fail(key, "cannot decode into %s", fv.Type())
	}
}

func (d *decoder) bindDuration(v any, fv reflect.Value, key string) {
	switch x := v.(type) {
	case string:
		dur, err := time.ParseDuration(strings.TrimSpace(x))
		if err != nil {
			d.fail(key, "bad duration %q: want a number and a unit, like \"30s\", \"5m\" or \"120h\"", x)
			return
		}
		fv.SetInt(int64(dur))
	case int64:
		if x != 0 { // a bare number has no unit: 300 is not "300s"
			d.fail(key, "bad duration %d: want a string with a unit, like \"30s\", \"5m\" or \"120h\"", x)
			return
		}
		fv.SetInt(0)
	default:
		d.fail(key, "must be a duration like \"30s\", not %s", tomlType(v))
	}
}

func (d *decoder) bindSize(v any, fv reflect.Value, key string) {
	switch x := v.(type) {
	case int64:
		fv.SetInt(x)
	case string:
		n, err := ParseSize(x)
		if err != nil {
			d.fail(key, "bad %v", err)
			return
		}
		fv.SetInt(int64(n))
	default:
		d.fail(key, "must be a size in bytes or a string like \"25MB\", not %s", tomlType(v))
	}
}

func (d *decoder) bindStrings(v any, fv reflect.Value, key string) {
	arr, ok := v.([]any)
	if !ok {
		d.fail(key, "must be an array of strings, not %s", tomlType(v))
		return
	}
	out := make([]string, 0, len(arr))
	for i, e := range arr {
		s, ok := e.(string)
		if !ok {
			d.bad[key] = true
			d.add(key+"["+strconv.Itoa(i)+"]", fmt.Sprintf("must be a string, not %s", tomlType(e)))
			continue
		}
		out = append(out, s)
	}
	fv.Set(reflect.ValueOf(out))
}

// bindTables sets the slice of structs fv from an array of tables
// ([[queue.throttle]] or an inline array of inline tables).
func (d *decoder) bindTables(v any, fv reflect.Value, path []string) {
	key := toml.Key(path).String()
	var tables []map[string]any
	switch x := v.(type) {
	case []map[string]any:
		tables = x
	case []any:
		for i, e := range x {
			m, ok := e.(map[string]any)
			if !ok {
				d.fail(key+"["+strconv.Itoa(i)+"]", "must be a table, not %s", tomlType(e))
				d.bad[key] = true
				return
			}
			tables = append(tables, m)
		}
	default:
		d.fail(key, "must be an array of tables, not %s", tomlType(v))
		return
	}
	out := reflect.MakeSlice(fv.Type(), len(tables), len(tables))
	for i, m := range tables {
		d.bindTable(m, out.Index(i), path)
	}
	fv.Set(out)
}

// tomlType names the TOML type of a decoded value, for messages.
func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time:
		return "a date-time"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("%T", v)
}

// ancestors lists key, then key without its "[i]", then each parent table:
// "smtp.listen[1]" → "smtp.listen[1]", "smtp.listen", "smtp".
func ancestors(key string) []string {
	var out []string
	for key != "" {
		out = append(out, key)
		if strings.HasSuffix(key, "]") {
			if i := strings.LastIndexByte(key, '['); i > 0 {
				key = key[:i]
				continue
			}
		}
		i := strings.LastIndexByte(key, '.')
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return out
}
