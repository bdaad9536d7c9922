/* The files a TLS context is built from: their digest, OpenSSL error text, a watch for changes. */
#ifndef PORTCULLIS_TLS_FILES_H
#define PORTCULLIS_TLS_FILES_H

#include <stddef.h>

struct event_base;
struct tls_watch;

/* The most files one context is built from (a chain, a key, a CA bundle, a CRL). */
#define TLS_FILES_MAX 4
/* No file of a context is larger. */
#define TLS_FILE_MAX (4u << 20)

/*
 * SHA-256 over every file's SHA-256 (n <= TLS_FILES_MAX; NULL entries are
 * skipped): what a change detector compares.  "" when a file is unreadable.
 */
void tls_files_sha(const char *const *files, size_t n, char out[65]);

/* The last OpenSSL error of this thread as text ("unknown error" when none); clears the queue. */
void tls_err_text(char *buf, size_t len);

/*
 * Call changed(arg) on base's thread when something in the directory of one
 * of the files changed and the writes settled (a debounce).  The directories
 * are watched, not the files: a Kubernetes Secret rotates by pointing its
 * ..data symlink at a new directory, and editors replace files.  changed()
 * compares the files' digest to decide whether to reload.  NULL (logged as
 * "<what>: cannot watch ...; reload with SIGHUP") when inotify is unavailable.
 */
struct tls_watch *tls_watch_create(struct event_base *base, const char *what,
                                   const char *const *files, size_t n, void (*changed)(void *arg),
                                   void *arg);
void tls_watch_destroy(struct tls_watch *w);

#endif
