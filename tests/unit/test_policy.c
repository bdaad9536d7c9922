/* Unit tests for policy/policy.c: loading, every validation rule with its place, accessors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "policy.h"
#include "ranges.h"

#define DATA     TEST_DATA_DIR "/policy/"
#define EXAMPLES TEST_DATA_DIR "/../../../policy/examples/"

/* Three lines that make a policy valid when followed by BASE_TIERS. */
#define BASE_HEAD "version: 1\nresolver:\n  servers: [\"10.96.0.10\"]\n"
/* Lines 4-8. */
#define BASE_TIERS                                                                                 \
	"tiers:\n  standard:\n    sources: [\"10.42.0.0/16\"]\n    allow:\n"                       \
	"      - host: example.com\n"
#define BASE BASE_HEAD BASE_TIERS

static void dump(const struct policy_diags *d)
{
	for (size_t i = 0; i < d->n; i++)
		print_message("  %u:%u: %s\n", d->v[i].line, d->v[i].col, d->v[i].msg);
}

static bool has_diag(const struct policy_diags *d, unsigned line, unsigned col, const char *sub)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->v[i].line == line && d->v[i].col == col && strstr(d->v[i].msg, sub) != NULL)
			return true;
	return false;
}

static struct policy *load_ok(const char *yaml)
{
	struct policy *p = NULL;
	struct policy_diags d;
	policy_diags_init(&d);
	int rc = policy_load_buffer(yaml, strlen(yaml), &p, &d);
	if (rc != POLICY_OK) {
		dump(&d);
		fail_msg("expected the policy to load, rc %d", rc);
	}
	assert_int_equal(d.n, 0);
	policy_diags_fini(&d);
	return p;
}

/* ---- one case per validation rule ---- */

struct ecase {
	const char *name;
	const char *yaml;
	unsigned line, col;
	const char *msg; /* substring of the message */
};

static const struct ecase cases[] = {
    /* YAML itself */
    {"syntax error", "version: 1\nresolver: [\"a\"\ntiers: {}\n", 3, 1,
     "YAML syntax error: did not find expected ',' or ']'"},
    {"bad indentation", "version: 1\n  resolver: 1\n", 2, 11, "mapping values are not allowed"},
    {"invalid utf-8", "version: 1\n# \xff\n", 2, 3, "UTF-8"},
    {"anchor", BASE "listen: &l {workers: 2}\n", 9, 9, "YAML anchors (&l) are not allowed"},
    {"alias", BASE "limits: &x {max_headers: 10}\ntimeouts: *x\n", 10, 11,
     "YAML aliases (*x) are not allowed"},
    {"tag", BASE "limits: {max_headers: !!int 10}\n", 9, 23, "explicit YAML tags"},
    {"nesting too deep", BASE "x: [[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]\n", 9, 19,
     "nesting deeper than 16 levels"},
    {"scalar too long", BASE "audit: {output: \"" /* 4097 x, filled in at run time */, 9, 17,
     "value longer than 4096 bytes"},
    {"two documents", BASE "---\nversion: 1\n", 9, 1, "only one YAML document"},
    {"empty", "# nothing here\n", 1, 1, "policy is empty"},
    {"top level not a mapping", "- version: 1\n", 1, 1, "must be a mapping"},
    {"complex key", BASE "? [a]\n: 1\n", 9, 3, "mapping keys must be plain strings"},
    /* keys */
    {"unknown key with suggestion", "versoin: 1\n" BASE, 1, 1,
     "versoin: unknown key; did you mean 'version'?"},
    {"unknown nested key", BASE_HEAD "  atempts: 3\n" BASE_TIERS, 4, 3,
     "resolver.atempts: unknown key; did you mean 'attempts'?"},
    {"unknown tier key", BASE "    alow: []\n", 9, 5,
     "tiers.standard.alow: unknown key; did you mean 'allow'?"},
    {"unknown rule key", BASE "        prots: [80]\n", 9, 9, "did you mean 'ports'?"},
    {"duplicate top-level key", BASE "version: 1\n", 9, 1,
     "version: duplicate key (first defined at line 1, column 1)"},
    {"duplicate tier", BASE "  standard:\n    sources: []\n", 9, 3,
     "tiers.standard: duplicate key (first defined at line 5, column 3)"},
    {"duplicate nested key", BASE "        host: evil.example\n", 9, 9,
     "tiers.standard.allow[0].host: duplicate key (first defined at line 8"},
    {"missing version", "resolver:\n  servers: [\"10.96.0.10\"]\n" BASE_TIERS, 1, 1,
     "version: required key is missing"},
    {"missing resolver", "version: 1\n" BASE_TIERS, 1, 1, "resolver: required key is missing"},
    {"missing servers", "version: 1\nresolver:\n  attempts: 2\n" BASE_TIERS, 3, 3,
     "resolver.servers: required key is missing"},
    {"missing tiers", BASE_HEAD, 1, 1, "tiers: required key is missing"},
    {"missing rule host", BASE "      - ports: [443]\n", 9, 9,
     "tiers.standard.allow[1].host: required key is missing"},
    {"no tiers", BASE_HEAD "tiers: {}\n", 4, 8, "at least one tier is required"},
    /* types */
    {"expected mapping", BASE_HEAD "limits: 5\n" BASE_TIERS, 4, 9,
     "limits: expected a mapping, got a scalar"},
    {"expected sequence", BASE "blocked_ranges: 10.0.0.0/8\n", 9, 17,
     "blocked_ranges: expected a sequence, got a scalar"},
    {"expected scalar", BASE "audit: {output: [a]}\n", 9, 17,
     "audit.output: expected a scalar value, got a sequence"},
    {"expected integer", BASE_HEAD "  attempts: two\n" BASE_TIERS, 4, 13,
     "resolver.attempts: expected an integer"},
    {"quoted integer", BASE_HEAD "  attempts: \"2\"\n" BASE_TIERS, 4, 13,
     "expected an integer, got a quoted string"},
    {"octal-looking integer", BASE_HEAD "  attempts: 02\n" BASE_TIERS, 4, 13,
     "leading zeros are not allowed"},
    {"yaml 1.1 bool", BASE "    tls: {require_sni: yes}\n", 9, 24,
     "expected true or false, got \"yes\""},
    {"bool as string", BASE "    tls: {allow_ech: \"false\"}\n", 9, 22, "expected true or false"},
    {"rule not a mapping", BASE "      - github.com\n", 9, 9,
     "expected a mapping like {host: \"github.com\"}"},
    {"empty value", BASE "audit:\n  output:\n", 10, 10, "got an empty value"},
    {"control character", BASE "audit: {output: \"a\\tb\"}\n", 9, 17, "control characters"},
    /* values */
    {"version 2",
     "version: 2\n"
     "resolver:\n  servers: [\"10.96.0.10\"]\n" BASE_TIERS,
     1, 10, "unsupported version 2"},
    {"version string",
     "version: \"1\"\n"
     "resolver:\n  servers: [\"10.96.0.10\"]\n" BASE_TIERS,
     1, 10, "expected an integer"},
    {"sources overlap other tier", BASE "  build:\n    sources: [\"10.0.0.0/8\"]\n", 10, 15,
     "10.0.0.0/8 overlaps 10.42.0.0/16 of tier 'standard' (line 6)"},
    {"sources key twice", BASE "    sources: [\"10.42.0.0/16\"]\n", 9, 5, "duplicate key"},
    {"sources duplicate entry",
     BASE_HEAD "tiers:\n  t:\n    sources: [\"10.1.0.0/16\", \"10.1.0.0/16\"]\n", 6, 30,
     "duplicate entry (first at line 6, column 15)"},
    {"cidr syntax", BASE "blocked_ranges: [\"10.0.0/8\"]\n", 9, 18,
     "invalid CIDR \"10.0.0/8\": expected a.b.c.d/len"},
    {"cidr prefix", BASE "blocked_ranges: [\"10.0.0.0/33\"]\n", 9, 18,
     "prefix length out of range"},
    {"cidr host bits", BASE "blocked_ranges: [\"10.96.0.1/12\"]\n", 9, 18,
     "host bits are set after the prefix (did you mean 10.96.0.0/12?)"},
    {"cidr host bits v6", BASE "blocked_ranges: [\"fd00::1/64\"]\n", 9, 18,
     "(did you mean fd00::/64?)"},
    {"host wildcard in the middle", BASE "      - host: \"api.*.x\"\n", 9, 15,
     "tiers.standard.allow[1].host: invalid host pattern \"api.*.x\": wildcard only allowed "
     "as the whole first label"},
    {"host bad char", BASE "      - host: \"exa mple.com\"\n", 9, 15, "invalid host pattern"},
    {"host with port", BASE "      - host: \"github.com:443\"\n", 9, 15, "invalid host pattern"},
    {"host bad ip", BASE "      - host: \"010.0.0.1\"\n", 9, 15, "invalid host pattern"},
    {"port zero", BASE "        ports: [0]\n", 9, 17, "ports[0]: 0 is out of range (1 to 65535)"},
    {"port too big", BASE "        ports: [443, 65536]\n", 9, 22, "65536 is out of range"},
    {"port not integer", BASE "        ports: [https]\n", 9, 17, "expected an integer"},
    {"port duplicate", BASE "        ports: [80, 443, 80]\n", 9, 26,
     "duplicate port 80 (first at line 9, column 17)"},
    {"ports empty", BASE "        ports: []\n", 9, 16, "at least one port is required"},
    {"size with space", BASE "    caps: {upload_bytes: 10 MiB}\n", 9, 26,
     "invalid size \"10 MiB\""},
    {"size unit case", BASE "    caps: {download_bytes: 10Mib}\n", 9, 28, "unknown unit"},
    {"duration without unit", BASE "timeouts: {connect: 5}\n", 9, 21, "a unit is required"},
    {"duration fraction", BASE "timeouts: {idle: 1.5m}\n", 9, 18, "invalid duration"},
    {"duration out of range", BASE_HEAD "  timeout: 50ms\n" BASE_TIERS, 4, 12,
     "50ms is out of range (100ms to 30s)"},
    {"size out of range", BASE "limits: {max_header_bytes: 1MiB}\n", 9, 28,
     "1MiB is out of range (1KiB to 64KiB)"},
    {"number out of range", BASE_HEAD "  attempts: 9\n" BASE_TIERS, 4, 13,
     "9 is out of range (1 to 5)"},
    {"max_answers zero", BASE_HEAD "  max_answers: 0\n" BASE_TIERS, 4, 16,
     "out of range (1 to 64)"},
    {"workers", BASE "listen: {workers: 65}\n", 9, 19, "expected \"auto\" or an integer"},
    {"connections_per_source", BASE "    caps: {connections_per_source: -1}\n", 9, 36,
     "expected an integer"},
    {"tier drain", BASE "    timeouts: {drain: 1s}\n", 9, 16, "drain is a global timeout only"},
    {"tier mode", BASE "    mode: enforcing\n", 9, 11, "expected enforce or audit"},
    {"unknown tier in unknown_source", BASE "identity: {unknown_source: standrd}\n", 9, 28,
     "\"standrd\" is neither deny nor a tier name; did you mean 'standard'?"},
    {"tier name", BASE "  Build.Tier: {}\n", 9, 3, "invalid tier name"},
    /* identity.kubernetes (line 11 is the first key under kubernetes:) */
    {"kube: neither mode", BASE "identity:\n  kubernetes:\n    audit_labels: [app]\n", 11, 5,
     "needs namespaces (namespace: tier) or tier_label"},
    {"kube: both modes",
     BASE "identity:\n  kubernetes:\n    namespaces: {ci: standard}\n    tier_label: tier\n", 12,
     17, "namespaces and tier_label cannot both be set"},
    {"kube: unknown tier", BASE "identity:\n  kubernetes:\n    namespaces: {ci: standrd}\n", 11, 22,
     "\"standrd\" is not a tier name; did you mean 'standard'?"},
    {"kube: bad namespace", BASE "identity:\n  kubernetes:\n    namespaces: {CI_Jobs: standard}\n",
     11, 18, "\"CI_Jobs\" is not a namespace name"},
    {"kube: empty namespaces", BASE "identity:\n  kubernetes:\n    namespaces: {}\n", 11, 17,
     "expected a mapping of namespace: tier"},
    {"kube: bad tier_label", BASE "identity:\n  kubernetes:\n    tier_label: \"-tier\"\n", 11, 17,
     "is not a Kubernetes label key"},
    {"kube: bad label prefix",
     BASE "identity:\n  kubernetes:\n    tier_label: \"Example.com/tier\"\n", 11, 17,
     "is not a Kubernetes label key"},
    {"kube: selector without tier_label",
     BASE "identity:\n  kubernetes:\n    namespaces: {ci: standard}\n    label_selector: x\n", 12,
     21, "label_selector goes with tier_label"},
    {"kube: too many audit labels",
     BASE "identity:\n  kubernetes:\n    tier_label: tier\n    audit_labels: [a, b, c, d, e, f, g, "
          "h, i]\n",
     12, 19, "too many audit_labels (at most 8)"},
    {"kube: duplicate audit label",
     BASE "identity:\n  kubernetes:\n    tier_label: tier\n    audit_labels: [app, app]\n", 12, 25,
     "\"app\" is listed twice"},
    {"kube: api_server name",
     BASE "identity:\n  kubernetes:\n    tier_label: tier\n    api_server: "
          "\"https://kubernetes.default.svc\"\n",
     12, 17, "is not https://IP:port"},
    {"kube: api_server http",
     BASE
     "identity:\n  kubernetes:\n    tier_label: tier\n    api_server: \"http://10.96.0.1:443\"\n",
     12, 17, "is not https://IP:port"},
    {"kube: api_server path",
     BASE "identity:\n  kubernetes:\n    tier_label: tier\n    api_server: "
          "\"https://10.96.0.1:443/api\"\n",
     12, 17, "is not https://IP:port"},
    {"kube: relative token_file",
     BASE "identity:\n  kubernetes:\n    tier_label: tier\n    token_file: token\n", 12, 17,
     "expected an absolute file path"},
    {"kube: watch_timeout",
     BASE "identity:\n  kubernetes:\n    tier_label: tier\n    watch_timeout: 1s\n", 12, 20,
     "out of range (10s to 1h)"},
    {"kube: unknown key",
     BASE "identity:\n  kubernetes:\n    tier_label: tier\n    namespace: {ci: standard}\n", 12, 5,
     "did you mean 'namespaces'?"},
    {"tier deny", BASE "  deny: {}\n", 9, 3, "\"deny\" is reserved"},
    {"admin equals proxy", BASE "listen: {proxy: \"0.0.0.0:8080\", admin: \"127.0.0.1:8080\"}\n", 9,
     40, "conflicts with the proxy address 0.0.0.0:8080"},
    {"proxy equals default admin", BASE "listen: {proxy: \"127.0.0.1:9090\"}\n", 9, 17,
     "conflicts with the default admin address"},
    {"listen duplicate", BASE "listen: {proxy: [\"[::1]:3128\", \"[::1]:3128\"]}\n", 9, 32,
     "[::1]:3128 conflicts with [::1]:3128"},
    {"listen needs port", BASE "listen: {proxy: \"127.0.0.1\"}\n", 9, 17, "needs a port"},
    {"proxy_protocol: no mode", BASE "listen:\n  proxy:\n    - address: \"0.0.0.0:3129\"\n      proxy_protocol:\n        trusted: [10.0.0.0/8]\n", 13, 9, "mode: required key is missing"},
    {"proxy_protocol: bad mode", BASE "listen:\n  proxy:\n    - address: \"0.0.0.0:3129\"\n      proxy_protocol:\n        mode: v3\n        trusted: [10.0.0.0/8]\n", 13, 15, "expected off, v1, v2 or either"},
    {"proxy_protocol: no trusted", BASE "listen:\n  proxy:\n    - address: \"0.0.0.0:3129\"\n      proxy_protocol:\n        mode: v2\n", 13, 9, "needs the load balancers' CIDRs"},
    {"proxy_protocol: empty trusted", BASE "listen:\n  proxy:\n    - address: \"0.0.0.0:3129\"\n      proxy_protocol:\n        mode: either\n        trusted: []\n", 14, 18, "needs the load balancers' CIDRs"},
    {"proxy_protocol: bad CIDR", BASE "listen:\n  proxy:\n    - address: \"0.0.0.0:3129\"\n      proxy_protocol:\n        mode: v1\n        trusted: [10.0.0.1/8]\n", 14, 19, "did you mean 10.0.0.0/8?"},
    {"proxy_protocol: timeout", BASE "listen:\n  proxy:\n    - address: \"0.0.0.0:3129\"\n      proxy_protocol:\n        mode: v1\n        trusted: [10.0.0.0/8]\n        timeout: 2m\n", 15, 18, "out of range (100ms to 1m)"},
    {"proxy_protocol: unknown key", BASE "listen:\n  proxy:\n    - address: \"0.0.0.0:3129\"\n      proxy_protocol:\n        mode: v1\n        trusted: [10.0.0.0/8]\n        trust: [10.0.0.0/8]\n", 15, 9, "did you mean 'trusted'?"},
    {"proxy_protocol: empty", BASE "listen:\n  proxy:\n    - address: \"0.0.0.0:3129\"\n      proxy_protocol:\n", 12, 22, "expected a mapping with mode and trusted"},
    {"listener without address", BASE "listen:\n  proxy:\n    - proxy_protocol: {mode: off}\n", 11, 7, "address: required key is missing"},
    {"listener unknown key", BASE "listen:\n  proxy:\n    - adress: \"0.0.0.0:3129\"\n", 11, 7, "did you mean 'address'?"},
    {"listener conflict", BASE "listen:\n  proxy:\n    - \"0.0.0.0:3129\"\n    - address: \"[::1]:3129\"\n", 12, 16, "conflicts with 0.0.0.0:3129"},
    /* TLS listeners and client certificates */
    {"https without tls", BASE "listen:\n  https: \"127.0.0.1:3129\"\n", 10, 3, "tls"},
    {"tls without https", BASE "listen:\n  tls: {cert: /c.pem, key: /k.pem}\n", 10, 8,
     "listen.tls goes with listen.https"},
    {"https equals proxy",
     BASE "listen:\n  proxy: \"0.0.0.0:3128\"\n  https: \"127.0.0.1:3128\"\n"
          "  tls: {cert: /c.pem, key: /k.pem}\n",
     11, 10, "conflicts with the proxy address"},
    {"tls needs a key", BASE "listen:\n  https: \"127.0.0.1:3129\"\n  tls: {cert: /c.pem}\n", 11, 8,
     "key"},
    {"client_certs word",
     BASE "listen:\n  https: \"127.0.0.1:3129\"\n"
          "  tls: {cert: /c.pem, key: /k.pem, client_certs: yes}\n",
     11, 50, "expected off, request or require"},
    {"client_certs needs a CA",
     BASE "listen:\n  https: \"127.0.0.1:3129\"\n"
          "  tls: {cert: /c.pem, key: /k.pem, client_certs: require}\n"
          "identity:\n  client_certs: [{cn: bot, tier: standard}]\n",
     11, 50, "needs client_ca"},
    {"client_ca without client_certs",
     BASE "listen:\n  https: \"127.0.0.1:3129\"\n"
          "  tls: {cert: /c.pem, key: /k.pem, client_ca: /ca.pem}\n",
     11, 47, "go with client_certs"},
    {"cert rules without client_certs",
     BASE "identity:\n  client_certs: [{cn: bot, tier: standard}]\n", 10, 17,
     "need listen.tls.client_certs"},
    {"cert rule with two matchers",
     BASE "listen:\n  https: \"127.0.0.1:3129\"\n"
          "  tls: {cert: /c.pem, key: /k.pem, client_certs: request, client_ca: /ca.pem}\n"
          "identity:\n  client_certs: [{cn: bot, dns: x.example, tier: standard}]\n",
     13, 23, "not several"},
    {"cert rule bad spiffe",
     BASE "listen:\n  https: \"127.0.0.1:3129\"\n"
          "  tls: {cert: /c.pem, key: /k.pem, client_certs: request, client_ca: /ca.pem}\n"
          "identity:\n  client_certs: [{spiffe: \"spiffe://CI.org/*\", tier: standard}]\n",
     13, 27, "bad trust domain"},
    {"cert rule unknown tier",
     BASE "listen:\n  https: \"127.0.0.1:3129\"\n"
          "  tls: {cert: /c.pem, key: /k.pem, client_certs: request, client_ca: /ca.pem}\n"
          "identity:\n  client_certs: [{dns: \"*.r.example\", tier: nope}]\n",
     13, 45, "not a tier name"},
    {"cert rule bad dns",
     BASE "listen:\n  https: \"127.0.0.1:3129\"\n"
          "  tls: {cert: /c.pem, key: /k.pem, client_certs: request, client_ca: /ca.pem}\n"
          "identity:\n  client_certs: [{dns: \"a.*.example\", tier: standard}]\n",
     13, 24, "not a host name pattern"},
    {"resolver name", "version: 1\nresolver:\n  servers: [\"dns.google\"]\n" BASE_TIERS, 3, 13,
     "host names are not allowed here"},
    {"resolver bad port", "version: 1\nresolver:\n  servers: [\"1.1.1.1:0\"]\n" BASE_TIERS, 3, 13,
     "invalid port"},
    {"resolver inet_aton form", "version: 1\nresolver:\n  servers: [\"127.1\"]\n" BASE_TIERS, 3, 13,
     "is not an IP address"},
    {"resolver empty list", "version: 1\nresolver:\n  servers: []\n" BASE_TIERS, 3, 12,
     "a list of 1 to 8 addresses"},
    {"too many resolvers",
     "version: 1\nresolver:\n  servers: [1.0.0.1, 1.0.0.2, 1.0.0.3, 1.0.0.4, 1.0.0.5, 1.0.0.6, "
     "1.0.0.7, 1.0.0.8, 1.0.0.9]\n" BASE_TIERS,
     3, 85, "too many addresses (at most 8)"},
    {"too many ports",
     BASE "        ports: [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,"
          "21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,"
          "43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,64,"
          "65]\n",
     9, 16, "too many ports (at most 64)"},
    {"audit output empty", BASE "audit: {output: \"\"}\n", 9, 17, "must not be empty"},
    /* top-level tls: and caps: (the tiers' defaults) */
    {"top-level key typo", BASE "cpas: {}\n", 9, 1, "cpas: unknown key; did you mean 'caps'?"},
    {"unknown top-level caps key", BASE "caps: {upload_byte: 1}\n", 9, 8,
     "caps.upload_byte: unknown key; did you mean 'upload_bytes'?"},
    {"unknown top-level tls key", BASE "tls: {helo_timeout: 1s}\n", 9, 7,
     "tls.helo_timeout: unknown key; did you mean 'hello_timeout'?"},
    {"top-level caps not a mapping", BASE "caps: 5\n", 9, 7,
     "caps: expected a mapping, got a scalar"},
    {"top-level tls bool", BASE "tls: {allow_ech: 1}\n", 9, 18,
     "tls.allow_ech: expected true or false, got \"1\""},
    {"top-level tls ports", BASE "tls: {require_tls_ports: [443, 443]}\n", 9, 32,
     "tls.require_tls_ports[1]: duplicate port 443"},
    {"top-level connections_per_source", BASE "caps: {connections_per_source: 1000001}\n", 9, 32,
     "caps.connections_per_source: 1000001 is out of range (0 to 1000000)"},
    {"top-level upload_bytes", BASE "caps: {upload_bytes: 1.5GiB}\n", 9, 22,
     "caps.upload_bytes: invalid size \"1.5GiB\""},
    /* tls.hello_timeout, tls.max_hello_bytes */
    {"hello_timeout too short", BASE "tls: {hello_timeout: 50ms}\n", 9, 22,
     "tls.hello_timeout: 50ms is out of range (100ms to 60s)"},
    {"hello_timeout too long", BASE "    tls: {hello_timeout: 61s}\n", 9, 26,
     "tiers.standard.tls.hello_timeout: 61s is out of range (100ms to 60s)"},
    {"hello_timeout without unit", BASE "tls: {hello_timeout: 5}\n", 9, 22,
     "tls.hello_timeout: invalid duration \"5\": a unit is required"},
    {"max_hello_bytes too small", BASE "tls: {max_hello_bytes: 511}\n", 9, 24,
     "tls.max_hello_bytes: 511 is out of range (512B to 64KiB)"},
    {"max_hello_bytes too big", BASE "    tls: {max_hello_bytes: 65537}\n", 9, 28,
     "tiers.standard.tls.max_hello_bytes: 65537 is out of range (512B to 64KiB)"},
    {"max_hello_bytes unit case", BASE "tls: {max_hello_bytes: 16kib}\n", 9, 24,
     "invalid size \"16kib\": unknown unit"},
    /* caps.upload_bytes_per_source */
    {"unknown tier caps key", BASE "    caps: {upload_byte_per_source: none}\n", 9, 12,
     "tiers.standard.caps.upload_byte_per_source: unknown key; did you mean "
     "'upload_bytes_per_source'?"},
    {"budget as a size", BASE "caps: {upload_bytes_per_source: 1GiB}\n", 9, 33,
     "caps.upload_bytes_per_source: expected a mapping {bytes: SIZE, window: DURATION} or none"},
    {"budget as a list", BASE "caps: {upload_bytes_per_source: [1GiB, 1h]}\n", 9, 33,
     "expected a mapping {bytes: SIZE, window: DURATION} or none"},
    {"budget missing bytes", BASE "    caps:\n      upload_bytes_per_source:\n        window: 1h\n",
     11, 9, "tiers.standard.caps.upload_bytes_per_source.bytes: required key is missing"},
    {"budget missing window", BASE "caps: {upload_bytes_per_source: {bytes: 1GiB}}\n", 9, 33,
     "caps.upload_bytes_per_source.window: required key is missing"},
    {"budget empty", BASE "caps:\n  upload_bytes_per_source:\n", 10, 27,
     "caps.upload_bytes_per_source: expected a mapping {bytes: SIZE, window: DURATION} or none"},
    {"budget empty mapping", BASE "caps: {upload_bytes_per_source: {}}\n", 9, 33,
     "caps.upload_bytes_per_source.bytes: required key is missing"},
    {"budget unknown key", BASE "caps: {upload_bytes_per_source: {bytes: 1GiB, windw: 1h}}\n", 9,
     47, "caps.upload_bytes_per_source.windw: unknown key; did you mean 'window'?"},
    {"budget bytes zero", BASE "caps: {upload_bytes_per_source: {bytes: 0, window: 1h}}\n", 9, 41,
     "caps.upload_bytes_per_source.bytes: 0 is out of range (1 to 16EiB)"},
    {"budget bytes syntax", BASE "caps: {upload_bytes_per_source: {bytes: 1 GiB, window: 1h}}\n", 9,
     41, "caps.upload_bytes_per_source.bytes: invalid size \"1 GiB\""},
    {"budget window too short",
     BASE "caps: {upload_bytes_per_source: {bytes: 1GiB, window: 500ms}}\n", 9, 55,
     "caps.upload_bytes_per_source.window: 500ms is out of range (1s to 24h)"},
    {"budget window too long",
     BASE "    caps: {upload_bytes_per_source: {bytes: 1GiB, window: 25h}}\n", 9, 59,
     "tiers.standard.caps.upload_bytes_per_source.window: 25h is out of range (1s to 24h)"},
    {"budget window without unit",
     BASE "caps: {upload_bytes_per_source: {bytes: 1GiB, window: 3600}}\n", 9, 55,
     "caps.upload_bytes_per_source.window: invalid duration \"3600\": a unit is required"},
    /* http: (top level and tier) */
    {"top-level http typo", BASE "htp: {}\n", 9, 1, "htp: unknown key; did you mean 'http'?"},
    {"unknown http key", BASE "http: {method: [GET]}\n", 9, 8,
     "http.method: unknown key; did you mean 'methods'?"},
    {"unknown tier http key", BASE "    http: {allow_upgrades: true}\n", 9, 12,
     "tiers.standard.http.allow_upgrades: unknown key; did you mean 'allow_upgrade'?"},
    {"http not a mapping", BASE "http: [GET]\n", 9, 7, "http: expected a mapping, got a sequence"},
    {"methods not a list", BASE "http: {methods: GET}\n", 9, 17,
     "http.methods: expected a list of 1 to 32 methods, or any"},
    {"methods empty value", BASE "http:\n  methods:\n", 10, 11,
     "http.methods: expected a list of 1 to 32 methods, or any"},
    {"methods empty list", BASE "http: {methods: []}\n", 9, 17,
     "http.methods: at least one method is required (any allows every method)"},
    {"too many methods",
     BASE "http: {methods: [A,B,C,D,E,F,G,H,I,J,K,L,M,N,O,P,Q,R,S,T,U,V,W,X,Y,Z,"
          "AA,AB,AC,AD,AE,AF,AG]}\n",
     9, 17, "http.methods: too many methods (at most 32)"},
    {"method lowercase", BASE "    http: {methods: [GET, get]}\n", 9, 27,
     "tiers.standard.http.methods[1]: method \"get\" is not uppercase (methods are "
     "case-sensitive); did you mean 'GET'?"},
    {"method mixed case", BASE "http: {methods: [Version-Control]}\n", 9, 18,
     "http.methods[0]: method \"Version-Control\" is not uppercase (methods are "
     "case-sensitive); did you mean 'VERSION-CONTROL'?"},
    {"method CONNECT", BASE "http: {methods: [GET, CONNECT]}\n", 9, 23,
     "http.methods[1]: CONNECT is not a plain-HTTP method: CONNECT is governed by the allow "
     "rules, their ports and tls:"},
    {"method connect lowercase", BASE "    http: {methods: [connect]}\n", 9, 22,
     "tiers.standard.http.methods[0]: connect is not a plain-HTTP method"},
    {"method bad character", BASE "http: {methods: [GET_ALL]}\n", 9, 18,
     "http.methods[0]: invalid method \"GET_ALL\": use 1 to 32 of A-Z and '-' (e.g. GET)"},
    {"method digit", BASE "http: {methods: [HTTP2]}\n", 9, 18, "invalid method \"HTTP2\""},
    {"method empty string", BASE "http: {methods: [\"\"]}\n", 9, 18, "invalid method \"\""},
    {"method too long", BASE "http: {methods: [ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFG]}\n", 9, 18,
     "invalid method \"ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFG\": use 1 to 32"},
    {"method not a scalar", BASE "http: {methods: [[GET]]}\n", 9, 18,
     "http.methods[0]: expected a scalar value, got a sequence"},
    {"method duplicate", BASE "http: {methods: [GET, HEAD, GET]}\n", 9, 29,
     "http.methods[2]: duplicate method GET (first at line 9, column 18)"},
    {"allow_upgrade not a bool", BASE "    http: {allow_upgrade: yes}\n", 9, 27,
     "tiers.standard.http.allow_upgrade: expected true or false, got \"yes\""},
    {"ipv6_source_prefix too short", BASE "identity: {ipv6_source_prefix: 16}\n", 9, 32,
     "identity.ipv6_source_prefix"},
    {"ipv6_source_prefix too long", BASE "identity: {ipv6_source_prefix: 129}\n", 9, 32,
     "identity.ipv6_source_prefix"},
    {"max_sources zero", BASE "limits: {max_sources: 0}\n", 9, 23, "limits.max_sources"},
    {"audit format unknown", BASE "audit: {format: json}\n", 9, 17, "expected ecs or ocsf"},
    {"audit interim too short", BASE "audit: {interim: 5s}\n", 9, 18, "audit.interim"},
    {"audit tunnel_start not a bool", BASE "audit: {tunnel_start: 1}\n", 9, 23,
     "expected true or false"},
    {"ja4 uppercase hash", BASE "    tls: {ja4_deny: [t13d1516h2_8DAAF6152771_e5627efa2ab1]}\n", 9,
     22, "is not a JA4 fingerprint"},
    {"ja4 too short", BASE "tls: {ja4_allow: [t13d1516h2_8daaf6152771]}\n", 9, 19,
     "is not a JA4 fingerprint"},
    {"ja4 duplicate", BASE "tls: {ja4_allow: [t13d1516h2_8daaf6152771_e5627efa2ab1, t13d1516h2_8daaf6152771_e5627efa2ab1]}\n", 9, 57, "duplicate JA4 fingerprint"},
    {"ja4 not a list", BASE "tls: {ja4_allow: t13d1516h2_8daaf6152771_e5627efa2ab1}\n", 9, 18,
     "expected a list of JA4 fingerprints"},
};

/* "scalar too long" gets its 4097 bytes here. */
static char *case_text(const struct ecase *c)
{
	size_t n = strlen(c->yaml);
	char *s = malloc(n + 4200);
	assert_non_null(s);
	memcpy(s, c->yaml, n + 1);
	if (strcmp(c->name, "scalar too long") == 0) {
		memset(s + n, 'x', 4097);
		strcpy(s + n + 4097, "\"}\n");
	}
	return s;
}

static void test_error_cases(void **state)
{
	unsigned failed = 0;
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct ecase *c = &cases[i];
		struct policy *p = (struct policy *)1;
		struct policy_diags d;
		char *text = case_text(c);
		policy_diags_init(&d);
		int rc = policy_load_buffer(text, strlen(text), &p, &d);
		if (rc != POLICY_ERR_INVALID || p != NULL ||
		    !has_diag(&d, c->line, c->col, c->msg)) {
			print_message("case \"%s\": rc %d, want %u:%u \"%s\", got:\n", c->name, rc,
			              c->line, c->col, c->msg);
			dump(&d);
			failed++;
		}
		policy_diags_fini(&d);
		free(text);
	}
	assert_int_equal(failed, 0);
}

/* The base every error case starts from is itself valid. */
static void test_base_is_valid(void **state)
{
	(void)state;
	policy_unref(load_ok(BASE));
}

static void test_every_problem_reported(void **state)
{
	struct policy *p = NULL;
	struct policy_diags d;
	(void)state;
	policy_diags_init(&d);
	assert_int_equal(policy_load_file(DATA "several_errors.yaml", &p, &d, NULL), POLICY_ERR_INVALID);
	assert_null(p);
	static const struct {
		unsigned line, col;
		const char *msg;
	} want[] = {
	    {1, 10, "unsupported version 3"},
	    {4, 12, "listen.workers: expected \"auto\""},
	    {6, 13, "host names are not allowed"},
	    {7, 12, "invalid duration \"10 s\""},
	    {8, 3, "resolver.atempts: unknown key; did you mean 'attempts'?"},
	    {9, 18, "host bits are set"},
	    {13, 11, "expected enforce or audit"},
	    {16, 15, "wildcard only allowed as the whole first label"},
	    {18, 22, "duplicate port 443"},
	    {19, 9, "expected a mapping like"},
	    {20, 5, "tiers.standard.alow: unknown key; did you mean 'allow'?"},
	    {22, 15, "overlaps 10.42.0.0/16 of tier 'standard'"},
	    {23, 3, "tiers.other: duplicate key (first defined at line 21, column 3)"},
	    {26, 19, "did you mean 'standard'?"},
	};
	if (d.n != sizeof(want) / sizeof(want[0]))
		dump(&d);
	assert_int_equal(d.n, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < d.n; i++) {
		/* Sorted by position. */
		if (d.v[i].line != want[i].line || d.v[i].col != want[i].col ||
		    strstr(d.v[i].msg, want[i].msg) == NULL) {
			dump(&d);
			fail_msg("diag %zu: want %u:%u %s", i, want[i].line, want[i].col,
			         want[i].msg);
		}
	}
	policy_diags_fini(&d);
}

static void test_diags_capped(void **state)
{
	char *text = malloc(200 * 16 + 64);
	size_t n = 0;
	struct policy *p = NULL;
	struct policy_diags d;
	(void)state;
	assert_non_null(text);
	for (int i = 0; i < 200; i++)
		n += (size_t)sprintf(text + n, "unknown%d: 1\n", i);
	policy_diags_init(&d);
	assert_int_equal(policy_load_buffer(text, n, &p, &d), POLICY_ERR_INVALID);
	assert_int_equal(d.n, 100);
	assert_non_null(strstr(d.v[99].msg, "too many problems"));
	assert_int_equal(d.v[0].line, 1);
	policy_diags_fini(&d);
	free(text);
}

/* A nesting bomb is refused at the first level past the limit: one problem, nothing read past it. */
static void test_nesting_bomb(void **state)
{
	static const char head[] = BASE "x: ";
	size_t n = sizeof(head) - 1 + 80000;
	char *text = malloc(n + 1);
	struct policy *p = NULL;
	struct policy_diags d;
	(void)state;
	assert_non_null(text);
	memcpy(text, head, sizeof(head) - 1);
	memset(text + sizeof(head) - 1, '[', 80000);
	text[n] = '\0';
	policy_diags_init(&d);
	assert_int_equal(policy_load_buffer(text, n, &p, &d), POLICY_ERR_INVALID);
	assert_null(p);
	assert_int_equal(d.n, 1);
	assert_non_null(strstr(d.v[0].msg, "nesting deeper than 16 levels"));
	assert_int_equal(d.v[0].line, 9);
	policy_diags_fini(&d);
	free(text);
}

static void test_too_large(void **state)
{
	size_t n = (1u << 20) + 1;
	char *text = malloc(n);
	struct policy *p = NULL;
	struct policy_diags d;
	(void)state;
	assert_non_null(text);
	memset(text, '#', n);
	policy_diags_init(&d);
	assert_int_equal(policy_load_buffer(text, n, &p, &d), POLICY_ERR_INVALID);
	assert_int_equal(d.n, 1);
	assert_non_null(strstr(d.v[0].msg, "larger than 1 MiB"));
	policy_diags_fini(&d);

	/* The same through a file. */
	char path[] = "/tmp/portcullis-test-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, n), (ssize_t)n);
	close(fd);
	policy_diags_init(&d);
	assert_int_equal(policy_load_file(path, &p, &d, NULL), POLICY_ERR_INVALID);
	assert_null(p);
	assert_non_null(strstr(d.v[0].msg, "larger than 1 MiB"));
	policy_diags_fini(&d);
	unlink(path);
	free(text);
}

static void test_file_sha256(void **state)
{
	/* The digest the daemon reports (portcullis_policy_info) is of the bytes read. */
	char path[] = "/tmp/portcullis-test-XXXXXX";
	int fd = mkstemp(path);
	struct policy *p = (struct policy *)1;
	struct policy_diags d;
	char sha[65] = "unset";
	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x", 1), 1);
	close(fd);
	policy_diags_init(&d);
	assert_int_equal(policy_load_file(path, &p, &d, sha), POLICY_ERR_INVALID);
	assert_null(p);
	assert_string_equal(sha, "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881");
	policy_diags_fini(&d);
	policy_diags_init(&d);
	assert_int_equal(policy_load_file(DATA "does-not-exist.yaml", &p, &d, sha), POLICY_ERR_IO);
	assert_string_equal(sha, "");
	policy_diags_fini(&d);
	unlink(path);
}

static void test_io_error(void **state)
{
	struct policy *p = (struct policy *)1;
	struct policy_diags d;
	(void)state;
	policy_diags_init(&d);
	assert_int_equal(policy_load_file(DATA "does-not-exist.yaml", &p, &d, NULL), POLICY_ERR_IO);
	assert_null(p);
	assert_int_equal(d.n, 1);
	assert_int_equal(d.v[0].line, 0);
	assert_non_null(strstr(d.v[0].msg, "not found"));
	policy_diags_fini(&d);
}

/* The messages name the cause in a user's words: a directory, a tab. */
static void test_io_messages(void **state)
{
	struct policy *p = NULL;
	struct policy_diags d;
	(void)state;
	policy_diags_init(&d);
	assert_int_equal(policy_load_file(DATA, &p, &d, NULL), POLICY_ERR_IO);
	assert_int_equal(d.n, 1);
	assert_non_null(strstr(d.v[0].msg, "is a directory"));
	policy_diags_fini(&d);

	static const char tabbed[] = "version: 1\ntiers:\n\tci:\n    sources: [10.0.0.0/8]\n";
	policy_diags_init(&d);
	assert_int_not_equal(policy_load_buffer(tabbed, sizeof(tabbed) - 1, &p, &d), POLICY_OK);
	assert_null(p);
	assert_true(d.n >= 1);
	assert_int_equal(d.v[0].line, 3);
	assert_int_equal(d.v[0].col, 1);
	assert_non_null(strstr(d.v[0].msg, "forbids tabs"));
	policy_diags_fini(&d);
}

static void check_addr(const struct policy_sockaddr *sa, const char *ip, uint16_t port)
{
	struct pc_addr a;
	bool v6 = strchr(ip, ':') != NULL;
	int rc = v6 ? addr_parse_ipv6(ip, strlen(ip), &a) : addr_parse_ipv4(ip, strlen(ip), &a);
	assert_int_equal(rc, ADDR_OK);
	assert_true(addr_equal(&sa->addr, &a));
	assert_int_equal(sa->port, port);
}

/* The tier's resolved http.methods, in file order. */
static void check_methods(const struct policy_tier *t, const char *const *want, size_t n)
{
	assert_int_equal(t->n_http_methods, n);
	assert_non_null(t->http_methods);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(t->http_methods[i], want[i]);
}

static void test_listen_proxy_protocol(void **state)
{
	(void)state;
	struct policy *p = load_ok(BASE "listen:\n  proxy:\n    - \"127.0.0.1:3128\"\n"
	                                "    - address: \"[::]:3129\"\n      proxy_protocol:\n"
	                                "        mode: v2\n        trusted: [10.1.0.0/24, "
	                                "\"2001:db8::/64\"]\n        timeout: 250ms\n"
	                                "    - address: \"127.0.0.1:3130\"\n"
	                                "      proxy_protocol: {mode: either, trusted: [10.9.9.9/32]}\n"
	                                "    - address: \"127.0.0.1:3131\"\n"
	                                "      proxy_protocol: {mode: off, trusted: [10.9.9.9/32]}\n");
	const struct policy_settings *s = policy_settings(p);
	assert_int_equal(s->n_listen_proxy, 4);
	check_addr(&s->listen_proxy[1], "::", 3129);
	assert_int_equal(s->listen_pp[0].accept, 0);
	assert_int_equal(s->listen_pp[1].accept, POLICY_PP_V2);
	assert_int_equal(s->listen_pp[1].timeout_ms, 250);
	assert_int_equal(s->listen_pp[2].accept, POLICY_PP_V1 | POLICY_PP_V2);
	assert_int_equal(s->listen_pp[2].timeout_ms, 3000);
	assert_int_equal(s->listen_pp[3].accept, 0);
	struct pc_addr a;
	unsigned plen;
	assert_int_equal(range_parse_cidr("10.1.0.77", 9, &a, &plen), RANGE_OK);
	assert_false(policy_listen_trusted(p, 0, &a)); /* no PROXY protocol there */
	assert_true(policy_listen_trusted(p, 1, &a));
	assert_false(policy_listen_trusted(p, 2, &a));
	assert_false(policy_listen_trusted(p, 9, &a)); /* no such listener */
	assert_int_equal(range_parse_cidr("::ffff:10.1.0.77", 16, &a, &plen), RANGE_OK);
	assert_true(policy_listen_trusted(p, 1, &a)); /* an IPv4 balancer on a dual-stack socket */
	assert_int_equal(range_parse_cidr("10.1.1.1", 8, &a, &plen), RANGE_OK);
	assert_false(policy_listen_trusted(p, 1, &a));
	assert_int_equal(range_parse_cidr("2001:db8::5", 11, &a, &plen), RANGE_OK);
	assert_true(policy_listen_trusted(p, 1, &a));
	assert_int_equal(range_parse_cidr("10.9.9.9", 8, &a, &plen), RANGE_OK);
	assert_true(policy_listen_trusted(p, 2, &a));
	assert_false(policy_listen_trusted(p, 3, &a)); /* off: trusted is kept but unused */
	policy_unref(p);
}

static void test_full_policy_accessors(void **state)
{
	struct policy *p = NULL;
	struct policy_diags d;
	(void)state;
	policy_diags_init(&d);
	if (policy_load_file(DATA "full.yaml", &p, &d, NULL) != POLICY_OK)
		dump(&d);
	assert_non_null(p);
	assert_int_equal(d.n, 0);
	policy_diags_fini(&d);

	const struct policy_settings *s = policy_settings(p);
	assert_int_equal(s->n_listen_proxy, 2);
	check_addr(&s->listen_proxy[0], "0.0.0.0", 3128);
	check_addr(&s->listen_proxy[1], "::", 3129);
	check_addr(&s->listen_admin, "127.0.0.1", 9091);
	assert_int_equal(s->workers, 4);
	assert_int_equal(s->n_resolvers, 3);
	check_addr(&s->resolvers[0], "10.96.0.10", 53);
	check_addr(&s->resolvers[1], "2001:db8::53", 5353);
	check_addr(&s->resolvers[2], "2001:db8::54", 53);
	assert_int_equal(s->resolver_timeout_ms, 2000);
	assert_int_equal(s->resolver_attempts, 3);
	assert_int_equal(s->resolver_max_answers, 8);
	assert_string_equal(s->audit_output, "/var/log/portcullis/audit.json");
	assert_int_equal(s->max_connections, 5000);
	assert_int_equal(s->header_timeout_ms, 15000);
	assert_int_equal(s->max_header_bytes, 16384);
	assert_int_equal(s->max_headers, 64);
	assert_int_equal(s->connect_timeout_ms, 3000);
	assert_int_equal(s->idle_timeout_ms, 600000);
	assert_int_equal(s->max_lifetime_ms, 7200000);
	assert_int_equal(s->drain_timeout_ms, 60000);
	assert_int_equal(s->unknown_source_tier, 1);

	assert_int_equal(policy_tier_count(p), 2);
	const struct policy_tier *t = policy_tier(p, 0);
	assert_string_equal(t->name, "standard");
	assert_int_equal(t->mode, TIER_ENFORCE);
	assert_false(t->require_sni);
	assert_false(t->sni_must_match);
	assert_true(t->allow_ech);
	assert_int_equal(t->n_tls_ports, 2);
	assert_int_equal(t->tls_ports[0], 443);
	assert_int_equal(t->tls_ports[1], 8443);
	assert_int_equal(t->hello_timeout_ms, 500);
	assert_int_equal(t->max_hello_bytes, 32768);
	assert_int_equal(t->upload_bytes, 100ULL << 20);
	assert_int_equal(t->download_bytes, 10ULL << 30);
	assert_int_equal(t->connections_per_source, 32);
	assert_int_equal(t->upload_budget_bytes, 1ULL << 30);
	assert_int_equal(t->upload_budget_window_ms, 3600000);
	check_methods(t, (const char *const[]){"GET", "HEAD", "PROPFIND", "VERSION-CONTROL"}, 4);
	assert_true(t->http_allow_upgrade);
	assert_int_equal(t->connect_timeout_ms, 2000);
	assert_int_equal(t->idle_timeout_ms, 60000);
	assert_int_equal(t->max_lifetime_ms, 1800000);

	t = policy_tier(p, 1);
	assert_string_equal(t->name, "restricted");
	assert_int_equal(t->mode, TIER_AUDIT);
	/* No tls:, caps: or timeouts: of its own: the top-level values. */
	assert_false(t->require_sni);
	assert_false(t->sni_must_match);
	assert_true(t->allow_ech);
	assert_int_equal(t->n_tls_ports, 2);
	assert_int_equal(t->tls_ports[0], 443);
	assert_int_equal(t->tls_ports[1], 993);
	assert_int_equal(t->hello_timeout_ms, 2000);
	assert_int_equal(t->max_hello_bytes, 8192);
	assert_int_equal(t->upload_bytes, 1ULL << 30);
	assert_int_equal(t->download_bytes, 20ULL << 30);
	assert_int_equal(t->connections_per_source, 64);
	assert_int_equal(t->upload_budget_bytes, 5ULL << 30);
	assert_int_equal(t->upload_budget_window_ms, 24 * 3600000);
	check_methods(t, (const char *const[]){"GET", "HEAD", "OPTIONS"}, 3);
	assert_true(t->http_allow_upgrade);
	assert_int_equal(t->connect_timeout_ms, 3000);
	assert_int_equal(t->idle_timeout_ms, 600000);
	assert_int_equal(t->max_lifetime_ms, 7200000);
	assert_null(policy_tier(p, 2));

	assert_int_equal(policy_rule_count(p), 3);
	/* built-in + 2 blocked_ranges + 1 allow_range */
	size_t builtin = range_builtin_count();
	assert_int_equal(policy_range_count(p), builtin + 3);

	/* Strings are the snapshot's own. */
	struct pc_host h;
	struct verdict v;
	assert_int_equal(host_canon("gitlab.example.com", 18, &h), HOST_OK);
	policy_decide_host(p, 0, &h, 80, &v);
	assert_true(v.allow);
	assert_string_equal(v.rule, "gitlab");
	policy_unref(p);
}

/* Every built-in tier default, field by field. */
static void check_builtin_tier(const struct policy_tier *t)
{
	assert_true(t->require_sni);
	assert_true(t->sni_must_match);
	assert_false(t->allow_ech);
	assert_int_equal(t->n_tls_ports, 1);
	assert_int_equal(t->tls_ports[0], 443);
	assert_int_equal(t->hello_timeout_ms, 5000);
	assert_int_equal(t->max_hello_bytes, 16384);
	assert_int_equal(t->upload_bytes, 0);
	assert_int_equal(t->download_bytes, 0);
	assert_int_equal(t->connections_per_source, 256);
	assert_int_equal(t->upload_budget_bytes, 0);
	assert_int_equal(t->upload_budget_window_ms, 0);
	assert_null(t->http_methods); /* any */
	assert_int_equal(t->n_http_methods, 0);
	assert_false(t->http_allow_upgrade);
	/* Timeouts: the (default) global values. */
	assert_int_equal(t->connect_timeout_ms, 5000);
	assert_int_equal(t->idle_timeout_ms, 300000);
	assert_int_equal(t->max_lifetime_ms, 3600000);
}

/* identity.kubernetes: both modes, defaults, and the pod -> tier mapping. */
static void test_kubernetes(void **state)
{
	(void)state;
	struct policy *p = load_ok(BASE "  trusted: {}\n"
	                                "identity:\n  unknown_source: deny\n  kubernetes:\n"
	                                "    api_server: \"https://[fd00::1]:6443\"\n"
	                                "    namespaces: {runners-b: trusted, runners-a: standard}\n"
	                                "    audit_labels: [app, example.com/job-id]\n"
	                                "    watch_timeout: 2m\n    backoff_max: 5s\n"
	                                "    max_pods: 100\n");
	const struct policy_kube *k = &policy_settings(p)->kube;
	assert_true(k->enabled);
	assert_true(k->api_server_set);
	assert_int_equal(k->api_server.port, 6443);
	assert_int_equal(k->api_server.addr.family, ADDR_V6);
	assert_string_equal(k->token_file, "/var/run/secrets/kubernetes.io/serviceaccount/token");
	assert_string_equal(k->ca_file, "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt");
	assert_null(k->tier_label);
	assert_null(k->label_selector);
	assert_int_equal(k->n_namespaces, 2);
	assert_string_equal(k->namespaces[0].ns, "runners-a"); /* sorted */
	assert_int_equal(k->n_audit_labels, 2);
	assert_string_equal(k->audit_labels[1], "example.com/job-id");
	assert_int_equal(k->watch_timeout_ms, 120000);
	assert_int_equal(k->backoff_max_ms, 5000);
	assert_int_equal(k->max_pods, 100);
	assert_int_equal(policy_identify_pod(p, "runners-a", NULL), 0);
	assert_int_equal(policy_identify_pod(p, "runners-b", "standard"), 1); /* label ignored */
	assert_int_equal(policy_identify_pod(p, "runners-c", NULL), -1);
	assert_int_equal(policy_identify_pod(p, "", NULL), -1);
	policy_unref(p);

	p = load_ok(BASE "  trusted: {}\n"
	                 "identity:\n  unknown_source: standard\n  kubernetes:\n"
	                 "    tier_label: platform.example.com/runner-tier\n"
	                 "    token_file: /run/t\n    ca_file: /run/ca.pem\n");
	k = &policy_settings(p)->kube;
	assert_false(k->api_server_set);
	assert_string_equal(k->tier_label, "platform.example.com/runner-tier");
	assert_string_equal(k->label_selector, "platform.example.com/runner-tier");
	assert_string_equal(k->token_file, "/run/t");
	assert_int_equal(k->watch_timeout_ms, 300000);
	assert_int_equal(k->backoff_max_ms, 30000);
	assert_int_equal(k->max_pods, 65536);
	assert_int_equal(policy_identify_pod(p, "any", "trusted"), 1);
	assert_int_equal(policy_identify_pod(p, "any", "Trusted"), 0); /* no tier: unknown_source */
	assert_int_equal(policy_identify_pod(p, "any", NULL), 0);
	assert_int_equal(policy_identify_pod(p, "any", ""), 0);
	policy_unref(p);

	p = load_ok(BASE "identity:\n  kubernetes:\n    tier_label: tier\n"
	                 "    label_selector: \"tier in (a,b),!legacy\"\n");
	assert_string_equal(policy_settings(p)->kube.label_selector, "tier in (a,b),!legacy");
	policy_unref(p);
	p = load_ok(BASE);
	assert_false(policy_settings(p)->kube.enabled);
	policy_unref(p);
}

/* ---- identity.oidc and listen.proxy[i].auth ---- */

#define OIDC_LISTEN "listen:\n  proxy:\n    - {address: \"127.0.0.1:3128\", auth: required}\n"
#define OIDC_PROVIDER(extra)                                                                       \
	"identity:\n  oidc:\n    providers:\n      - name: gitlab\n        kind: gitlab\n"          \
	"        issuer: \"https://gitlab.example.com\"\n        audiences: portcullis\n"          \
	"        jwks_file: /etc/portcullis/gitlab.json\n" extra                                    \
	"        rules:\n          - {name: prot, match: {project_path: \"g/*\", ref_protected: "  \
	"true, runner_id: 17}, tier: standard}\n          - {match: {ref: main}, tier: standard}\n"

static const char *claim_tab(const void *ctx, const char *name)
{
	const char *const *kv = ctx;
	for (size_t i = 0; kv[i] != NULL; i += 2)
		if (strcmp(kv[i], name) == 0)
			return kv[i + 1];
	return NULL;
}

static bool load_fails_with(const char *yaml, const char *sub)
{
	struct policy *p = NULL;
	struct policy_diags d;
	policy_diags_init(&d);
	int rc = policy_load_buffer(yaml, strlen(yaml), &p, &d);
	bool found = false;
	for (size_t i = 0; i < d.n; i++)
		found = found || strstr(d.v[i].msg, sub) != NULL;
	if (rc != POLICY_ERR_INVALID || !found) {
		print_message("want a problem naming \"%s\", rc %d:\n", sub, rc);
		dump(&d);
	}
	policy_unref(p);
	policy_diags_fini(&d);
	return rc == POLICY_ERR_INVALID && found;
}

static void test_oidc(void **state)
{
	(void)state;
	struct policy *p = load_ok(BASE OIDC_LISTEN OIDC_PROVIDER("        lease: 30m\n"));
	const struct policy_settings *s = policy_settings(p);
	assert_int_equal(s->listen_auth[0], POLICY_AUTH_REQUIRED);
	assert_int_equal(s->n_oidc, 1);
	assert_int_equal(s->oidc[0].algs, 1u); /* RS256 by default */
	assert_int_equal(s->oidc[0].leeway_ms, 60000);
	assert_int_equal(s->oidc[0].lease_ms, 30 * 60000);
	assert_int_equal(s->oidc_max_bindings, 65536);
	assert_true(s->max_header_bytes >= 16384); /* room for a token unless set */
	assert_non_null(policy_oidc_provider(p, "https://gitlab.example.com"));
	assert_null(policy_oidc_provider(p, "https://gitlab.example.com/"));
	const char *rule;
	const char *ci[] = {"job_id", "1", "pipeline_source", "push", "project_path", "g/app",
	                    "ref_protected", "true", "runner_id", "17", "ref", "dev", NULL};
	assert_int_equal(policy_identify_oidc(&s->oidc[0], claim_tab, ci, &rule), 0);
	assert_string_equal(rule, "prot");
	const char *second[] = {"job_id", "1", "pipeline_source", "push", "project_path", "x/app",
	                        "ref", "main", NULL};
	assert_int_equal(policy_identify_oidc(&s->oidc[0], claim_tab, second, &rule), 0);
	assert_string_equal(rule, "gitlab[1]");
	const char *none[] = {"job_id", "1", "pipeline_source", "push", "ref", "dev", NULL};
	assert_int_equal(policy_identify_oidc(&s->oidc[0], claim_tab, none, &rule),
	                 POLICY_OIDC_NO_RULE);
	const char *login[] = {"project_path", "g/app", "ref", "main", NULL};
	assert_int_equal(policy_identify_oidc(&s->oidc[0], claim_tab, login, &rule),
	                 POLICY_OIDC_NOT_CI);
	policy_unref(p);
	/* an explicit limit stays */
	p = load_ok(BASE OIDC_LISTEN "limits: {max_header_bytes: 8KiB}\n" OIDC_PROVIDER(""));
	assert_int_equal(policy_settings(p)->max_header_bytes, 8192);
	policy_unref(p);
	/* default off: nothing changes */
	p = load_ok(BASE);
	assert_int_equal(policy_settings(p)->n_oidc, 0);
	assert_int_equal(policy_settings(p)->listen_auth[0], POLICY_AUTH_OFF);
	assert_int_equal(policy_settings(p)->max_header_bytes, 8192);
	policy_unref(p);

	assert_true(load_fails_with(BASE OIDC_LISTEN OIDC_PROVIDER("        algorithms: [HS256]\n"),
	                            "HS256"));
	assert_true(load_fails_with(BASE OIDC_LISTEN OIDC_PROVIDER("        algorithms: [none]\n"),
	                            "not supported"));
	assert_true(load_fails_with(
	    BASE OIDC_LISTEN
	    "identity:\n  oidc:\n    providers:\n      - {name: a, kind: gitlab, issuer: \"\", "
	    "audiences: x, jwks_file: /j, rules: [{match: {ref: main}, tier: standard}]}\n",
	    "issuer must be 1 to 1024 bytes"));
	assert_true(load_fails_with(
	    BASE OIDC_LISTEN
	    "identity:\n  oidc:\n    providers:\n      - {name: a, kind: gitlab, issuer: "
	    "\"http://x\", audiences: x, jwks_file: j.json, rules: [{match: {ref: main}, tier: "
	    "standard}]}\n",
	    "https://"));
	assert_true(load_fails_with(
	    BASE OIDC_LISTEN
	    "identity:\n  oidc:\n    providers:\n      - {name: a, kind: gitlab, issuer: "
	    "\"https://x\", audiences: x, jwks_file: j.json, rules: [{match: {ref: main}, tier: "
	    "standard}]}\n",
	    "absolute path"));
	assert_true(load_fails_with(
	    BASE OIDC_LISTEN
	    "identity:\n  oidc:\n    providers:\n      - {name: a, kind: github, issuer: "
	    "\"https://x\", audiences: x, jwks_file: /j, rules: [{match: {project_path: p}, tier: "
	    "standard}]}\n",
	    "not a GitHub claim"));
	assert_true(load_fails_with(
	    BASE OIDC_LISTEN
	    "identity:\n  oidc:\n    providers:\n      - {name: a, kind: jenkins, issuer: "
	    "\"https://x\", audiences: x, jwks_file: /j, rules: [{match: {ref: m}, tier: nope}]}\n",
	    "expected gitlab or github"));
	/* An empty match would take every CI job of a shared issuer. */
	assert_true(load_fails_with(
	    BASE OIDC_LISTEN
	    "identity:\n  oidc:\n    providers:\n      - {name: a, kind: gitlab, issuer: "
	    "\"https://x\", audiences: x, jwks_file: /j, rules: [{match: {}, tier: standard}]}\n",
	    "a rule matches at least one claim"));
	assert_true(load_fails_with(BASE OIDC_LISTEN, "auth on a listener needs identity.oidc"));
	assert_true(load_fails_with(BASE OIDC_PROVIDER(""), "need a listener with auth"));
	assert_true(load_fails_with(
	    BASE "listen:\n  proxy:\n    - {address: \"127.0.0.1:3128\", auth: maybe}\n",
	    "expected off, optional or required"));
	assert_true(load_fails_with(BASE OIDC_LISTEN OIDC_PROVIDER("        no_match: allow\n"),
	                            "expected deny or source"));
	assert_true(load_fails_with(BASE OIDC_LISTEN OIDC_PROVIDER("        lease: 25h\n"), "24h"));
	assert_true(load_fails_with(BASE OIDC_LISTEN OIDC_PROVIDER("        jwks_url: https://x\n"),
	                            "jwks_file or jwks_url, not both"));
	assert_true(load_fails_with(
	    BASE OIDC_LISTEN OIDC_PROVIDER("        jwks_refresh_min: 1m\n"), "goes with jwks_url"));
}

/* A provider whose keys come from jwks_url instead of jwks_file. */
#define OIDC_URL_PROVIDER(url, extra)                                                              \
	"identity:\n  oidc:\n    providers:\n      - name: gh\n        kind: github\n"              \
	"        issuer: \"https://token.actions.githubusercontent.com\"\n"                          \
	"        audiences: portcullis\n        jwks_url: \"" url "\"\n" extra                       \
	"        rules: [{match: {repository_owner: acme}, tier: standard}]\n"

static void test_oidc_jwks_url(void **state)
{
	(void)state;
	struct policy *p = load_ok(BASE OIDC_LISTEN OIDC_URL_PROVIDER(
	    "https://Token.Actions.GithubUserContent.com./.well-known/jwks", ""));
	const struct policy_oidc_provider *pv = &policy_settings(p)->oidc[0];
	assert_null(pv->jwks_file);
	assert_string_equal(pv->jwks_url,
	                    "https://Token.Actions.GithubUserContent.com./.well-known/jwks");
	assert_string_equal(pv->jwks_host, "token.actions.githubusercontent.com");
	assert_int_equal(pv->jwks_port, 443);
	assert_string_equal(pv->jwks_path, "/.well-known/jwks");
	assert_null(pv->jwks_ca_file);
	assert_int_equal(pv->jwks_refresh_min_ms, 5 * 60000);
	assert_int_equal(pv->jwks_refresh_max_ms, 60 * 60000);
	assert_int_equal(pv->jwks_max_stale_ms, 24 * 3600000);
	policy_unref(p);

	p = load_ok(BASE OIDC_LISTEN OIDC_URL_PROVIDER(
	    "https://[2001:db8::1]:8443?k=v",
	    "        jwks_ca_file: /etc/ssl/idp.pem\n        jwks_refresh_min: 30s\n"
	    "        jwks_refresh_max: 168h\n"));
	pv = &policy_settings(p)->oidc[0];
	assert_string_equal(pv->jwks_host, "2001:db8::1");
	assert_int_equal(pv->jwks_port, 8443);
	assert_string_equal(pv->jwks_path, "/?k=v");
	assert_string_equal(pv->jwks_ca_file, "/etc/ssl/idp.pem");
	assert_int_equal(pv->jwks_refresh_min_ms, 30000);
	assert_int_equal(pv->jwks_refresh_max_ms, 168u * 3600000u);
	assert_int_equal(pv->jwks_max_stale_ms, 168u * 3600000u); /* never below the ceiling */
	policy_unref(p);
	p = load_ok(BASE OIDC_LISTEN OIDC_URL_PROVIDER("https://idp.example/jwks",
	                                               "        jwks_max_stale: 720h\n"));
	assert_int_equal(policy_settings(p)->oidc[0].jwks_max_stale_ms, 720u * 3600000u);
	policy_unref(p);

	p = load_ok(BASE OIDC_LISTEN OIDC_URL_PROVIDER("https://10.0.0.5", ""));
	pv = &policy_settings(p)->oidc[0];
	assert_string_equal(pv->jwks_host, "10.0.0.5");
	assert_string_equal(pv->jwks_path, "/");
	policy_unref(p);

	static const struct {
		const char *url, *msg;
	} bad[] = {
	    {"http://idp.example/jwks", "https:// URL"},
	    {"https://user:pw@idp.example/jwks", "bad host or port"},
	    {"https://idp.example:0/jwks", "bad host or port"},
	    {"https://idp.example:99999/jwks", "bad host or port"},
	    {"https://idp%2eexample/jwks", "bad host or port"},
	    {"https:///jwks", "bad host or port"},
	    {"https://idp.example/jwks#frag", "# at byte"},
	    {"https://idp.example/a b", "space, control"},
	    {"https://idp.example/\xc3\xa9", "non-ASCII"},
	    {"https://[fe80::1%25eth0]/jwks", "bad host or port"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char yaml[2048];
		snprintf(yaml, sizeof(yaml),
		         "%s%sidentity:\n  oidc:\n    providers:\n      - {name: a, kind: github, "
		         "issuer: \"https://x\", audiences: x, jwks_url: \"%s\", rules: [{match: "
		         "{repository_owner: acme}, tier: standard}]}\n",
		         BASE, OIDC_LISTEN, bad[i].url);
		if (!load_fails_with(yaml, bad[i].msg))
			fail_msg("jwks_url %s: want \"%s\"", bad[i].url, bad[i].msg);
	}
	assert_true(
	    load_fails_with(BASE OIDC_LISTEN OIDC_URL_PROVIDER(
	                        "https://idp.example/jwks",
	                        "        jwks_refresh_min: 2h\n        jwks_refresh_max: 1h\n"),
	                    "below jwks_refresh_min"));
	assert_true(
	    load_fails_with(BASE OIDC_LISTEN OIDC_URL_PROVIDER("https://idp.example/jwks",
	                                                       "        jwks_ca_file: ca.pem\n"),
	                    "absolute path"));
	assert_true(
	    load_fails_with(BASE OIDC_LISTEN OIDC_URL_PROVIDER("https://idp.example/jwks",
	                                                       "        jwks_refresh_min: 0s\n"),
	                    "1s"));
	assert_true(
	    load_fails_with(BASE OIDC_LISTEN OIDC_URL_PROVIDER("https://idp.example/jwks",
	                                                       "        jwks_max_stale: 30m\n"),
	                    "jwks_max_stale is below jwks_refresh_max"));
	/* One URL, two ways to trust it: the second provider's CA would silently not apply. */
	assert_true(load_fails_with(
	    BASE OIDC_LISTEN
	    "identity:\n  oidc:\n    providers:\n"
	    "      - {name: a, kind: github, issuer: \"https://a\", audiences: x, jwks_url: "
	    "\"https://idp.example/jwks\", rules: [{match: {repository_owner: acme}, tier: "
	    "standard}]}\n"
	    "      - {name: b, kind: github, issuer: \"https://b\", audiences: x, jwks_url: "
	    "\"https://idp.example/jwks\", jwks_ca_file: /etc/ssl/b.pem, rules: [{match: "
	    "{repository_owner: acme}, tier: standard}]}\n",
	    "one URL, one way to fetch it"));
	p = load_ok(
	    BASE OIDC_LISTEN
	    "identity:\n  oidc:\n    providers:\n"
	    "      - {name: a, kind: github, issuer: \"https://a\", audiences: x, jwks_url: "
	    "\"https://idp.example/jwks\", rules: [{match: {repository_owner: acme}, tier: "
	    "standard}]}\n"
	    "      - {name: b, kind: github, issuer: \"https://b\", audiences: x, jwks_url: "
	    "\"https://idp.example/jwks\", rules: [{match: {repository_owner: acme}, tier: "
	    "standard}]}\n");
	assert_int_equal(policy_settings(p)->n_oidc, 2);
	policy_unref(p);
}

static void test_oidc_glob(void **state)
{
	(void)state;
	assert_true(policy_oidc_glob("group/*", "group/app"));
	assert_true(policy_oidc_glob("group/*", "group/sub/app"));
	assert_false(policy_oidc_glob("group/*", "group"));
	assert_false(policy_oidc_glob("group/*", "other/group/app"));
	assert_true(policy_oidc_glob("*", ""));
	assert_true(policy_oidc_glob("main", "main"));
	assert_false(policy_oidc_glob("main", "main2"));
	assert_true(policy_oidc_glob("refs/*/release-*", "refs/heads/release-1.2"));
	assert_false(policy_oidc_glob("a*b", "acbx"));
	assert_true(policy_oidc_glob("*?", "x?")); /* '?' is literal */
	assert_false(policy_oidc_glob("*?", "xy"));
}

static void test_tls_listener(void **state)
{
	(void)state;
	struct policy *p =
	    load_ok(BASE "  bots:\n    allow: [{host: example.org}]\n"
	                 "listen:\n  https: [\"127.0.0.1:3129\", \"[::1]:3129\"]\n"
	                 "  tls: {cert: /t/tls.crt, key: /t/tls.key, client_certs: require,\n"
	                 "        client_ca: /t/ca.crt, crl: /t/crl.pem}\n"
	                 "identity:\n  client_certs:\n"
	                 "    - {spiffe: \"spiffe://ci.example.org/runner/*\", tier: standard}\n"
	                 "    - {dns: \"*.bots.example.org\", tier: bots}\n"
	                 "    - {cn: release-bot, tier: bots}\n");
	const struct policy_settings *s = policy_settings(p);
	assert_int_equal(s->n_listen_https, 2);
	assert_string_equal(s->listen_tls.cert, "/t/tls.crt");
	assert_string_equal(s->listen_tls.key, "/t/tls.key");
	assert_int_equal(s->listen_tls.client_certs, POLICY_CLIENT_CERTS_REQUIRE);
	assert_string_equal(s->listen_tls.client_ca, "/t/ca.crt");
	assert_string_equal(s->listen_tls.crl, "/t/crl.pem");
	assert_int_equal(s->n_cert_rules, 3);
	const char *dns_bot[] = {"x.example", "b7.BOTS.example.org."};
	const char *dns_apex[] = {"bots.example.org"};
	struct {
		struct policy_cert_id id;
		int want;
	} idc[] = {
	    {{.spiffe = "spiffe://ci.example.org/runner/build"}, 0},
	    {{.spiffe = "spiffe://ci.example.org/runner"}, -1},
	    {{.spiffe = "spiffe://ci.example.org/runner/x", .cn = "release-bot"},
	     0}, /* first rule */
	    {{.dns = dns_bot, .n_dns = 2}, 1},
	    {{.dns = dns_apex, .n_dns = 1}, -1}, /* "*.x" is strict subdomains */
	    {{.cn = "release-bot"}, 1},
	    {{.cn = "Release-bot"}, -1},
	    {{.cn = "release-bot2"}, -1},
	    {{0}, -1},
	};
	for (size_t i = 0; i < sizeof(idc) / sizeof(idc[0]); i++) {
		const char *rule;
		int t = policy_identify_cert(p, &idc[i].id, &rule);
		if (t != idc[i].want)
			fail_msg("case %zu: tier %d, want %d", i, t, idc[i].want);
		assert_true((t < 0) == (rule == NULL));
	}
	policy_unref(p);
	/* Off by default; request needs a CA and rules, nothing else. */
	p = load_ok(BASE "listen:\n  https: \"127.0.0.1:3129\"\n  tls: {cert: /c, key: /k}\n");
	assert_int_equal(policy_settings(p)->listen_tls.client_certs, POLICY_CLIENT_CERTS_OFF);
	assert_null(policy_settings(p)->listen_tls.crl);
	policy_unref(p);
}

static void test_defaults(void **state)
{
	(void)state;
	struct policy *p = load_ok(BASE);
	const struct policy_settings *s = policy_settings(p);
	assert_int_equal(s->n_listen_proxy, 1);
	check_addr(&s->listen_proxy[0], "127.0.0.1", 3128);
	check_addr(&s->listen_admin, "127.0.0.1", 9090);
	assert_int_equal(s->workers, 0);
	assert_int_equal(s->n_resolvers, 1);
	check_addr(&s->resolvers[0], "10.96.0.10", 53);
	assert_int_equal(s->resolver_timeout_ms, 1500);
	assert_int_equal(s->resolver_attempts, 2);
	assert_int_equal(s->resolver_max_answers, 16);
	assert_string_equal(s->audit_output, "-");
	assert_int_equal(s->max_connections, 10000);
	assert_int_equal(s->header_timeout_ms, 10000);
	assert_int_equal(s->max_header_bytes, 8192);
	assert_int_equal(s->max_headers, 100);
	assert_int_equal(s->connect_timeout_ms, 5000);
	assert_int_equal(s->idle_timeout_ms, 300000);
	assert_int_equal(s->max_lifetime_ms, 3600000);
	assert_int_equal(s->drain_timeout_ms, 30000);
	assert_int_equal(s->unknown_source_tier, -1);
	assert_int_equal(s->unknown_connections_per_source, 256);
	assert_int_equal(s->ipv6_source_prefix, 64);
	assert_int_equal(s->max_sources, 1000000);
	assert_int_equal(policy_tier_count(p), 1);
	const struct policy_tier *t = policy_tier(p, 0);
	assert_string_equal(t->name, "standard");
	assert_int_equal(t->mode, TIER_ENFORCE);
	check_builtin_tier(t);
	assert_int_equal(policy_rule_count(p), 1);
	assert_int_equal(policy_range_count(p), range_builtin_count());
	policy_unref(p);
}

/*
 * Per key: the tier's own value, else the top-level tls:/caps:/timeouts:, else
 * built-in.  Top level here sets half the keys; tier "own" overrides some of
 * those and some the top level left alone; tier "plain" sets nothing.
 */
static void test_source_grouping_settings(void **state)
{
	(void)state;
	struct policy *p = load_ok(BASE "identity: {ipv6_source_prefix: 56}\n"
	                                "limits: {max_sources: 5000}\n");
	assert_int_equal(policy_settings(p)->ipv6_source_prefix, 56);
	assert_int_equal(policy_settings(p)->max_sources, 5000);
	policy_unref(p);
	p = load_ok(BASE "identity: {ipv6_source_prefix: 128}\n");
	assert_int_equal(policy_settings(p)->ipv6_source_prefix, 128);
	policy_unref(p);
}

static void test_tier_resolution(void **state)
{
	(void)state;
	struct policy *p =
	    load_ok(BASE_HEAD "timeouts: {connect: 7s, idle: 7m, max_lifetime: 7h}\n"
	                      "tls: {require_sni: false, hello_timeout: 3s}\n"
	                      "caps:\n"
	                      "  download_bytes: 1GiB\n"
	                      "  upload_bytes_per_source: {bytes: 2GiB, window: 2h}\n"
	                      "tiers:\n"
	                      "  own:\n"
	                      "    tls: {hello_timeout: 1s, sni_must_match: false,\n"
	                      "          max_hello_bytes: 512B, require_tls_ports: []}\n"
	                      "    caps: {download_bytes: 0, upload_bytes: 1MB,\n"
	                      "           upload_bytes_per_source: none}\n"
	                      "    timeouts: {idle: 30s}\n"
	                      "  plain:\n"
	                      "  budget:\n"
	                      "    caps: {upload_bytes_per_source: {bytes: 1, window: 1s}}\n");
	assert_int_equal(policy_tier_count(p), 3);
	assert_int_equal(policy_settings(p)->unknown_connections_per_source, 256); /* built-in */

	const struct policy_tier *t = policy_tier(p, 0);
	assert_string_equal(t->name, "own");
	assert_false(t->require_sni);                     /* top level */
	assert_false(t->sni_must_match);                  /* tier */
	assert_false(t->allow_ech);                       /* built-in */
	assert_int_equal(t->n_tls_ports, 0);              /* tier: empty list */
	assert_int_equal(t->hello_timeout_ms, 1000);      /* tier over top level */
	assert_int_equal(t->max_hello_bytes, 512);        /* tier */
	assert_int_equal(t->upload_bytes, 1000000);       /* tier */
	assert_int_equal(t->download_bytes, 0);           /* tier 0 over top level 1GiB */
	assert_int_equal(t->connections_per_source, 256); /* built-in */
	assert_int_equal(t->upload_budget_bytes, 0);      /* tier "none" over top level */
	assert_int_equal(t->upload_budget_window_ms, 0);
	assert_int_equal(t->connect_timeout_ms, 7000);     /* global */
	assert_int_equal(t->idle_timeout_ms, 30000);       /* tier */
	assert_int_equal(t->max_lifetime_ms, 7 * 3600000); /* global */

	t = policy_tier(p, 1);
	assert_string_equal(t->name, "plain");
	assert_false(t->require_sni);
	assert_true(t->sni_must_match);
	assert_false(t->allow_ech);
	assert_int_equal(t->n_tls_ports, 1);
	assert_int_equal(t->tls_ports[0], 443);
	assert_int_equal(t->hello_timeout_ms, 3000);
	assert_int_equal(t->max_hello_bytes, 16384);
	assert_int_equal(t->upload_bytes, 0);
	assert_int_equal(t->download_bytes, 1ULL << 30);
	assert_int_equal(t->connections_per_source, 256);
	assert_int_equal(t->upload_budget_bytes, 2ULL << 30);
	assert_int_equal(t->upload_budget_window_ms, 2 * 3600000);
	assert_int_equal(t->connect_timeout_ms, 7000);
	assert_int_equal(t->idle_timeout_ms, 7 * 60000);
	assert_int_equal(t->max_lifetime_ms, 7 * 3600000);

	/* The budget mapping is one value: a tier's replaces the top level's whole. */
	t = policy_tier(p, 2);
	assert_int_equal(t->upload_budget_bytes, 1);
	assert_int_equal(t->upload_budget_window_ms, 1000);
	assert_int_equal(t->download_bytes, 1ULL << 30);
	policy_unref(p);

	/*
	 * http: the same, key by key.  methods is one value: a tier's list replaces
	 * the top level's whole (never merged), and any switches an inherited list off.
	 */
	p = load_ok(BASE_HEAD "http: {methods: [GET, HEAD]}\n"
	                      "tiers:\n"
	                      "  own:\n"
	                      "    http: {methods: any, allow_upgrade: true}\n"
	                      "  plain:\n"
	                      "  replaced:\n"
	                      "    http: {methods: [\"POST\", PUT]}\n"
	                      "  empty:\n"
	                      "    http:\n");
	t = policy_tier(p, 0);
	assert_string_equal(t->name, "own");
	assert_int_equal(t->n_http_methods, 0); /* tier any over top level */
	assert_null(t->http_methods);
	assert_true(t->http_allow_upgrade); /* tier over built-in */
	t = policy_tier(p, 1);
	assert_string_equal(t->name, "plain");
	check_methods(t, (const char *const[]){"GET", "HEAD"}, 2); /* top level */
	assert_false(t->http_allow_upgrade);                       /* built-in */
	t = policy_tier(p, 2);
	check_methods(t, (const char *const[]){"POST", "PUT"}, 2); /* tier, whole list */
	assert_false(t->http_allow_upgrade);
	t = policy_tier(p, 3);
	check_methods(t, (const char *const[]){"GET", "HEAD"}, 2); /* empty block: top level */
	assert_false(t->http_allow_upgrade);
	policy_unref(p);

	/* Top-level allow_upgrade, a tier turning it off; 32 methods is the most. */
	p = load_ok(BASE "    http: {allow_upgrade: false, methods: [GET]}\n"
	                 "  other:\n"
	                 "    http:\n"
	                 "      methods: [A,B,C,D,E,F,G,H,I,J,K,L,M,N,O,P,Q,R,S,T,U,V,W,X,Y,Z,\n"
	                 "                AA,AB,AC,AD,AE,ABCDEFGHIJKLMNOPQRSTUVWXYZ-ABCDE]\n"
	                 "http: {allow_upgrade: true, methods: \"any\"}\n");
	t = policy_tier(p, 0);
	check_methods(t, (const char *const[]){"GET"}, 1);
	assert_false(t->http_allow_upgrade); /* tier false over top level true */
	t = policy_tier(p, 1);
	assert_int_equal(t->n_http_methods, 32);
	assert_string_equal(t->http_methods[31], "ABCDEFGHIJKLMNOPQRSTUVWXYZ-ABCDE");
	assert_true(t->http_allow_upgrade); /* top level */
	policy_unref(p);

	/* Bounds are inclusive, and "none" may be quoted or sit at top level. */
	p = load_ok(BASE
	            "    tls: {hello_timeout: 100ms, max_hello_bytes: 64KiB}\n"
	            "    caps:\n"
	            "      upload_bytes_per_source: {bytes: 18446744073709551615, window: 24h}\n"
	            "  other:\n"
	            "tls: {hello_timeout: 60s, max_hello_bytes: 512}\n"
	            "caps: {upload_bytes_per_source: \"none\"}\n");
	t = policy_tier(p, 0);
	assert_int_equal(t->hello_timeout_ms, 100);
	assert_int_equal(t->max_hello_bytes, 65536);
	assert_true(t->upload_budget_bytes == UINT64_MAX);
	assert_int_equal(t->upload_budget_window_ms, 24 * 3600000);
	t = policy_tier(p, 1);
	assert_int_equal(t->hello_timeout_ms, 60000);
	assert_int_equal(t->max_hello_bytes, 512);
	assert_int_equal(t->upload_budget_bytes, 0);
	assert_int_equal(t->upload_budget_window_ms, 0);
	policy_unref(p);
}

static void test_lenient_forms(void **state)
{
	(void)state;
	/* Empty values mean empty collections; a single proxy address may be a string;
	 * quoted strings are strings; "auto" quoted or not. */
	struct policy *p =
	    load_ok(BASE_HEAD "blocked_ranges:\nlisten:\n  proxy: \"[::1]:3128\"\n"
	                      "  workers: \"auto\"\n"
	                      "tiers:\n  empty:\n  other:\n    allow:\n    sources:\n");
	assert_int_equal(policy_tier_count(p), 2);
	assert_int_equal(policy_rule_count(p), 0);
	assert_int_equal(policy_settings(p)->workers, 0);
	policy_unref(p);
	/* Sources may nest inside one tier. */
	p = load_ok(BASE_HEAD "tiers:\n  t:\n    sources: [10.0.0.0/8, 10.1.0.0/16]\n");
	policy_unref(p);
}

/* audit.format / tunnel_start / interim, and the JA4 lists: defaults, values, inheritance. */
static void test_siem_settings(void **state)
{
	(void)state;
	static const char j1[] = "t13d1516h2_8daaf6152771_e5627efa2ab1";
	static const char j2[] = "t13d1517h2_8daaf6152771_b1ff8ab2d16f";
	struct policy *p = load_ok(BASE);
	const struct policy_settings *s = policy_settings(p);
	assert_int_equal(s->audit_format, POLICY_AUDIT_ECS);
	assert_false(s->audit_tunnel_start);
	assert_int_equal(s->audit_interim_ms, 5 * 60 * 1000);
	const struct policy_tier *t = policy_tier(p, 0);
	assert_int_equal(t->n_ja4_allow + t->n_ja4_deny, 0);
	assert_true(policy_tier_ja4_allowed(t, j1));
	policy_unref(p);

	p = load_ok(BASE_HEAD "audit: {format: ocsf, tunnel_start: true, interim: 30s}\n"
	                      "tls: {ja4_deny: [t13d1516h2_8daaf6152771_e5627efa2ab1]}\n"
	                      "tiers:\n"
	                      "  inherits: {sources: [10.1.0.0/16]}\n"
	                      "  locked: {sources: [10.2.0.0/16], tls: {ja4_deny: [],\n"
	                      "           ja4_allow: [t13d1517h2_8daaf6152771_b1ff8ab2d16f]}}\n");
	s = policy_settings(p);
	assert_int_equal(s->audit_format, POLICY_AUDIT_OCSF);
	assert_true(s->audit_tunnel_start);
	assert_int_equal(s->audit_interim_ms, 30000);
	for (size_t i = 0; i < policy_tier_count(p); i++) {
		t = policy_tier(p, i);
		if (strcmp(t->name, "inherits") == 0) {
			assert_false(policy_tier_ja4_allowed(t, j1)); /* the top-level deny list */
			assert_true(policy_tier_ja4_allowed(t, j2));
		} else {
			assert_true(policy_tier_ja4_allowed(t, j2)); /* deny cleared, allow listed */
			assert_false(policy_tier_ja4_allowed(t, j1));
		}
	}
	policy_unref(p);

	p = load_ok(BASE "audit: {interim: off}\n");
	assert_int_equal(policy_settings(p)->audit_interim_ms, 0);
	policy_unref(p);

	assert_true(policy_ja4_valid(j1, strlen(j1)));
	assert_true(policy_ja4_valid("q13i0000H2_000000000000_000000000000", 36));
	assert_false(policy_ja4_valid("t13d1516h2_8daaf6152771_e5627efa2ab", 35));
	assert_false(policy_ja4_valid("t13d1516h2_8daaf6152771-e5627efa2ab1", 36));
	assert_false(policy_ja4_valid("t13x1516h2_8daaf6152771_e5627efa2ab1", 36));
	assert_false(policy_ja4_valid(NULL, 36));
}

static void test_refcount(void **state)
{
	(void)state;
	struct policy *p = load_ok(BASE);
	assert_ptr_equal(policy_ref(p), p);
	assert_ptr_equal(policy_ref(p), p);
	policy_unref(p);
	policy_unref(p);
	/* Still alive: one reference left. */
	assert_int_equal(policy_tier_count(p), 1);
	policy_unref(p);
	policy_unref(NULL);
	assert_null(policy_ref(NULL));
}

static void test_diags_append(void **state)
{
	struct policy *p = NULL;
	struct policy_diags d;
	(void)state;
	/* A second load appends; fini frees and resets. */
	policy_diags_init(&d);
	assert_int_equal(policy_load_buffer("x: 1\n", 5, &p, &d), POLICY_ERR_INVALID);
	size_t first = d.n;
	assert_true(first > 0);
	assert_int_equal(policy_load_buffer("x: 1\n", 5, &p, &d), POLICY_ERR_INVALID);
	assert_int_equal(d.n, 2 * first);
	policy_diags_fini(&d);
	assert_int_equal(d.n, 0);
	assert_null(d.v);
	policy_diags_fini(&d);
	/* NULL diags: still refused. */
	assert_int_equal(policy_load_buffer("x: 1\n", 5, &p, NULL), POLICY_ERR_INVALID);
	assert_null(p);
}

static void test_examples(void **state)
{
	struct policy *p = NULL;
	struct policy_diags d;
	(void)state;
	policy_diags_init(&d);
	if (policy_load_file(EXAMPLES "default.yaml", &p, &d, NULL) != POLICY_OK)
		dump(&d);
	assert_non_null(p);
	assert_int_equal(policy_tier_count(p), 1);
	assert_int_equal(policy_settings(p)->unknown_source_tier, -1);
	policy_unref(p);
	/* docs/proxy-protocol.md's example. */
	if (policy_load_file(EXAMPLES "load-balancer.yaml", &p, &d, NULL) != POLICY_OK)
		dump(&d);
	assert_non_null(p);
	assert_int_equal(policy_settings(p)->n_listen_proxy, 2);
	assert_int_equal(policy_settings(p)->listen_pp[0].accept, 0);
	assert_int_equal(policy_settings(p)->listen_pp[1].accept, POLICY_PP_V2);
	struct pc_addr lb = {ADDR_V4, {10, 0, 17, 10}}, runner = {ADDR_V4, {10, 42, 1, 2}},
	               lb_subnet = {ADDR_V4, {10, 0, 17, 9}};
	assert_true(policy_listen_trusted(p, 1, &lb));
	assert_false(policy_listen_trusted(p, 1, &runner));
	assert_false(policy_listen_trusted(p, 1, &lb_subnet)); /* the NLB's address, not its subnet */
	policy_unref(p);
	assert_int_equal(policy_load_file(EXAMPLES "broken.yaml", &p, &d, NULL), POLICY_ERR_INVALID);
	assert_true(d.n >= 9);
	policy_diags_fini(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_base_is_valid),
	    cmocka_unit_test(test_error_cases),
	    cmocka_unit_test(test_every_problem_reported),
	    cmocka_unit_test(test_diags_capped),
	    cmocka_unit_test(test_nesting_bomb),
	    cmocka_unit_test(test_too_large),
	    cmocka_unit_test(test_io_error),
	    cmocka_unit_test(test_io_messages),
	    cmocka_unit_test(test_file_sha256),
	    cmocka_unit_test(test_full_policy_accessors),
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_tls_listener),
	    cmocka_unit_test(test_oidc),
	    cmocka_unit_test(test_oidc_jwks_url),
	    cmocka_unit_test(test_oidc_glob),
	    cmocka_unit_test(test_kubernetes),
	    cmocka_unit_test(test_source_grouping_settings),
	    cmocka_unit_test(test_tier_resolution),
	    cmocka_unit_test(test_lenient_forms),
	    cmocka_unit_test(test_siem_settings),
	    cmocka_unit_test(test_refcount),
	    cmocka_unit_test(test_listen_proxy_protocol),
	    cmocka_unit_test(test_diags_append),
	    cmocka_unit_test(test_examples),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
