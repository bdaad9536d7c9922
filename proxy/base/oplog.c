/* The operational log: one JSON line per message on stderr. */
#include "oplog.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

void oplog(const char *level, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* JSON-escape the message; the line goes out in one write so lines never interleave. */
	char line[2400];
	size_t n = 0;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	n += strftime(line, sizeof(line), "{\"@timestamp\":\"%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(line + n, sizeof(line) - n,
	                      ".%03ldZ\",\"log.level\":\"%s\",\"message\":\"", ts.tv_nsec / 1000000,
	                      level);
	for (const unsigned char *p = (const unsigned char *)msg; *p && n < sizeof(line) - 16;
	     p++) {
		if (*p == '"' || *p == '\\') {
			line[n++] = '\\';
			line[n++] = (char)*p;
		} else if (*p < 0x20 || *p >= 0x7f) {
			n += (size_t)snprintf(line + n, sizeof(line) - n, "\\u%04x", *p);
		} else {
			line[n++] = (char)*p;
		}
	}
	line[n++] = '"';
	line[n++] = '}';
	line[n++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, n);
	(void)w;
}
