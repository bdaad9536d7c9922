/* Reading a whole small file with a size limit. */
#ifndef PORTCULLIS_FILEIO_H
#define PORTCULLIS_FILEIO_H

#include <stddef.h>

enum fileio_status {
	FILEIO_OK = 0,
	FILEIO_ERR_IO = -1,        /* open or read failed: errno says why */
	FILEIO_ERR_TOO_LARGE = -2, /* more than max bytes */
	FILEIO_ERR_NOMEM = -3,
};

/*
 * Read all of path (at most max bytes) into a malloc'd buffer, NUL-terminated
 * after the last byte (*buf holds len + 1 bytes).  On error *buf is NULL and
 * errno is kept from the failing call (FILEIO_ERR_IO).
 */
int file_read_all(const char *path, size_t max, char **buf, size_t *len)
    __attribute__((warn_unused_result));

#endif
