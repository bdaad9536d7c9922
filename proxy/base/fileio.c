/* Reading a whole small file with a size limit. */
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

int file_read_all(const char *path, size_t max, char **buf, size_t *len)
{
	*buf = NULL;
	*len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return FILEIO_ERR_IO;
	/* Read at most one byte more than allowed, to tell "too large" apart. */
	char *b = malloc(max + 2);
	if (b == NULL) {
		close(fd);
		return FILEIO_ERR_NOMEM;
	}
	size_t n = 0;
	int rc = FILEIO_OK;
	while (n <= max) {
		ssize_t r = read(fd, b + n, max + 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = FILEIO_ERR_IO;
			break;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	int saved = errno;
	close(fd);
	if (rc == FILEIO_OK && n > max)
		rc = FILEIO_ERR_TOO_LARGE;
	if (rc != FILEIO_OK) {
		free(b);
		errno = saved;
		return rc;
	}
	b[n] = '\0';
	*buf = b;
	*len = n;
	return FILEIO_OK;
}
