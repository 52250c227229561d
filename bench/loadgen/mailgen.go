package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// words is the vocabulary of generated text. The search word is not in it,
// so SEARCH TEXT finds exactly the messages it was planted in.
var words = strings.Fields(`the of and to in is that it for was on are as with his they at be this from
have or by one had not but what all were when we there can an your which their said if do will each about
how up out them then she many some so these would other into has more her two like him see time could no
make than first been its who now people my made over did down only way find use may water long little very
after words called just where most know get through back much before go good new write our used me man too
any day same right look think also around another came come work three word must because does part even place
well such here take why things help put years different away again off went old number great tell men say
small every found still between name should home big give air line set own under read last never us left end
along while might next sound below saw something thought both few those always looked show large often together
asked house world going want school important until form food keep children feet land side without boy once
animals life enough took sometimes four head above kind began almost live page got earth need far hand high
year mother light parts country father let night following picture being study second eyes soon times story
boys since white days ever paper hard near sentence better best across during today others however sure means
knew try told young miles sun ways thing whole hear example heard several change answer room sea against top
turned learn point city play toward five using himself usually meeting invoice budget quarter report project
deadline review schedule release customer server backup migration contract proposal agenda minutes`)

var names = []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
	"mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yolanda"}

var orgs = []string{"example.org", "example.net", "corp.example", "mail.example.com", "lists.example.org"}

// baseTime is the Date of the first generated message; later ones follow.
var baseTime = time.Date(2024, 3, 1, 9, 0, 0, 0, time.UTC)

// textGen writes pseudo-English text from a seeded source.
type textGen struct {
	r *rand.Rand
}

func (g textGen) sentence() string {
	n := 5 + g.r.IntN(12)
	ws := make([]string, n)
	for i := range ws {
		ws[i] = words[g.r.IntN(len(words))]
	}
	ws[0] = strings.ToUpper(ws[0][:1]) + ws[0][1:]
	return strings.Join(ws, " ") + "."
}

// paragraphs writes about n bytes of text wrapped at 72 columns, CRLF ends;
// plant, when set, is put in the middle.
func (g textGen) paragraphs(b *bytes.Buffer, n int, plant string) {
	start := b.Len()
	line := 0
	planted := plant == ""
	for b.Len()-start < n {
		s := g.sentence()
		if !planted && b.Len()-start >= n/2 {
			s = "Please note " + plant + " " + s
			planted = true
		}
		for _, w := range strings.Fields(s) {
			if line > 0 && line+1+len(w) > 72 {
				b.WriteString("\r\n")
				line = 0
			}
			if line > 0 {
				b.WriteByte(' ')
				line++
			}
			b.WriteString(w)
			line += len(w)
		}
		if g.r.IntN(6) == 0 {
			b.WriteString("\r\n\r\n")
			line = 0
		}
	}
	if !planted {
		b.WriteString("\r\nPlease note " + plant + ".")
	}
	b.WriteString("\r\n")
}

func (g textGen) addr() string {
	return names[g.r.IntN(len(names))] + "@" + orgs[g.r.IntN(len(orgs))]
}

// mailboxMessage builds message i of the IMAP/POP3 mailbox: one of plain
// text, multipart/alternative, or multipart/mixed with one or two base64
// attachments, 2-50 KiB (log-uniform), CRLF line ends. The word is planted
// in the text of the message when plant is true.
func mailboxMessage(r *rand.Rand, i int, to, word string, plant bool) []byte {
	g := textGen{r}
	target := int(math.Exp(math.Log(2048) + r.Float64()*(math.Log(50*1024)-math.Log(2048))))
	var b bytes.Buffer
	date := baseTime.Add(time.Duration(i) * 7 * time.Minute)
	from := g.addr()
	fmt.Fprintf(&b, "Return-Path: <%s>\r\n", from)
	fmt.Fprintf(&b, "Received: from relay%d.example.net (relay%d.example.net [192.0.2.%d])\r\n\tby mx.bench.test with ESMTPS id %08X\r\n\tfor <%s>; %s\r\n",
		i%7, i%7, i%250+1, r.Uint32(), to, date.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "From: %s <%s>\r\n", strings.ToUpper(from[:1])+strings.SplitN(from, "@", 2)[0][1:], from)
	fmt.Fprintf(&b, "To: %s\r\n", to)
	if r.IntN(3) == 0 {
		fmt.Fprintf(&b, "Cc: %s, %s\r\n", g.addr(), g.addr())
	}
	subj := g.sentence()
	if r.IntN(3) == 0 {
		subj = "Re: " + subj
		fmt.Fprintf(&b, "In-Reply-To: <%d.thread@example.org>\r\n", i/5)
		fmt.Fprintf(&b, "References: <%d.root@example.org> <%d.thread@example.org>\r\n", i/50, i/5)
	}
	fmt.Fprintf(&b, "Subject: %s\r\n", strings.TrimSuffix(subj, "."))
	fmt.Fprintf(&b, "Date: %s\r\n", date.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%d.%08x@bench.example>\r\n", i, r.Uint32())
	b.WriteString("MIME-Version: 1.0\r\n")
	plantWord := ""
	if plant {
		plantWord = word
	}
	body := target - b.Len()
	switch kind := r.IntN(10); {
	case kind < 4:
		b.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n")
		g.paragraphs(&b, body, plantWord)
	case kind < 7:
		alternative(&b, g, i, body, plantWord)
	default:
		mixed(&b, g, i, body, plantWord)
	}
	return b.Bytes()
}

func alternative(b *bytes.Buffer, g textGen, i, n int, plant string) {
	bd := fmt.Sprintf("alt-%06d-%08x", i, g.r.Uint32())
	fmt.Fprintf(b, "Content-Type: multipart/alternative; boundary=\"%s\"\r\n\r\n", bd)
	fmt.Fprintf(b, "--%s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n", bd)
	g.paragraphs(b, n*2/5, plant)
	fmt.Fprintf(b, "--%s\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>\r\n", bd)
	g.paragraphs(b, n/2, plant)
	fmt.Fprintf(b, "</p></body></html>\r\n--%s--\r\n", bd)
}

func mixed(b *bytes.Buffer, g textGen, i, n int, plant string) {
	bd := fmt.Sprintf("mix-%06d-%08x", i, g.r.Uint32())
	fmt.Fprintf(b, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n", bd)
	fmt.Fprintf(b, "This is a multi-part message in MIME format.\r\n--%s\r\n", bd)
	text := 600 + n/6
	if g.r.IntN(2) == 0 {
		alternative(b, g, i, text, plant)
	} else {
		b.WriteString("Content-Type: text/plain; charset=utf-8\r\n\r\n")
		g.paragraphs(b, text, plant)
	}
	attachments := 1 + g.r.IntN(2)
	left := n - text
	types := []string{"application/pdf; name=\"report-%d.pdf\"", "image/png; name=\"photo-%d.png\"",
		"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet; name=\"sheet-%d.xlsx\""}
	for a := 0; a < attachments; a++ {
		raw := make([]byte, max(64, left/attachments*3/4-200))
		for k := range raw {
			raw[k] = byte(g.r.Uint32())
		}
		ct := fmt.Sprintf(types[g.r.IntN(len(types))], i*10+a)
		name := ct[strings.Index(ct, "name=")+5:]
		fmt.Fprintf(b, "--%s\r\nContent-Type: %s\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=%s\r\n\r\n",
			bd, ct, name)
		enc := base64.StdEncoding.EncodeToString(raw)
		for len(enc) > 76 {
			b.WriteString(enc[:76])
			b.WriteString("\r\n")
			enc = enc[76:]
		}
		b.WriteString(enc)
		b.WriteString("\r\n")
	}
	fmt.Fprintf(b, "--%s--\r\n", bd)
}

// smtpMessage builds an SMTP load message of about size bytes: text/plain,
// CRLF. The %010d placeholder in the Message-ID is patched per message.
func smtpMessage(size int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	g := textGen{r}
	var b bytes.Buffer
	b.WriteString("From: Load Generator <load@sender.example>\r\n")
	b.WriteString("To: Bench Users <users@bench.test>\r\n")
	fmt.Fprintf(&b, "Subject: load test message of %d bytes\r\n", size)
	fmt.Fprintf(&b, "Date: %s\r\n", baseTime.Format(time.RFC1123Z))
	b.WriteString("Message-ID: <0000000000.load@sender.example>\r\n")
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	g.paragraphs(&b, size-b.Len()-2, "")
	return b.Bytes()
}

// cmdMailgen writes the same mailbox into each Maildir given (creating
// cur/ new/ tmp/), as files in new/ whose base names carry ,S=<size> and
// ,W=<size>, as Dovecot's own deliveries do.
func cmdMailgen(args []string) error {
	fs := newFlags("mailgen")
	n := fs.Int("n", 10000, "messages")
	seed := fs.Uint64("seed", 1, "random seed: the same seed gives the same mailbox")
	word := fs.String("word", "quetzalcoatl", "word planted for SEARCH TEXT")
	every := fs.Int("plant-every", 50, "plant the word in one message out of this many")
	to := fs.String("to", "reader@bench.test", "To: of the messages")
	uid := fs.Int("uid", -1, "chown the files of the second and later directories to this uid (-1: leave)")
	gid := fs.Int("gid", -1, "group for -uid")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dirs := fs.Args()
	if len(dirs) == 0 {
		return fmt.Errorf("no Maildir given")
	}
	for k, d := range dirs {
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil {
				return err
			}
		}
		if k > 0 && *uid >= 0 {
			for _, p := range []string{d, filepath.Join(d, "cur"), filepath.Join(d, "new"), filepath.Join(d, "tmp")} {
				if err := os.Chown(p, *uid, *gid); err != nil {
					return err
				}
			}
		}
	}
	r := rand.New(rand.NewPCG(*seed, 1))
	var total int64
	planted := 0
	for i := 0; i < *n; i++ {
		plant := i%*every == *every/2
		if plant {
			planted++
		}
		msg := mailboxMessage(r, i, *to, *word, plant)
		total += int64(len(msg))
		// S= is the file size (Postie's hint), W= the RFC 822 size with CRLF
		// (Dovecot's): the same here, as the files have CRLF line ends.
		size := strconv.Itoa(len(msg))
		name := fmt.Sprintf("%d.M%06dP1.bench,S=%s,W=%s", baseTime.Unix()+int64(i)*420, i, size, size)
		mtime := baseTime.Add(time.Duration(i) * 7 * time.Minute)
		for k, d := range dirs {
			p := filepath.Join(d, "new", name)
			if err := os.WriteFile(p, msg, 0o600); err != nil {
				return err
			}
			if err := os.Chtimes(p, mtime, mtime); err != nil {
				return err
			}
			if k > 0 && *uid >= 0 {
				if err := os.Chown(p, *uid, *gid); err != nil {
					return err
				}
			}
		}
	}
	fmt.Printf("messages=%d bytes=%d planted=%d\n", *n, total, planted)
	return nil
}
