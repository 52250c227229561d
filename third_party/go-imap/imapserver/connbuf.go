package imapserver

// connBufSize is the size of a connection's read and write buffers (bufio's default is 4 KiB).
// They are held for the connection's life, idle or not, so they are small: commands are read a
// KiB at a time, go-imap flushes after every response anyway, and large literals pass through
// bufio without being copied into them.
const connBufSize = 1024
