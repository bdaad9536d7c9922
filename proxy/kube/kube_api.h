/* Reaching the Kubernetes API server: its address, the bearer token, TLS, the request text. */
#ifndef PORTCULLIS_KUBE_API_H
#define PORTCULLIS_KUBE_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "addr.h"
#include "policy.h"

struct kube_api {
	struct pc_addr addr; /* https://addr:port */
	uint16_t port;
	char host_hdr[64]; /* Host: IP:port */
	char *token_file, *ca_file;
	char *selector_q; /* labelSelector, percent-encoded, or NULL */
	unsigned watch_timeout_s;
};

/*
 * From identity.kubernetes: api_server, or KUBERNETES_SERVICE_HOST/PORT in a
 * pod; the token and CA files; the label selector.  -1 with errmsg filled.
 */
int kube_api_init(struct kube_api *a, const struct policy_kube *cfg, char *errmsg, size_t errlen)
    __attribute__((warn_unused_result));
void kube_api_fini(struct kube_api *a);

/*
 * The request for one list page of at most `limit` items (watch false; `from`
 * is the continue token, "" for the first page) or one watch (watch true; `from` is the
 * resourceVersion) of a namespace's pods (ns) or the cluster's (ns NULL),
 * with the token read from its file now (rotation).  The text is malloc'd;
 * free it with kube_api_request_free (it holds the token).  NULL with why.
 */
char *kube_api_request(const struct kube_api *a, const char *ns, bool watch, const char *from,
                       unsigned limit, char *why, size_t whylen);
void kube_api_request_free(char *req);

#endif
