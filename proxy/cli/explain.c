/* portcullis explain: identity, deciding rule, decision and TLS checks, by the daemon's own code. */
#include "explain.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "dns.h"
#include "http_msg.h"
#include "jsonw.h"
#include "policy.h"
#include "policyfile.h"
#include "ranges.h"

enum { EX_ALLOWED = 0, EX_DENIED = 1, EX_USAGE = 2 };

#define EXPLAIN_MAX_LABELS 32

/* One answer of the pinned resolvers and its vetting. */
struct answer {
	struct pc_addr a;
	bool blocked;
	struct policy_block why;
};

struct explain {
	const char *path;
	const struct policy *p;
	/* identity */
	const char *source; /* --source text, or NULL */
	struct pc_addr src;
	const char *pod_ns, *pod_name;
	const char *tier_label_value;
	int tier;
	/* request */
	const char *method;
	bool plain;
	struct pc_host host;
	uint16_t port;
	/* decision */
	struct verdict v;
	enum reason reason;      /* final: R_ALLOWED or the refusal */
	enum reason would_deny;  /* audit mode: what enforce would have refused (R_ALLOWED: none) */
	bool decided_by_resolve; /* the refusal came from resolving or vetting */
	/* --resolve */
	bool resolve, resolved;
	enum dns_result dns;
	struct answer answers[64];
	size_t n_answers;
};

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: portcullis explain -c FILE (--source IP | --pod NS/NAME [--label K=V]...)\n"
	        "                          [--resolve] [--json] METHOD TARGET\n"
	        "  CONNECT host:port            what a CONNECT (HTTPS_PROXY) would get\n"
	        "  GET http://host[:port]/path  what a plain-HTTP request (HTTP_PROXY) would get\n"
	        "  --resolve  ask the policy's pinned resolvers and vet every answer\n"
	        "exit: 0 allowed, 1 denied, 2 usage error or invalid policy\n");
}

/* ---- the decision: the daemon's order (request.c, conn_admit, dial.c) ---- */

static bool tls_port(const struct policy_tier *t, uint16_t port)
{
	for (size_t i = 0; t != NULL && i < t->n_tls_ports; i++)
		if (t->tls_ports[i] == port)
			return true;
	return false;
}

/* An audit tier lets an allowlist/TLS refusal through and records it as would_deny. */
static void refuse_or_record(struct explain *e, enum reason r)
{
	const struct policy_tier *t = e->tier >= 0 ? policy_tier(e->p, (size_t)e->tier) : NULL;
	if (t != NULL && t->mode == TIER_AUDIT) {
		if (e->would_deny == R_ALLOWED)
			e->would_deny = r;
	} else if (e->reason == R_ALLOWED) {
		e->reason = r;
	}
}

static void dns_done(void *arg, enum dns_result res, const struct pc_addr *addrs, size_t n)
{
	struct explain *e = arg;
	e->resolved = true;
	e->dns = res;
	for (size_t i = 0; res == DNS_OK && i < n && i < sizeof(e->answers) / sizeof(e->answers[0]);
	     i++)
		e->answers[e->n_answers++].a = addrs[i];
}

/* Resolve with the daemon's resolver code and settings; false when it could not start. */
static bool resolve(struct explain *e, char *err, size_t errlen)
{
	struct event_base *base = event_base_new();
	struct dns_resolver *r = base ? dns_resolver_create(base, policy_settings(e->p), err, errlen)
	                              : NULL;
	bool ok = false;
	if (r != NULL) {
		struct dns_query *q = dns_lookup(r, e->host.name, dns_done, e);
		if (q == NULL) {
			e->resolved = true;
			e->dns = DNS_ERROR;
		}
		/* The resolver's own deadline ends every lookup (dns.h); each pass runs callbacks. */
		while (!e->resolved && event_base_loop(base, EVLOOP_ONCE) == 0)
			;
		ok = e->resolved;
	} else if (base == NULL) {
		snprintf(err, errlen, "event loop set-up failed");
	}
	dns_resolver_destroy(r);
	if (base != NULL)
		event_base_free(base);
	return ok;
}

static void vet(struct explain *e)
{
	struct verdict v;
	for (size_t i = 0; i < e->n_answers; i++)
		e->answers[i].blocked =
		    policy_addr_blocked_why(e->p, e->tier, &e->answers[i].a, &e->answers[i].why);
	policy_decide_addrs(e->p, e->tier, e->n_answers ? &e->answers[0].a : NULL, e->n_answers, &v);
	if (!v.allow && e->reason == R_ALLOWED) {
		e->reason = v.reason;
		e->decided_by_resolve = true;
	}
}

static void decide(struct explain *e, const char *method, const char *target, char *err,
                   size_t errlen)
{
	const struct policy_tier *t = e->tier >= 0 ? policy_tier(e->p, (size_t)e->tier) : NULL;
	e->reason = R_ALLOWED;
	e->would_deny = R_ALLOWED;
	e->v.rule = "";
	/* The daemon's parser takes a method only as an RFC 9110 token: anything else is a 400. */
	bool token = method[0] != '\0';
	for (const char *m = method; *m != '\0'; m++)
		token = token && http_is_tchar((unsigned char)*m);
	if (!token) {
		e->reason = R_BAD_REQUEST;
		return;
	}
	if (e->plain) {
		struct http_target ht;
		int st = http_target_parse(target, strlen(target), &ht);
		if (st == HTTP_TARGET_ORIGIN_FORM)
			e->reason = R_NOT_ABSOLUTE_FORM;
		else if (st == HTTP_TARGET_HTTPS)
			e->reason = R_HTTPS_TARGET;
		else if (st == HTTP_TARGET_BAD_AUTHORITY)
			e->reason = R_INVALID_HOST;
		else if (st < 0)
			e->reason = R_BAD_REQUEST;
		else if (t != NULL && !policy_tier_method_allowed(t, method, strlen(method)))
			e->reason = R_METHOD_NOT_ALLOWED;
		if (st >= 0) {
			e->host = ht.host;
			e->port = ht.port;
		}
	} else if (host_parse_authority(target, strlen(target), 0, &e->host, &e->port) != HOST_OK) {
		e->reason = R_INVALID_HOST;
	}
	if (e->reason != R_ALLOWED)
		return;
	policy_decide_host(e->p, e->tier, &e->host, e->port, &e->v);
	if (e->v.reason == R_BLOCKED_ADDRESS) {
		/* Show the range that blocks the literal: the same check, telling why. */
		e->answers[0].a = e->host.addr;
		e->answers[0].blocked =
		    policy_addr_blocked_why(e->p, e->tier, &e->host.addr, &e->answers[0].why);
		e->n_answers = 1;
	}
	if (e->v.would_deny)
		e->would_deny = e->v.reason;
	if (!e->v.allow) {
		e->reason = e->v.reason;
		return;
	}
	/* conn_admit: a TLS port carries TLS only, and only a CONNECT gets its hello checked. */
	if (e->plain && tls_port(t, e->port))
		refuse_or_record(e, R_TLS_REQUIRED);
	if (e->reason != R_ALLOWED)
		return;
	if (e->host.kind != HOST_NAME) {
		/* An IP literal is its own one answer, vetted like a resolved one. */
		e->answers[0].a = e->host.addr;
		e->n_answers = 1;
		e->resolved = true;
		e->dns = DNS_OK;
		vet(e);
	} else if (e->resolve) {
		if (!resolve(e, err, errlen))
			return;
		if (e->dns == DNS_NXDOMAIN)
			e->reason = R_DNS_NXDOMAIN;
		else if (e->dns == DNS_TIMEOUT)
			e->reason = R_DNS_TIMEOUT;
		else if (e->dns != DNS_OK)
			e->reason = R_DNS_ERROR;
		e->decided_by_resolve = e->reason != R_ALLOWED;
		if (e->dns == DNS_OK)
			vet(e);
	}
}

/* ---- output ---- */

/* A JSON string escaped as the audit records are (jsonw: invalid UTF-8 as U+FFFD). */
static void json_str(FILE *f, const char *s)
{
	size_t n = s != NULL ? strlen(s) : 0;
	size_t cap = 6 * n + 3; /* jsonw.h: at most 6 bytes per input byte, quotes, NUL */
	char *buf = malloc(cap);
	struct jsonw w;
	jsonw_init(&w, buf, cap);
	jsonw_strn(&w, s != NULL ? s : "", n);
	size_t len = jsonw_end(&w);
	if (len > 0)
		fwrite(buf, 1, len, f);
	else
		fputs("\"\"", f); /* out of memory */
	free(buf);
}

static const char *block_text(const struct policy_block *b, char *buf, size_t cap)
{
	char v[ADDR_STRLEN], pre[ADDR_STRLEN], emb[ADDR_STRLEN + 16] = "";
	addr_format(&b->view, v, sizeof(v));
	addr_format(&b->prefix, pre, sizeof(pre));
	if (b->embedded)
		snprintf(emb, sizeof(emb), "embeds %s, ", v);
	if (b->nat64_unknown)
		snprintf(buf, cap, "blocked: NAT64 outside 64:ff9b::/96, its IPv4 address cannot "
		                   "be read");
	else if (b->line > 0)
		snprintf(buf, cap, "blocked: %sin %s/%u (blocked_ranges, line %u)", emb, pre, b->plen,
		         b->line);
	else
		snprintf(buf, cap, "blocked: %sin %s/%u (built-in)", emb, pre, b->plen);
	return buf;
}

/* What the TLS checks require after a CONNECT to this port. */
static void tls_text(const struct explain *e, const struct policy_tier *t, char *buf, size_t cap)
{
	if (t == NULL) {
		snprintf(buf, cap, "-");
	} else if (e->plain) {
		snprintf(buf, cap, "%s",
		         tls_port(t, e->port) ? "port is in tls.require_tls_ports: plain http:// is "
		                                "refused (tls_required); use CONNECT"
		                              : "plain HTTP: no TLS checks");
	} else if (tls_port(t, e->port)) {
		snprintf(buf, cap,
		         "TLS port: the first bytes must be one ClientHello within %u ms and %u "
		         "bytes; SNI %s; SNI %s the CONNECT host; the SNI must be allowed on port %u; "
		         "ECH %s",
		         t->hello_timeout_ms, t->max_hello_bytes,
		         t->require_sni ? "required" : "optional",
		         t->sni_must_match ? "must equal" : "may differ from", e->port,
		         t->allow_ech ? "allowed" : "refused");
		if (e->host.kind != HOST_NAME && t->require_sni) {
			size_t n = strlen(buf);
			snprintf(buf + n, cap - n, " (clients send no SNI to an IP address, so "
			                           "this is refused: tls_no_sni)");
		}
	} else {
		snprintf(buf, cap, "not a TLS port: relayed as sent (a ClientHello, first byte 0x16, is "
		                   "still checked)");
	}
}

static void print_text(const struct explain *e)
{
	const struct policy_tier *t = e->tier >= 0 ? policy_tier(e->p, (size_t)e->tier) : NULL;
	char buf[512];
	char cidr[64];
	unsigned line;
	if (e->source != NULL && policy_source_place(e->p, e->tier, &e->src, cidr, sizeof(cidr),
	                                             &line))
		printf("identity:  source %s, in %s (%s:%u)\n", e->source, cidr, e->path, line);
	else if (e->source != NULL && t != NULL)
		printf("identity:  source %s, in no tier's sources: identity.unknown_source\n",
		       e->source);
	else if (e->source != NULL)
		printf("identity:  source %s, in no tier's sources\n", e->source);
	else
		printf("identity:  pod %s/%s%s%s\n", e->pod_ns, e->pod_name,
		       e->tier_label_value ? ", tier label " : "",
		       e->tier_label_value ? e->tier_label_value : "");
	printf("tier:      %s%s\n", t != NULL ? t->name : "none (identity.unknown_source: deny)",
	       t != NULL && t->mode == TIER_AUDIT ? " (mode: audit)" : "");
	printf(e->host.kind == HOST_IPV6 ? "request:   %s [%s]:%u\n" : "request:   %s %s:%u\n",
	       e->method, e->host.len ? e->host.name : "-", e->port);
	if (e->v.rule_line > 0)
		printf("rule:      %s (%s:%u)\n", e->v.rule, e->path, e->v.rule_line);
	else if (e->v.host_rule_line > 0)
		printf("rule:      none allows port %u; the host matches the rule at %s:%u\n", e->port,
		       e->path, e->v.host_rule_line);
	else
		printf("rule:      none\n");
	for (size_t i = 0; i < e->n_answers; i++) {
		char a[ADDR_STRLEN];
		addr_format(&e->answers[i].a, a, sizeof(a));
		printf("answer:    %s %s\n", a,
		       e->answers[i].blocked ? block_text(&e->answers[i].why, buf, sizeof(buf))
		                             : "ok");
	}
	if (e->host.kind == HOST_NAME && e->reason == R_ALLOWED && !e->resolve)
		printf("resolve:   not asked (--resolve vets the pinned resolvers' answers)\n");
	else if (e->resolved && e->dns != DNS_OK)
		printf("resolve:   %s\n", reason_name(e->reason));
	tls_text(e, t, buf, sizeof(buf));
	printf("tls:       %s\n", buf);
	if (e->reason == R_ALLOWED && e->would_deny != R_ALLOWED)
		printf("decision:  allowed, would deny: %s (audit mode)\n", reason_name(e->would_deny));
	else
		printf("decision:  %s %d %s\n", e->reason == R_ALLOWED ? "allowed" : "denied",
		       reason_http_status(e->reason), reason_name(e->reason));
}

static void print_json(const struct explain *e)
{
	const struct policy_tier *t = e->tier >= 0 ? policy_tier(e->p, (size_t)e->tier) : NULL;
	char buf[512];
	printf("{\"identity\":{");
	if (e->source != NULL) {
		printf("\"source\":");
		json_str(stdout, e->source);
	} else {
		printf("\"pod\":{\"namespace\":");
		json_str(stdout, e->pod_ns);
		printf(",\"name\":");
		json_str(stdout, e->pod_name);
		printf("}");
	}
	printf(",\"tier\":");
	if (t != NULL)
		json_str(stdout, t->name);
	else
		printf("null");
	printf(",\"mode\":%s},", t == NULL ? "null" : t->mode == TIER_AUDIT ? "\"audit\"" : "\"enforce\"");
	printf("\"request\":{\"method\":");
	json_str(stdout, e->method);
	printf(",\"host\":");
	json_str(stdout, e->host.len ? e->host.name : "");
	printf(",\"port\":%u},\"rule\":", e->port);
	if (e->v.rule_line > 0) {
		printf("{\"name\":");
		json_str(stdout, e->v.rule);
		printf(",\"file\":");
		json_str(stdout, e->path);
		printf(",\"line\":%u}", e->v.rule_line);
	} else {
		printf("null");
	}
	printf(",\"decision\":\"%s\",\"reason\":\"%s\",\"status\":%d,\"would_deny\":",
	       e->reason == R_ALLOWED ? "allowed" : "denied", reason_name(e->reason),
	       reason_http_status(e->reason));
	if (e->would_deny != R_ALLOWED && e->reason == R_ALLOWED)
		printf("\"%s\"", reason_name(e->would_deny));
	else
		printf("null");
	tls_text(e, t, buf, sizeof(buf));
	printf(",\"tls\":{\"tls_port\":%s,\"require_sni\":%s,\"sni_must_match\":%s,"
	       "\"allow_ech\":%s,\"text\":",
	       t != NULL && tls_port(t, e->port) ? "true" : "false",
	       t != NULL && t->require_sni ? "true" : "false",
	       t != NULL && t->sni_must_match ? "true" : "false",
	       t != NULL && t->allow_ech ? "true" : "false");
	json_str(stdout, buf);
	printf("},\"answers\":[");
	for (size_t i = 0; i < e->n_answers; i++) {
		char a[ADDR_STRLEN];
		addr_format(&e->answers[i].a, a, sizeof(a));
		printf("%s{\"address\":\"%s\",\"blocked\":%s", i ? "," : "", a,
		       e->answers[i].blocked ? "true" : "false");
		if (e->answers[i].blocked) {
			const struct policy_block *b = &e->answers[i].why;
			char pre[ADDR_STRLEN];
			addr_format(&b->prefix, pre, sizeof(pre));
			printf(",\"range\":\"%s/%u\",\"builtin\":%s,\"line\":%u,\"text\":", pre, b->plen,
			       b->line ? "false" : "true", b->line);
			json_str(stdout, block_text(b, buf, sizeof(buf)));
		}
		printf("}");
	}
	printf("],\"resolved\":%s}\n", e->resolved ? "true" : "false");
}

/* ---- command line ---- */

int explain_main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'}, {"source", required_argument, NULL, 's'},
	    {"pod", required_argument, NULL, 'p'},    {"label", required_argument, NULL, 'l'},
	    {"resolve", no_argument, NULL, 'r'},      {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
	};
	struct explain *e = calloc(1, sizeof(*e));
	const char *labels[EXPLAIN_MAX_LABELS], *pod = NULL;
	size_t n_labels = 0;
	bool json = false;
	int o, rc = EX_USAGE;
	char err[256] = "";

	if (e == NULL)
		return EX_USAGE;
	optind = 1;
	while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			e->path = optarg;
			break;
		case 's':
			e->source = optarg;
			break;
		case 'p':
			pod = optarg;
			break;
		case 'l':
			if (n_labels == EXPLAIN_MAX_LABELS || strchr(optarg, '=') == NULL) {
				fprintf(stderr, "explain: --label K=V, at most %d\n", EXPLAIN_MAX_LABELS);
				goto out;
			}
			labels[n_labels++] = optarg;
			break;
		case 'r':
			e->resolve = true;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			usage(stdout);
			rc = EX_ALLOWED;
			goto out;
		default:
			usage(stderr);
			goto out;
		}
	}
	if (e->path == NULL || argc - optind != 2 || (e->source == NULL) == (pod == NULL) ||
	    (n_labels > 0 && pod == NULL)) {
		usage(stderr);
		goto out;
	}
	e->method = argv[optind];
	e->plain = strcmp(e->method, "CONNECT") != 0;
	if (e->source != NULL) {
		struct pc_host h;
		if (host_canon(e->source, strlen(e->source), &h) != HOST_OK || h.kind == HOST_NAME) {
			fprintf(stderr, "explain: --source %s is not an IP address\n", e->source);
			goto out;
		}
		e->src = h.addr;
	} else {
		char *slash = strchr(pod, '/');
		if (slash == NULL || slash == pod || slash[1] == '\0') {
			fprintf(stderr, "explain: --pod NAMESPACE/NAME\n");
			goto out;
		}
		*slash = '\0';
		e->pod_ns = pod;
		e->pod_name = slash + 1;
	}
	char sha[65];
	struct policy *p = policyfile_load(e->path, false, sha);
	if (p == NULL)
		goto out;
	e->p = p;
	const struct policy_settings *s = policy_settings(p);
	if (e->source != NULL) {
		e->tier = policy_identify(p, &e->src);
	} else if (!s->kube.enabled) {
		fprintf(stderr, "explain: %s has no identity.kubernetes: pods are known by their "
		                "address (--source)\n", e->path);
		policy_unref(p);
		goto out;
	} else {
		const char *key = s->kube.tier_label;
		size_t klen = key ? strlen(key) : 0;
		for (size_t i = 0; key != NULL && i < n_labels; i++)
			if (strncmp(labels[i], key, klen) == 0 && labels[i][klen] == '=')
				e->tier_label_value = labels[i] + klen + 1;
		e->tier = policy_identify_pod(p, e->pod_ns, e->tier_label_value);
	}
	decide(e, e->method, argv[optind + 1], err, sizeof(err));
	if (e->resolve && !e->resolved && e->reason == R_ALLOWED && e->host.kind == HOST_NAME) {
		fprintf(stderr, "explain: cannot set up the resolver: %s\n", err);
		policy_unref(p);
		goto out;
	}
	if (json)
		print_json(e);
	else
		print_text(e);
	rc = e->reason == R_ALLOWED ? EX_ALLOWED : EX_DENIED;
	policy_unref(p);
out:
	free(e);
	return rc;
}
