/* The operational log: one JSON line per message on stderr, never interleaved. */
#ifndef PORTCULLIS_OPLOG_H
#define PORTCULLIS_OPLOG_H

/* level: "info", "warn", "error".  The message is JSON-escaped; the line goes out in one write. */
void oplog(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
