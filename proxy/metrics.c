/* Metrics: per-worker lock-free counters and histograms, summed into Prometheus text at scrape time. */
#include "metrics.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <ares.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/crypto.h>

#include "clock.h"

/* Bucket upper bounds in nanoseconds (exposed in seconds). */
static const uint64_t bucket_ns[METRICS_HIST_BUCKETS] = {
	100000,    250000,    500000,    1000000,   2500000,    5000000,    10000000,   25000000,
	50000000,  100000000, 250000000, 500000000, 1000000000, 2500000000, 5000000000, 10000000000,
};

void metrics_tiers_init(struct metrics_tiers *t)
{
	memset(t, 0, sizeof(*t));
	pthread_mutex_init(&t->lock, NULL);
	strcpy(t->names[0], "(none)"); /* outside the tier-name alphabet: no clash */
	atomic_store(&t->n, 1);
}

void metrics_tiers_fini(struct metrics_tiers *t)
{
	pthread_mutex_destroy(&t->lock);
}

unsigned metrics_tier_slot(struct metrics_tiers *t, const char *name)
{
	pthread_mutex_lock(&t->lock);
	unsigned n = atomic_load(&t->n);
	unsigned slot = 0;
	for (unsigned i = 1; i < n; i++) {
		if (strcmp(t->names[i], name) == 0) {
			slot = i;
			goto out;
		}
	}
	if (n < METRICS_MAX_TIERS - 1) {
		snprintf(t->names[n], sizeof(t->names[n]), "%s", name);
		atomic_store_explicit(&t->n, n + 1, memory_order_release);
		slot = n;
	} else {
		/* Label cardinality stays bounded: tiers beyond the slots share "(other)". */
		if (n == METRICS_MAX_TIERS - 1) {
			strcpy(t->names[n], "(other)");
			atomic_store_explicit(&t->n, n + 1, memory_order_release);
		}
		slot = METRICS_MAX_TIERS - 1;
	}
out:
	pthread_mutex_unlock(&t->lock);
	return slot;
}

void metrics_observe(struct metrics_hist *h, uint64_t ns)
{
	for (unsigned i = 0; i < METRICS_HIST_BUCKETS; i++) {
		if (ns <= bucket_ns[i]) {
			metrics_add(&h->bucket[i], 1);
			break;
		}
	}
	metrics_add(&h->count, 1);
	metrics_add(&h->sum_ns, ns);
}

static uint64_t ld(const atomic_ullong *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

static void family(struct evbuffer *out, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A family of one unlabelled sample. */
static void scalar(struct evbuffer *out, const char *name, const char *type, const char *help,
		   uint64_t v)
{
	family(out, name, type, help);
	evbuffer_add_printf(out, "%s %llu\n", name, (unsigned long long)v);
}

/* A certificate that reloads from files: its reloads by result, and when it expires. */
static void reloaded_cert(struct evbuffer *out, const char *reloads, const char *reloads_help,
                          uint64_t ok, uint64_t failed, const char *expiry, const char *expiry_help,
                          int64_t not_after)
{
	family(out, reloads, "counter", reloads_help);
	evbuffer_add_printf(out, "%s{result=\"success\"} %llu\n", reloads, (unsigned long long)ok);
	evbuffer_add_printf(out, "%s{result=\"failure\"} %llu\n", reloads,
	                    (unsigned long long)failed);
	family(out, expiry, "gauge", expiry_help);
	evbuffer_add_printf(out, "%s %lld\n", expiry, (long long)not_after);
}

static void render_hist(struct evbuffer *out, const char *name, const char *help,
			struct worker_metrics *const *w, size_t nw, size_t off)
{
	uint64_t b[METRICS_HIST_BUCKETS] = {0}, count = 0, sum = 0;
	for (size_t i = 0; i < nw; i++) {
		const struct metrics_hist *h =
			(const struct metrics_hist *)((const char *)w[i] + off);
		/* Read count first: buckets observed later only make them catch up. */
		count += ld(&h->count);
		sum += ld(&h->sum_ns);
		for (unsigned k = 0; k < METRICS_HIST_BUCKETS; k++)
			b[k] += ld(&h->bucket[k]);
	}
	family(out, name, "histogram", help);
	uint64_t cum = 0;
	for (unsigned k = 0; k < METRICS_HIST_BUCKETS; k++) {
		cum += b[k];
		if (cum > count)
			cum = count; /* a concurrent observation between the reads */
		evbuffer_add_printf(out, "%s_bucket{le=\"%g\"} %llu\n", name, (double)bucket_ns[k] / 1e9,
				    (unsigned long long)cum);
	}
	evbuffer_add_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)count);
	evbuffer_add_printf(out, "%s_sum %.9f\n%s_count %llu\n", name, (double)sum / 1e9, name,
			    (unsigned long long)count);
}

/* Process metrics as the Prometheus client libraries name them, from /proc/self. */
static void render_process(struct evbuffer *out, const struct metrics_process *p)
{
	struct rusage ru;
	double cpu = 0;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
		      (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	family(out, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
	evbuffer_add_printf(out, "process_cpu_seconds_total %.6f\n", cpu);

	unsigned long long vsz = 0, rss_pages = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f != NULL) {
		if (fscanf(f, "%llu %llu", &vsz, &rss_pages) != 2)
			vsz = rss_pages = 0;
		fclose(f);
	}
	long page = sysconf(_SC_PAGESIZE);
	family(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
	evbuffer_add_printf(out, "process_resident_memory_bytes %llu\n", rss_pages * (unsigned long long)page);
	family(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
	evbuffer_add_printf(out, "process_virtual_memory_bytes %llu\n", vsz * (unsigned long long)page);

	unsigned long long fds = 0;
	DIR *d = opendir("/proc/self/fd");
	if (d != NULL) {
		struct dirent *e;
		while ((e = readdir(d)) != NULL)
			if (e->d_name[0] != '.')
				fds++;
		closedir(d);
		fds = fds > 0 ? fds - 1 : 0; /* the directory stream's own descriptor */
	}
	family(out, "process_open_fds", "gauge", "Number of open file descriptors.");
	evbuffer_add_printf(out, "process_open_fds %llu\n", fds);
	struct rlimit rl;
	family(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
	evbuffer_add_printf(out, "process_max_fds %llu\n",
			    getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (unsigned long long)rl.rlim_cur : 0ull);
	family(out, "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.");
	evbuffer_add_printf(out, "process_start_time_seconds %.3f\n", p->start_time);
}

/* A label value as the exposition format wants it: backslash and double quote escaped. */
static void label_value(char *dst, size_t cap, const char *src)
{
	size_t o = 0;
	for (; *src != '\0' && o + 3 < cap; src++) {
		if (*src == '\\' || *src == '"')
			dst[o++] = '\\';
		dst[o++] = *src == '\n' ? ' ' : *src;
	}
	dst[o] = '\0';
}

/* The JWKS URLs' fetches (jwksfetch.h), one series per URL. */
static void jwks_families(struct evbuffer *out, const struct metrics_process *p)
{
	static const char *const res[] = {"fetched", "not_modified", "failed"};
	double now = (double)wall_ns() / 1e9;
	char url[2 * sizeof(p->jwks[0].url) + 1];
	family(out, "portcullis_oidc_jwks_fetches_total", "counter",
	       "JWKS URL fetches by result: fetched (200, a usable key set), not_modified (304), "
	       "failed (kept the last keys).");
	for (size_t i = 0; i < p->n_jwks; i++) {
		const struct metrics_jwks *j = &p->jwks[i];
		const uint64_t v[] = {j->fetched, j->not_modified, j->failed};
		label_value(url, sizeof(url), j->url);
		for (size_t r = 0; r < 3; r++)
			evbuffer_add_printf(out,
			                    "portcullis_oidc_jwks_fetches_total{url=\"%s\",result=\"%s\"} "
			                    "%llu\n",
			                    url, res[r], (unsigned long long)v[r]);
	}
	family(out, "portcullis_oidc_jwks_kid_refreshes_total", "counter",
	       "JWKS URL fetches asked for by a token with a kid the keys lacked.");
	for (size_t i = 0; i < p->n_jwks; i++) {
		label_value(url, sizeof(url), p->jwks[i].url);
		evbuffer_add_printf(out, "portcullis_oidc_jwks_kid_refreshes_total{url=\"%s\"} %llu\n",
		                    url, (unsigned long long)p->jwks[i].kid_refreshes);
	}
	family(out, "portcullis_oidc_jwks_keys", "gauge",
	       "Keys in the JWKS served for a URL (0: none fetched yet).");
	for (size_t i = 0; i < p->n_jwks; i++) {
		label_value(url, sizeof(url), p->jwks[i].url);
		evbuffer_add_printf(out, "portcullis_oidc_jwks_keys{url=\"%s\"} %llu\n", url,
		                    (unsigned long long)p->jwks[i].keys);
	}
	family(out, "portcullis_oidc_jwks_last_success_timestamp_seconds", "gauge",
	       "When a JWKS URL last answered with keys or 304 (0: never).");
	for (size_t i = 0; i < p->n_jwks; i++) {
		label_value(url, sizeof(url), p->jwks[i].url);
		evbuffer_add_printf(out,
		                    "portcullis_oidc_jwks_last_success_timestamp_seconds{url=\"%s\"} "
		                    "%.3f\n",
		                    url, p->jwks[i].last_success);
	}
	family(out, "portcullis_oidc_jwks_age_seconds", "gauge",
	       "Seconds since a JWKS URL last answered with keys or 304 (absent: never).");
	for (size_t i = 0; i < p->n_jwks; i++) {
		if (p->jwks[i].last_success <= 0)
			continue;
		label_value(url, sizeof(url), p->jwks[i].url);
		double age = now - p->jwks[i].last_success;
		evbuffer_add_printf(out, "portcullis_oidc_jwks_age_seconds{url=\"%s\"} %.3f\n", url,
		                    age > 0 ? age : 0.0);
	}
}

int metrics_render(struct evbuffer *out, const struct metrics_tiers *tiers,
		   struct worker_metrics *const *w, size_t nw, const struct metrics_process *p)
{
	unsigned nt = atomic_load_explicit(&tiers->n, memory_order_acquire);
	static const char *const dirs[2] = {"upload", "download"};
	static const char *const decs[2] = {"deny", "allow"};
	static const char *const kinds[MDNS__COUNT] = {"nxdomain", "nodata", "error", "timeout"};

	family(out, "portcullis_build_info", "gauge", "Build and library versions; always 1.");
	evbuffer_add_printf(out,
			    "portcullis_build_info{version=\"%s\",libevent=\"%s\",cares=\"%s\",openssl=\"%s\"} 1\n",
			    p->version, event_get_version(), ares_version(NULL),
			    OpenSSL_version(OPENSSL_VERSION_STRING));
	family(out, "portcullis_policy_info", "gauge", "The loaded policy, by the SHA-256 of its file; always 1.");
	evbuffer_add_printf(out, "portcullis_policy_info{sha256=\"%s\"} 1\n", p->policy_sha256);
	family(out, "portcullis_policy_load_timestamp_seconds", "gauge", "When the serving policy was loaded.");
	evbuffer_add_printf(out, "portcullis_policy_load_timestamp_seconds %.3f\n", p->policy_loaded_at);
	family(out, "portcullis_policy_reloads_total", "counter", "Policy reloads by result.");
	evbuffer_add_printf(out, "portcullis_policy_reloads_total{result=\"success\"} %llu\n",
			    (unsigned long long)p->reloads_ok);
	evbuffer_add_printf(out, "portcullis_policy_reloads_total{result=\"failure\"} %llu\n",
			    (unsigned long long)p->reloads_failed);
	scalar(out, "portcullis_ready", "gauge",
	       "1 when /readyz answers 200, 0 when it answers 503 (its body says why).", p->ready ? 1 : 0);
	scalar(out, "portcullis_audit_records_lost_total", "counter",
	       "Audit records that could not be queued for writing.", p->audit_lost);
	scalar(out, "portcullis_connections_active", "gauge", "Open client connections, all states.",
	       p->conns_active);
	scalar(out, "portcullis_source_table_entries", "gauge",
	       "Sources tracked for the per-source limits (limits.max_sources at most).",
	       p->source_entries);
	scalar(out, "portcullis_source_table_evictions_total", "counter",
	       "Idle sources dropped from a full per-source table to make room for a new one.",
	       p->source_evictions);
	scalar(out, "portcullis_admin_connections_evicted_total", "counter",
	       "Admin connections closed early so that a newer one (a probe) is answered.",
	       p->admin_evictions);
	if (p->tls_enabled) {
		reloaded_cert(out, "portcullis_tls_listener_reloads_total",
		              "TLS listener certificate reloads by result (a failure keeps the "
		              "previous one).",
		              p->tls_reloads_ok, p->tls_reloads_failed,
		              "portcullis_tls_listener_cert_not_after_seconds",
		              "When the TLS listener's serving certificate expires (unix seconds).",
		              p->tls_not_after);
	}
	if (p->icpt_enabled) {
		scalar(out, "portcullis_intercept_certs_minted_total", "counter",
		       "Certificates minted for intercepted hosts (signed by the interception CA).",
		       p->icpt_minted);
		scalar(out, "portcullis_intercept_cert_cache_hits_total", "counter",
		       "Intercepted handshakes served a certificate from the cache.",
		       p->icpt_cache_hits);
		scalar(out, "portcullis_intercept_certs_cached", "gauge",
		       "Minted certificates in the cache now.", p->icpt_cached);
		reloaded_cert(
		    out, "portcullis_intercept_ca_reloads_total",
		    "Interception CA reloads by result (a failure keeps the previous CA).",
		    p->icpt_reloads_ok, p->icpt_reloads_failed,
		    "portcullis_intercept_ca_not_after_seconds",
		    "When the interception CA certificate expires (unix seconds).",
		    p->icpt_ca_not_after);
	}
	if (p->oidc_enabled) {
		family(out, "portcullis_oidc_tokens_total", "counter",
		       "OIDC tokens presented, by result: verified, leased (after exp, from the "
		       "bound source), refused (the reason is in portcullis_connections_total).");
		evbuffer_add_printf(out, "portcullis_oidc_tokens_total{result=\"verified\"} %llu\n",
		                    (unsigned long long)p->oidc_verified);
		evbuffer_add_printf(out, "portcullis_oidc_tokens_total{result=\"leased\"} %llu\n",
		                    (unsigned long long)p->oidc_leased);
		evbuffer_add_printf(out, "portcullis_oidc_tokens_total{result=\"refused\"} %llu\n",
		                    (unsigned long long)p->oidc_refused);
		scalar(out, "portcullis_oidc_bindings", "gauge",
		       "CI jobs bound to the source address that first presented their token.",
		       p->oidc_bindings);
		scalar(out, "portcullis_oidc_binding_evictions_total", "counter",
		       "Job bindings pushed out of the full table before their end.",
		       p->oidc_evictions);
		scalar(out, "portcullis_oidc_replays_total", "counter",
		       "Tokens presented from another source than the one their job is bound to.",
		       p->oidc_replays);
		family(out, "portcullis_oidc_jwks_load_timestamp_seconds", "gauge",
		       "When the serving JWKS files were read (with the policy; a JWKS change "
		       "reloads it, failures count in portcullis_policy_reloads_total).");
		evbuffer_add_printf(out, "portcullis_oidc_jwks_load_timestamp_seconds %.3f\n",
		                    p->policy_loaded_at);
	}
	if (p->n_jwks > 0)
		jwks_families(out, p);
	if (p->kube_enabled) {
		scalar(out, "portcullis_kube_synced", "gauge",
		       "1 once every watched scope has completed its first pod list.",
		       p->kube_synced ? 1 : 0);
		scalar(out, "portcullis_kube_pods", "gauge", "Pods in the pod IP map.", p->kube_pods);
		scalar(out, "portcullis_kube_relists_total", "counter",
		       "Pod lists after a scope's first (410 Gone, malformed events).",
		       p->kube_relists);
		scalar(out, "portcullis_kube_watch_errors_total", "counter",
		       "List and watch requests that ended in an error.", p->kube_watch_errors);
		scalar(out, "portcullis_kube_objects_skipped_total", "counter",
		       "Pod objects or watch events over the 4 MiB bound, left out of the map.",
		       p->kube_skipped);
	}

	family(out, "portcullis_connections_total", "counter",
	       "Connections by tier, decision and reason; one per audit record.");
	for (unsigned t = 0; t < nt; t++)
		for (int r = 0; r < R__COUNT; r++)
			for (int d = 0; d < 2; d++) {
				uint64_t v = 0;
				for (size_t i = 0; i < nw; i++)
					v += ld(&w[i]->conns[t][r][d]);
				if (v == 0)
					continue;
				evbuffer_add_printf(out,
						    "portcullis_connections_total{tier=\"%s\",decision=\"%s\",reason=\"%s\"} %llu\n",
						    tiers->names[t], decs[d], reason_name((enum reason)r),
						    (unsigned long long)v);
			}
	family(out, "portcullis_tunnels_active", "gauge", "Open tunnels by tier.");
	for (unsigned t = 1; t < nt; t++) {
		long long v = 0;
		for (size_t i = 0; i < nw; i++)
			v += atomic_load_explicit(&w[i]->tunnels_active[t], memory_order_relaxed);
		evbuffer_add_printf(out, "portcullis_tunnels_active{tier=\"%s\"} %lld\n", tiers->names[t], v);
	}
	family(out, "portcullis_tunnel_bytes_total", "counter", "Bytes relayed by tier and direction.");
	for (unsigned t = 1; t < nt; t++)
		for (int d = 0; d < 2; d++) {
			uint64_t v = 0;
			for (size_t i = 0; i < nw; i++)
				v += ld(&w[i]->bytes[t][d]);
			evbuffer_add_printf(out, "portcullis_tunnel_bytes_total{tier=\"%s\",direction=\"%s\"} %llu\n",
					    tiers->names[t], dirs[d], (unsigned long long)v);
		}
	family(out, "portcullis_dns_errors_total", "counter", "Failed client lookups by kind.");
	for (int k = 0; k < MDNS__COUNT; k++) {
		uint64_t v = 0;
		for (size_t i = 0; i < nw; i++)
			v += ld(&w[i]->dns_errors[k]);
		evbuffer_add_printf(out, "portcullis_dns_errors_total{kind=\"%s\"} %llu\n", kinds[k],
				    (unsigned long long)v);
	}
	uint64_t aggregated = 0;
	for (size_t i = 0; i < nw; i++)
		aggregated += ld(&w[i]->audit_aggregated);
	scalar(out, "portcullis_audit_refusals_aggregated_total", "counter",
	       "Refusals counted in an aggregate audit record instead of one of their own.",
	       aggregated);
	render_hist(out, "portcullis_dns_lookup_duration_seconds", "Time to resolve a target name.", w,
		    nw, offsetof(struct worker_metrics, dns));
	render_hist(out, "portcullis_upstream_connect_duration_seconds",
		    "Time to connect to the upstream.", w, nw, offsetof(struct worker_metrics, connect));
	render_hist(out, "portcullis_tunnel_setup_duration_seconds",
		    "Time from the request head to the 200 response.", w, nw,
		    offsetof(struct worker_metrics, setup));
	render_process(out, p);
	return 0;
}
