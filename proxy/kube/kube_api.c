/* Reaching the Kubernetes API server: its address, the bearer token, TLS, the request text. */
#include "kube_api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "ascii.h"
#include "config.h"
#include "fileio.h"

/* A service-account token is a JWT of a few KiB; it goes in one header line. */
#define MAX_TOKEN 16384

/* RFC 3986 §2.1: everything but the unreserved characters as %XX. */
static char *pct_encode(const char *s)
{
	size_t n = strlen(s);
	char *o = malloc(3 * n + 1), *p = o;
	if (o == NULL)
		return NULL;
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (ascii_is_alpha(*c) || ascii_is_digit(*c) || *c == '-' || *c == '.' ||
		    *c == '_' || *c == '~') {
			*p++ = (char)*c;
		} else {
			*p++ = '%';
			*p++ = ascii_hex_digit(*c >> 4, true);
			*p++ = ascii_hex_digit(*c, true);
		}
	}
	*p = '\0';
	return o;
}

/* The bearer token: the file's first line, trimmed; only visible ASCII (it goes in a header). */
static bool read_token(const char *path, char *out, size_t cap, char *why, size_t whylen)
{
	char *buf = NULL;
	size_t n = 0;
	int rc = file_read_all(path, cap - 2, &buf, &n);
	if (rc == FILEIO_ERR_IO || rc == FILEIO_ERR_NOMEM) {
		snprintf(why, whylen, "cannot read token %s: %s", path,
		         rc == FILEIO_ERR_IO ? strerror(errno) : "out of memory");
		return false;
	}
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		n--;
	if (rc == FILEIO_ERR_TOO_LARGE || n == 0) {
		free(buf);
		snprintf(why, whylen, "token %s is empty or over %zu bytes", path, cap - 2);
		return false;
	}
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)buf[i] <= 0x20 || (unsigned char)buf[i] >= 0x7f) {
			free(buf);
			snprintf(why, whylen, "token %s holds a character a header cannot carry",
			         path);
			return false;
		}
	memcpy(out, buf, n);
	out[n] = '\0';
	free(buf);
	return true;
}

static bool from_env(struct kube_api *a, char *errmsg, size_t errlen)
{
	const char *h = getenv("KUBERNETES_SERVICE_HOST"), *p = getenv("KUBERNETES_SERVICE_PORT");
	char *end;
	if (h == NULL || p == NULL) {
		snprintf(errmsg, errlen,
		         "identity.kubernetes: no api_server in the policy and "
		         "KUBERNETES_SERVICE_HOST/PORT are not set (not running in a pod?)");
		return false;
	}
	errno = 0;
	unsigned long port = strtoul(p, &end, 10);
	if ((addr_parse_ipv4_strict(h, strlen(h), &a->addr) != 0 &&
	     addr_parse_ipv6(h, strlen(h), &a->addr) != 0) ||
	    *p == '\0' || *end != '\0' || errno != 0 || port == 0 || port > 65535) {
		snprintf(errmsg, errlen,
		         "identity.kubernetes: KUBERNETES_SERVICE_HOST/PORT (%.64s, %.16s) are "
		         "not an IP address and a port",
		         h, p);
		return false;
	}
	a->port = (uint16_t)port;
	return true;
}

int kube_api_init(struct kube_api *a, const struct policy_kube *cfg, char *errmsg, size_t errlen)
{
	memset(a, 0, sizeof(*a));
	if (cfg->api_server_set) {
		a->addr = cfg->api_server.addr;
		a->port = cfg->api_server.port;
	} else if (!from_env(a, errmsg, errlen)) {
		return -1;
	}
	char t[ADDR_STRLEN];
	addr_format(&a->addr, t, sizeof(t));
	snprintf(a->host_hdr, sizeof(a->host_hdr), a->addr.family == ADDR_V6 ? "[%s]:%u" : "%s:%u",
	         t, a->port);
	a->token_file = strdup(cfg->token_file);
	a->ca_file = strdup(cfg->ca_file);
	a->selector_q = cfg->label_selector ? pct_encode(cfg->label_selector) : NULL;
	a->watch_timeout_s = cfg->watch_timeout_ms / 1000;
	if (a->token_file == NULL || a->ca_file == NULL ||
	    (cfg->label_selector && a->selector_q == NULL)) {
		snprintf(errmsg, errlen, "kubernetes: out of memory");
		kube_api_fini(a);
		return -1;
	}
	return 0;
}

void kube_api_fini(struct kube_api *a)
{
	free(a->token_file);
	free(a->ca_file);
	free(a->selector_q);
	a->token_file = a->ca_file = a->selector_q = NULL;
}

char *kube_api_request(const struct kube_api *a, const char *ns, bool watch, const char *from,
                       unsigned limit, char *why, size_t whylen)
{
	char token[MAX_TOKEN], path[160];
	char *enc = from[0] != '\0' ? pct_encode(from) : NULL;
	char *req = NULL;
	if (!read_token(a->token_file, token, sizeof(token), why, whylen)) {
		free(enc);
		return NULL;
	}
	if (ns != NULL)
		snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods", ns);
	else
		snprintf(path, sizeof(path), "/api/v1/pods");
	int n;
	if (watch)
		n = asprintf(&req,
		             "GET %s?watch=1&allowWatchBookmarks=true&resourceVersion=%s"
		             "&timeoutSeconds=%u%s%s HTTP/1.1\r\n",
		             path, enc ? enc : "", a->watch_timeout_s,
		             a->selector_q ? "&labelSelector=" : "",
		             a->selector_q ? a->selector_q : "");
	else
		n = asprintf(&req, "GET %s?limit=%u%s%s%s%s HTTP/1.1\r\n", path, limit,
		             enc ? "&continue=" : "", enc ? enc : "",
		             a->selector_q ? "&labelSelector=" : "",
		             a->selector_q ? a->selector_q : "");
	free(enc);
	char *full = NULL;
	if (n >= 0 && asprintf(&full,
	                       "%sHost: %s\r\nAuthorization: Bearer %s\r\n"
	                       "Accept: application/json\r\nUser-Agent: portcullis/%s\r\n"
	                       "Connection: close\r\n\r\n",
	                       req, a->host_hdr, token, PORTCULLIS_VERSION) < 0)
		full = NULL;
	free(n >= 0 ? req : NULL);
	explicit_bzero(token, sizeof(token));
	if (full == NULL)
		snprintf(why, whylen, "out of memory");
	return full;
}

void kube_api_request_free(char *req)
{
	if (req == NULL)
		return;
	explicit_bzero(req, strlen(req));
	free(req);
}
