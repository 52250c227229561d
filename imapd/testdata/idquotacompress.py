# Python's imaplib (with zlib for RFC 4978's DEFLATE) against the server: ID, QUOTA, COMPRESS.
# Usage: idquotacompress.py HOST PORT USER PASS; prints one line per check and OK at the end.
import imaplib
import sys
import zlib


imaplib.Commands.setdefault('ID', ('NONAUTH', 'AUTH', 'SELECTED'))
imaplib.Commands.setdefault('COMPRESS', ('AUTH', 'SELECTED'))


class Client(imaplib.IMAP4):
    compressing = False

    def start_compress(self):
        typ, _ = self._simple_command('COMPRESS', 'DEFLATE')
        assert typ == 'OK', typ
        self._z = zlib.compressobj(6, zlib.DEFLATED, -15)
        self._u = zlib.decompressobj(-15)
        self._buf = b''
        self.compressing = True

    def send(self, data):
        if self.compressing:
            data = self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH)
        super().send(data)

    def _fill(self):
        data = self.file.read1(8192)
        if not data:
            raise self.abort('EOF')
        self._buf += self._u.decompress(data)

    def read(self, size):
        if not self.compressing:
            return super().read(size)
        while len(self._buf) < size:
            self._fill()
        out, self._buf = self._buf[:size], self._buf[size:]
        return out

    def readline(self):
        if not self.compressing:
            return super().readline()
        while b'\n' not in self._buf:
            self._fill()
        i = self._buf.index(b'\n') + 1
        out, self._buf = self._buf[:i], self._buf[i:]
        return out


host, port, user, password = sys.argv[1:5]
m = Client(host, int(port))
typ, dat = m._simple_command('ID', '("name" "imaplib" "version" "%d.%d")' % sys.version_info[:2])
print('ID', typ, m._untagged_response(typ, dat, 'ID')[1][0].decode())
m.login(user, password)
caps = m.capability()[1][0].decode().split()
print('CAPS', ' '.join(c for c in caps if c.startswith(('QUOTA', 'COMPRESS')) or c == 'ID'))
typ, dat = m.getquotaroot('INBOX')
print('QUOTAROOT', typ, [d.decode() for d in dat[0]], [d.decode() for d in dat[1]])
m.start_compress()
typ, dat = m.select('INBOX')
print('SELECT', typ, dat[0].decode())
typ, dat = m.fetch('1', '(BODY.PEEK[])')
print('FETCH', typ, len(dat[0][1]))
typ, dat = m.getquota('""')
print('QUOTA', typ, dat[0].decode())
typ, dat = m.logout()
print('LOGOUT', typ)
print('OK')
