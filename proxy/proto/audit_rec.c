/* One ECS audit record read through the JSON gate and the strict walker: only the fields learn needs. */
#include "audit_rec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "json_gate.h"
#include "json_walk.h"

_Static_assert((int)AUDIT_REC_ERR_SYNTAX == (int)JSON_WALK_ERR_SYNTAX &&
                   (int)AUDIT_REC_ERR_SHAPE == (int)JSON_WALK_ERR_SHAPE &&
                   (int)AUDIT_REC_ERR_LIMIT == (int)JSON_WALK_ERR_LIMIT &&
                   (int)AUDIT_REC_ERR_NOMEM == (int)JSON_WALK_ERR_NOMEM,
               "json_walk and audit_rec statuses agree");

/* A port: a bare JSON number 1..65535, digits only (no sign, fraction or exponent). */
static int take_port(struct jp *jp, uint16_t *out, const char *what)
{
	const yaml_event_t *e = &jp->ev;
	enum json_lit l = jw_plain_lit(e);
	if (l == JSON_LIT_NULL)
		return 0;
	const char *s = (const char *)e->data.scalar.value;
	size_t n = l == JSON_LIT_NUMBER ? e->data.scalar.length : 0;
	unsigned v = 0;
	for (size_t i = 0; i < n && v <= 65535; i++) {
		if (s[i] < '0' || s[i] > '9')
			return jw_fail(jp, AUDIT_REC_ERR_SHAPE, "%s: not a port", what);
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (n == 0 || v < 1 || v > 65535)
		return jw_fail(jp, AUDIT_REC_ERR_SHAPE, "%s: not a port", what);
	*out = (uint16_t)v;
	return 1;
}

/* event.type: an array of strings; notes "allowed" and "denied". */
static int take_types(struct jp *jp, struct audit_rec *r)
{
	char t[32];
	int rc = jw_open_seq(jp, "event.type");
	if (rc <= 0)
		return rc;
	for (;;) {
		if ((rc = jw_next(jp)) != 0)
			return rc;
		if (jp->ev.type == YAML_SEQUENCE_END_EVENT)
			return 1;
		if ((rc = jw_take_str(jp, t, sizeof(t), "event.type[]")) < 0)
			return rc;
		r->allowed |= strcmp(t, "allowed") == 0;
		r->denied |= strcmp(t, "denied") == 0;
	}
}

/* An object of which some keys are kept: each kept key is a string (field i of dst). */
struct field {
	const char *key;
	char *dst;
	size_t cap;
};

static int take_fields(struct jp *jp, const char *what, const struct field *f, size_t n,
                       int (*special)(struct jp *, int, struct audit_rec *), struct audit_rec *r)
{
	const char *keys[8];
	uint32_t seen = 0;
	int which = -1, rc = jw_open_map(jp, what);
	if (rc <= 0)
		return rc;
	for (size_t i = 0; i < n; i++)
		keys[i] = f[i].key;
	while ((rc = jw_next_key(jp, keys, n, &seen, &which, what)) > 0) {
		if (which < 0)
			rc = jw_skip(jp);
		else if (f[which].dst != NULL)
			rc = jw_take_str(jp, f[which].dst, f[which].cap, f[which].key);
		else
			rc = special(jp, which, r);
		if (rc < 0)
			return rc;
	}
	return rc;
}

static int event_special(struct jp *jp, int which, struct audit_rec *r)
{
	(void)which;
	return take_types(jp, r);
}

static int port_special(struct jp *jp, int which, struct audit_rec *r)
{
	(void)which;
	uint16_t port = 0;
	int rc = take_port(jp, &port, "port");
	if (rc > 0 && r->port == 0)
		r->port = port;
	return rc;
}

static int orchestrator_special(struct jp *jp, int which, struct audit_rec *r)
{
	(void)which;
	const struct field res[] = {{"name", r->pod_name, sizeof(r->pod_name)}};
	return take_fields(jp, "orchestrator.resource", res, 1, NULL, r);
}

static int walk(struct jp *jp, struct audit_rec *r)
{
	static const char *const keys[] = {"@timestamp", "event",  "source",       "destination",
	                                   "url",        "rule",   "labels",       "orchestrator"};
	char url_domain[sizeof(r->domain)] = "";
	uint16_t dest_port = 0;
	uint32_t seen = 0;
	int which = -1, rc;

	while ((rc = jw_next_key(jp, keys, 8, &seen, &which, "")) > 0) {
		switch (which) {
		case 0:
			rc = jw_take_str(jp, r->timestamp, sizeof(r->timestamp), "@timestamp");
			break;
		case 1: {
			const struct field f[] = {{"type", NULL, 0},
			                          {"action", r->action, sizeof(r->action)},
			                          {"reason", r->reason, sizeof(r->reason)}};
			rc = take_fields(jp, "event", f, 3, event_special, r);
			break;
		}
		case 2: {
			const struct field f[] = {{"ip", r->source_ip, sizeof(r->source_ip)}};
			rc = take_fields(jp, "source", f, 1, NULL, r);
			break;
		}
		case 3: {
			/* destination.port wins over url.port: taken first into r->port. */
			const struct field f[] = {{"domain", r->domain, sizeof(r->domain)},
			                          {"ip", r->dest_ip, sizeof(r->dest_ip)},
			                          {"port", NULL, 0}};
			uint16_t keep = r->port;
			r->port = 0;
			rc = take_fields(jp, "destination", f, 3, port_special, r);
			dest_port = r->port;
			r->port = keep;
			break;
		}
		case 4: {
			const struct field f[] = {{"domain", url_domain, sizeof(url_domain)},
			                          {"port", NULL, 0}};
			rc = take_fields(jp, "url", f, 2, port_special, r);
			break;
		}
		case 5: {
			const struct field f[] = {{"ruleset", r->tier, sizeof(r->tier)}};
			rc = take_fields(jp, "rule", f, 1, NULL, r);
			break;
		}
		case 6: {
			const struct field f[] = {{"would_deny", r->would_deny, sizeof(r->would_deny)}};
			rc = take_fields(jp, "labels", f, 1, NULL, r);
			break;
		}
		case 7: {
			const struct field f[] = {{"namespace", r->pod_ns, sizeof(r->pod_ns)},
			                          {"resource", NULL, 0}};
			rc = take_fields(jp, "orchestrator", f, 2, orchestrator_special, r);
			break;
		}
		default:
			rc = jw_skip(jp);
			break;
		}
		if (rc < 0)
			return rc;
	}
	if (rc < 0)
		return rc;
	if (dest_port != 0)
		r->port = dest_port;
	if (r->domain[0] == '\0')
		memcpy(r->domain, url_domain, sizeof(r->domain));
	return 0;
}

int audit_rec_parse(const char *line, size_t len, struct audit_rec *out, char *err, size_t errlen)
{
	const char *src;
	size_t srclen;
	char *copy = NULL;
	struct jp jp;
	int rc;

	memset(out, 0, sizeof(*out));
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (len > AUDIT_REC_MAX_LINE) {
		if (err != NULL)
			snprintf(err, errlen, "line longer than %d bytes", AUDIT_REC_MAX_LINE);
		return AUDIT_REC_ERR_LIMIT;
	}
	rc = json_gate(line, len, AUDIT_REC_MAX_DEPTH, &src, &srclen, &copy, err, errlen);
	if (rc == JSON_GATE_ERR_DEPTH)
		return AUDIT_REC_ERR_LIMIT;
	if (rc == JSON_GATE_ERR_NOMEM)
		return AUDIT_REC_ERR_NOMEM;
	if (rc != JSON_GATE_OK)
		return AUDIT_REC_ERR_SYNTAX;
	rc = jw_open(&jp, src, srclen, AUDIT_REC_MAX_DEPTH, err, errlen);
	if (rc == 0)
		rc = jw_begin(&jp);
	if (rc == 0)
		rc = walk(&jp, out);
	if (rc == 0)
		rc = jw_end(&jp);
	jw_close(&jp);
	free(copy);
	if (rc != 0)
		memset(out, 0, sizeof(*out));
	return rc;
}
