/* The files a TLS context is built from: digested to detect a change, watched with inotify. */
#include "tls_files.h"

#include <errno.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/err.h>

#include "fileio.h"
#include "hash.h"
#include "oplog.h"

/* File-change reloads wait for the writes to settle (a Secret swap is several renames). */
#define RELOAD_DEBOUNCE_MS 200

struct tls_watch {
	int inotify_fd;
	struct event *inotify_ev, *debounce_ev;
	void (*changed)(void *arg);
	void *arg;
};

void tls_err_text(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();
	char tmp[256] = "";
	if (e != 0)
		ERR_error_string_n(e, tmp, sizeof(tmp));
	snprintf(buf, len, "%s", tmp[0] ? tmp : "unknown error");
	ERR_clear_error();
}

void tls_files_sha(const char *const *files, size_t n, char out[65])
{
	char all[TLS_FILES_MAX * 65] = "";
	out[0] = '\0';
	if (n > TLS_FILES_MAX)
		return;
	for (size_t i = 0; i < n; i++) {
		char *buf;
		size_t len;
		if (files[i] == NULL)
			continue;
		if (file_read_all(files[i], TLS_FILE_MAX, &buf, &len) != FILEIO_OK)
			return;
		int rc = sha256_hex(buf, len, all + 65 * i);
		free(buf);
		if (rc != 0)
			return;
	}
	(void)sha256_hex(all, 65 * n, out);
}

static void debounce_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tls_watch *w = arg;
	w->changed(w->arg);
}

static void inotify_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tls_watch *w = arg;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	struct timeval tv = {0, RELOAD_DEBOUNCE_MS * 1000};
	evtimer_add(w->debounce_ev, &tv);
}

struct tls_watch *tls_watch_create(struct event_base *base, const char *what,
                                   const char *const *files, size_t n, void (*changed)(void *arg),
                                   void *arg)
{
	struct tls_watch *w = calloc(1, sizeof(*w));
	if (w == NULL) {
		oplog("warn",
		      "%s: cannot watch certificate files (out of memory); reload with SIGHUP",
		      what);
		return NULL;
	}
	w->changed = changed;
	w->arg = arg;
	w->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->inotify_fd < 0) {
		oplog("warn", "%s: cannot watch certificate files (%s); reload with SIGHUP", what,
		      strerror(errno));
		free(w);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		if (files[i] == NULL)
			continue;
		char *copy = strdup(files[i]);
		const char *dir = copy != NULL ? dirname(copy) : NULL;
		if (dir == NULL || inotify_add_watch(w->inotify_fd, dir,
		                                     IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE |
		                                         IN_DELETE | IN_ATTRIB) < 0)
			oplog("warn", "%s: cannot watch %s (%s); reload with SIGHUP", what,
			      dir ? dir : files[i], strerror(errno));
		free(copy);
	}
	w->inotify_ev = event_new(base, w->inotify_fd, EV_READ | EV_PERSIST, inotify_cb, w);
	w->debounce_ev = evtimer_new(base, debounce_cb, w);
	if (w->inotify_ev == NULL || w->debounce_ev == NULL || event_add(w->inotify_ev, NULL) != 0)
		oplog("warn", "%s: cannot watch certificate files; reload with SIGHUP", what);
	return w;
}

void tls_watch_destroy(struct tls_watch *w)
{
	if (w == NULL)
		return;
	if (w->inotify_ev != NULL)
		event_free(w->inotify_ev);
	if (w->debounce_ev != NULL)
		event_free(w->debounce_ev);
	if (w->inotify_fd >= 0)
		close(w->inotify_fd);
	free(w);
}
