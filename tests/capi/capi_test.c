/* The C interface (kvc.h) from C11: an embedded member and a client of it, every call and its
 * error codes, ownership (CI runs it under ASan too: docs/capi.md), and watches. Exits 0 when
 * every check passed, 1 after printing the checks that failed. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kvc/kvc.h"

static int failures = 0;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                              \
    }                                                                          \
  } while (0)

/* Checks a call's code; on an unexpected one prints its error. Frees the error. */
#define EXPECT_CODE(want, call)                                                                    \
  do {                                                                                             \
    kvc_error* e_ = NULL;                                                                          \
    kvc_error** err = &e_;                                                                         \
    const kvc_code got_ = (call);                                                                  \
    if (got_ != (want)) {                                                                          \
      fprintf(stderr, "%s:%d: %s: got %d, want %d: %s\n", __FILE__, __LINE__, #call, (int)got_,    \
              (int)(want), e_ ? kvc_error_message(e_) : "(no error)");                             \
      ++failures;                                                                                  \
    } else if (got_ != KVC_OK &&                                                                   \
               (e_ == NULL || kvc_error_code(e_) != got_ || kvc_error_message(e_)[0] == '\0')) {   \
      fprintf(stderr, "%s:%d: %s: the error does not say %d with a message\n", __FILE__, __LINE__, \
              #call, (int)got_);                                                                   \
      ++failures;                                                                                  \
    } else if (got_ == KVC_OK && e_ != NULL) {                                                     \
      fprintf(stderr, "%s:%d: %s: an error with KVC_OK\n", __FILE__, __LINE__, #call);             \
      ++failures;                                                                                  \
    }                                                                                              \
    kvc_error_free(e_);                                                                            \
    (void)err;                                                                                     \
  } while (0)

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* A port on 127.0.0.1 nobody listens on now (the kernel's pick). */
static unsigned free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || bind(fd, (struct sockaddr*)&a, sizeof a) != 0 ||
      getsockname(fd, (struct sockaddr*)&a, &len) != 0) {
    perror("free_port");
    exit(1);
  }
  close(fd);
  return ntohs(a.sin_port);
}

/* What a watch callback saw. */
struct seen {
  pthread_mutex_t mu;
  int puts, deletes, ends;
  uint64_t last_revision;
  char last_value[64];
};

static void on_event(void* ctx, kvc_event_type type, const kvc_kv* kv) {
  struct seen* s = ctx;
  pthread_mutex_lock(&s->mu);
  if (type == KVC_EVENT_PUT) {
    ++s->puts;
    size_t n = kv->value_len < sizeof s->last_value - 1 ? kv->value_len : sizeof s->last_value - 1;
    memcpy(s->last_value, kv->value, n);
    s->last_value[n] = '\0';
  } else if (type == KVC_EVENT_DELETE) {
    ++s->deletes;
  } else {
    ++s->ends;
  }
  if (kv != NULL) s->last_revision = kv->mod_revision;
  pthread_mutex_unlock(&s->mu);
}

/* Waits up to 10 s for `*count` to reach `want` (read under the mutex). */
static int wait_count(struct seen* s, const int* count, int want) {
  for (int i = 0; i < 1000; ++i) {
    pthread_mutex_lock(&s->mu);
    int n = *count;
    pthread_mutex_unlock(&s->mu);
    if (n >= want) return 1;
    sleep_ms(10);
  }
  return 0;
}

struct leader_seen {
  pthread_mutex_t mu;
  uint64_t leader;
  int leads;
  int calls;
};

static void on_leader(void* ctx, uint64_t leader_id, int this_member_leads) {
  struct leader_seen* l = ctx;
  pthread_mutex_lock(&l->mu);
  l->leader = leader_id;
  l->leads = this_member_leads;
  ++l->calls;
  pthread_mutex_unlock(&l->mu);
}

/* The calls every kvc_db answers alike, an engine's or a client's. */
static void exercise(kvc_db* db, const char* p) {
  char key[64], other[64];
  snprintf(key, sizeof key, "%s/a", p);
  snprintf(other, sizeof other, "%s/b", p);
  uint64_t rev = 0, rev2 = 0;
  EXPECT_CODE(KVC_OK, kvc_set(db, key, strlen(key), "one", 3, 0, &rev, err));
  CHECK(rev > 0);
  kvc_kv* kv = NULL;
  EXPECT_CODE(KVC_OK, kvc_get(db, key, strlen(key), 0, &kv, err));
  CHECK(kv != NULL && kv->value_len == 3 && memcmp(kv->value, "one", 3) == 0);
  CHECK(kv != NULL && kv->mod_revision == rev && kv->version == 1);
  kvc_kv_free(kv);
  kv = (kvc_kv*)1;
  EXPECT_CODE(KVC_NOT_FOUND, kvc_get(db, other, strlen(other), 1, &kv, err));
  CHECK(kv == NULL);
  /* Compare-and-set and compare-and-delete. */
  EXPECT_CODE(KVC_COMPARE_FAILED, kvc_cas(db, key, strlen(key), "x", 1, rev + 1000, NULL, err));
  EXPECT_CODE(KVC_OK, kvc_cas(db, key, strlen(key), "two", 3, rev, &rev2, err));
  CHECK(rev2 > rev);
  EXPECT_CODE(KVC_OK, kvc_cas(db, other, strlen(other), "b", 1, 0, NULL, err));
  EXPECT_CODE(KVC_COMPARE_FAILED, kvc_delete(db, key, strlen(key), rev, err));
  /* Keys and values are bytes: NULs included. */
  const char bin_key[] = {'k', '\0', 'z'};
  const char bin_val[] = {'\0', '\1', '\0'};
  char bkey[80];
  size_t blen = (size_t)snprintf(bkey, sizeof bkey, "%s/", p);
  memcpy(bkey + blen, bin_key, sizeof bin_key);
  blen += sizeof bin_key;
  EXPECT_CODE(KVC_OK, kvc_set(db, bkey, blen, bin_val, sizeof bin_val, 0, NULL, err));
  EXPECT_CODE(KVC_OK, kvc_get(db, bkey, blen, 0, &kv, err));
  CHECK(kv != NULL && kv->key_len == blen && memcmp(kv->key, bkey, blen) == 0);
  CHECK(kv != NULL && kv->value_len == 3 && memcmp(kv->value, bin_val, 3) == 0);
  kvc_kv_free(kv);
  /* A listing in pages of two: a, b, then the binary key. */
  char prefix[64];
  snprintf(prefix, sizeof prefix, "%s/", p);
  kvc_kv_list* page = NULL;
  EXPECT_CODE(KVC_OK, kvc_list(db, prefix, strlen(prefix), NULL, 0, 2, 0, &page, err));
  CHECK(page != NULL && page->count == 2 && page->more);
  if (page != NULL && page->count == 2) {
    CHECK(page->items[0].key_len == strlen(key) &&
          memcmp(page->items[0].key, key, strlen(key)) == 0);
    CHECK(page->items[0].value_len == 3 && memcmp(page->items[0].value, "two", 3) == 0);
    kvc_kv_list* next = NULL;
    EXPECT_CODE(KVC_OK, kvc_list(db, prefix, strlen(prefix), page->items[1].key,
                                 page->items[1].key_len, 2, 0, &next, err));
    CHECK(next != NULL && next->count == 1 && !next->more);
    if (next != NULL && next->count == 1) CHECK(next->items[0].key_len == blen);
    kvc_kv_list_free(next);
  }
  kvc_kv_list_free(page);
  /* Leases: a key on a revoked lease is gone. */
  uint64_t lease = 0;
  EXPECT_CODE(KVC_OK, kvc_lease_grant(db, 30, &lease, err));
  CHECK(lease != 0);
  char eph[64];
  snprintf(eph, sizeof eph, "%s/eph", p);
  EXPECT_CODE(KVC_OK, kvc_set(db, eph, strlen(eph), "x", 1, lease, NULL, err));
  EXPECT_CODE(KVC_OK, kvc_get(db, eph, strlen(eph), 0, &kv, err));
  CHECK(kv != NULL && kv->lease == lease);
  kvc_kv_free(kv);
  EXPECT_CODE(KVC_OK, kvc_lease_keep_alive(db, lease, err));
  EXPECT_CODE(KVC_OK, kvc_lease_revoke(db, lease, err));
  EXPECT_CODE(KVC_NOT_FOUND, kvc_get(db, eph, strlen(eph), 0, &kv, err));
  EXPECT_CODE(KVC_NOT_FOUND, kvc_lease_keep_alive(db, lease, err));
  EXPECT_CODE(KVC_NOT_FOUND, kvc_set(db, eph, strlen(eph), "x", 1, lease, NULL, err));
  /* Watches: from a revision (history), then live; unwatch stops the callback. */
  struct seen s;
  memset(&s, 0, sizeof s);
  pthread_mutex_init(&s.mu, NULL);
  uint64_t w = 0;
  EXPECT_CODE(KVC_OK, kvc_watch(db, prefix, strlen(prefix), 1, rev, on_event, &s, &w, err));
  CHECK(wait_count(&s, &s.puts, 5));    /* a, a again, b, the binary key, the lease's key */
  CHECK(wait_count(&s, &s.deletes, 1)); /* the lease's key */
  EXPECT_CODE(KVC_OK, kvc_delete(db, other, strlen(other), 0, err));
  CHECK(wait_count(&s, &s.deletes, 2));
  EXPECT_CODE(KVC_OK, kvc_set(db, key, strlen(key), "three", 5, 0, &rev, err));
  CHECK(wait_count(&s, &s.puts, 6));
  pthread_mutex_lock(&s.mu);
  CHECK(s.puts == 6 && s.deletes == 2 && s.ends == 0);
  CHECK(strcmp(s.last_value, "three") == 0 && s.last_revision == rev);
  pthread_mutex_unlock(&s.mu);
  kvc_unwatch(db, w);
  kvc_unwatch(db, w); /* again: ignored */
  pthread_mutex_lock(&s.mu);
  const int puts_then = s.puts;
  pthread_mutex_unlock(&s.mu);
  EXPECT_CODE(KVC_OK, kvc_set(db, key, strlen(key), "four", 4, 0, NULL, err));
  sleep_ms(200); /* nothing may arrive; a late event would show below */
  pthread_mutex_lock(&s.mu);
  CHECK(s.puts == puts_then);
  pthread_mutex_unlock(&s.mu);
  EXPECT_CODE(KVC_NOT_FOUND, kvc_delete(db, other, strlen(other), 0, err));
  /* A watch without a callback is refused by the call itself. */
  EXPECT_CODE(KVC_USAGE, kvc_watch(db, "", 0, 0, 0, NULL, NULL, &w, err));
  pthread_mutex_destroy(&s.mu);
}

/* Expects `call` to fail with `want`, its error's status named `status` and its message holding
 * `text`. Frees the error. */
#define EXPECT_REFUSED(want, status, text, call)                                          \
  do {                                                                                    \
    kvc_error* e_ = NULL;                                                                 \
    kvc_error** err = &e_;                                                                \
    const kvc_code got_ = (call);                                                         \
    if (got_ != (want) || e_ == NULL || strcmp(kvc_error_status(e_), (status)) != 0 ||    \
        strstr(kvc_error_message(e_), (text)) == NULL) {                                  \
      fprintf(stderr, "%s:%d: %s: got %d %s \"%s\", want %d %s \"...%s...\"\n", __FILE__, \
              __LINE__, #call, (int)got_, e_ ? kvc_error_status(e_) : "-",                \
              e_ ? kvc_error_message(e_) : "(no error)", (int)(want), (status), (text));  \
      ++failures;                                                                         \
    }                                                                                     \
    kvc_error_free(e_);                                                                   \
    (void)err;                                                                            \
  } while (0)

/* The token, and its permissions-file line as `kvc-ctl auth hash-token ctl` prints it (the
 * SHA-256 of the value: printf %s TOKEN | sha256sum). */
#define TOKEN "capi-test-token-5b0e1f7c9a2d4e6f8a1b3c5d7e9f0a2b"
#define TOKEN_LINE "token ctl 2d6692cdb0917053c4a0f6cf7144826e4e306d448fccc024c36cec3c9292f4ad\n"

static void write_file(const char* path, const char* text, int mode) {
  FILE* f = fopen(path, "w");
  if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0 || chmod(path, (mode_t)mode) != 0) {
    perror(path);
    exit(1);
  }
}

/* A client of `address` with these options (name, value pairs, NULL-terminated); NULL when
 * kvc_client_open_with failed (reported). */
static kvc_client* open_with(const char* address, const char* const* settings) {
  kvc_client_options* o = kvc_client_options_new();
  CHECK(o != NULL);
  EXPECT_CODE(KVC_OK, kvc_client_options_set(o, "endpoints", address, err));
  EXPECT_CODE(KVC_OK, kvc_client_options_set(o, "timeout", "2s", err));
  for (; settings != NULL && settings[0] != NULL; settings += 2) {
    EXPECT_CODE(KVC_OK, kvc_client_options_set(o, settings[0], settings[1], err));
  }
  kvc_client* c = NULL;
  EXPECT_CODE(KVC_OK, kvc_client_open_with(o, &c, err));
  kvc_client_options_free(o);
  return c;
}

/* Tokens (kvc-permissions(5)): a member with a permissions file granting token `ctl` readwrite
 * on /app/; a client that sends the token is `ctl` and may write there only; an unknown token
 * and no token are refused with what the member says. */
static void tokens(const char* dir) {
  char data[256], perms[256], token_file[256], loose[256], peer[64], cluster[96];
  snprintf(data, sizeof data, "%s/t", dir);
  snprintf(perms, sizeof perms, "%s/permissions", dir);
  snprintf(token_file, sizeof token_file, "%s/ctl.token", dir);
  snprintf(loose, sizeof loose, "%s/loose.token", dir);
  snprintf(peer, sizeof peer, "127.0.0.1:%u", free_port());
  snprintf(cluster, sizeof cluster, "t=%s", peer);
  write_file(perms, TOKEN_LINE "grant ctl readwrite /app/\n", 0600);
  write_file(token_file, TOKEN "\n", 0600);
  write_file(loose, TOKEN "\n", 0644);
  kvc_engine_options* eo = kvc_engine_options_new();
  const char* const engine_settings[] = {
      "name",          "t",           "data-dir",         data,    "listen-peer",        peer,
      "listen-client", "127.0.0.1:0", "initial-cluster",  cluster, "permissions-file",   perms,
      "tick",          "10ms",        "election-timeout", "200ms", "heartbeat-interval", "20ms"};
  for (size_t i = 0; i < sizeof engine_settings / sizeof *engine_settings; i += 2) {
    EXPECT_CODE(KVC_OK,
                kvc_engine_options_set(eo, engine_settings[i], engine_settings[i + 1], err));
  }
  kvc_engine* engine = NULL;
  EXPECT_CODE(KVC_OK, kvc_engine_open(eo, &engine, err));
  kvc_engine_options_free(eo);
  if (engine == NULL) return;
  for (int i = 0; i < 1000 && !kvc_engine_is_ready(engine); ++i) sleep_ms(10);
  CHECK(kvc_engine_is_ready(engine));
  char address[64];
  kvc_engine_client_address(engine, address, sizeof address);

  /* Option errors: an unknown name is named; a bad duration; no endpoints; both token kinds. */
  kvc_client_options* o = kvc_client_options_new();
  EXPECT_REFUSED(KVC_USAGE, "invalid_argument", "unknown client option 'tokn'",
                 kvc_client_options_set(o, "tokn", TOKEN, err));
  EXPECT_REFUSED(KVC_USAGE, "invalid_argument", "timeout",
                 kvc_client_options_set(o, "timeout", "soon", err));
  EXPECT_CODE(KVC_USAGE, kvc_client_options_set(NULL, "token", TOKEN, err));
  kvc_client* c = (kvc_client*)1;
  EXPECT_REFUSED(KVC_USAGE, "invalid_argument", "no endpoints", kvc_client_open_with(o, &c, err));
  CHECK(c == NULL);
  EXPECT_CODE(KVC_OK, kvc_client_options_set(o, "endpoints", address, err));
  EXPECT_CODE(KVC_OK, kvc_client_options_set(o, "token", TOKEN, err));
  EXPECT_CODE(KVC_OK, kvc_client_options_set(o, "token-file", token_file, err));
  EXPECT_REFUSED(KVC_USAGE, "invalid_argument", "not both", kvc_client_open_with(o, &c, err));
  EXPECT_CODE(KVC_OK, kvc_client_options_set(o, "token", "", err));
  EXPECT_CODE(KVC_OK, kvc_client_options_set(o, "token-file", loose, err));
  EXPECT_REFUSED(KVC_ERROR, "invalid_argument", "token file", kvc_client_open_with(o, &c, err));
  EXPECT_REFUSED(KVC_ERROR, "invalid_argument", "chmod 600", kvc_client_open_with(o, &c, err));
  kvc_client_options_free(o);
  kvc_client_options_free(NULL);

  /* The token's identity may write under its grant; elsewhere the refusal names it. */
  const char* const with_token[] = {"token", TOKEN, NULL};
  const char* const with_file[] = {"token-file", token_file, NULL};
  const char* const* good[] = {with_token, with_file};
  for (int i = 0; i < 2; ++i) {
    kvc_client* ctl = open_with(address, good[i]);
    if (ctl == NULL) continue;
    uint64_t rev = 0;
    EXPECT_CODE(KVC_OK, kvc_set(kvc_client_db(ctl), "/app/k", 6, "v", 1, 0, &rev, err));
    CHECK(rev > 0);
    kvc_kv* kv = NULL;
    EXPECT_CODE(KVC_OK, kvc_get(kvc_client_db(ctl), "/app/k", 6, 0, &kv, err));
    CHECK(kv != NULL && kv->mod_revision == rev);
    kvc_kv_free(kv);
    EXPECT_REFUSED(KVC_ERROR, "permission_denied", "permission denied: ctl may not put /other",
                   kvc_set(kvc_client_db(ctl), "/other", 6, "v", 1, 0, NULL, err));
    kvc_client_close(ctl);
  }
  /* No token: anonymous, which the file grants nothing. */
  kvc_client* anon = open_with(address, NULL);
  if (anon != NULL) {
    EXPECT_REFUSED(KVC_ERROR, "permission_denied", "permission denied: anonymous may not put",
                   kvc_set(kvc_client_db(anon), "/app/k", 6, "v", 1, 0, NULL, err));
    kvc_client_close(anon);
  }
  /* A token the member does not know: the connection is refused, never taken as anonymous. */
  const char* const unknown[] = {"token", "not-a-token", NULL};
  kvc_client* stranger = open_with(address, unknown);
  if (stranger != NULL) {
    kvc_kv* kv = NULL;
    EXPECT_REFUSED(KVC_ERROR, "unauthenticated",
                   "refused the connection: unknown token: no token in this member's "
                   "--permissions-file has that value",
                   kvc_get(kvc_client_db(stranger), "/app/k", 6, 0, &kv, err));
    CHECK(kv == NULL);
    kvc_client_close(stranger);
  }
  EXPECT_CODE(KVC_OK, kvc_engine_close(engine, err));
}

int main(int argc, char** argv) {
  (void)argc;
  (void)argv;
  CHECK(strlen(kvc_version()) > 0);
  char dir[] = "/tmp/kvc-capi-XXXXXX";
  if (mkdtemp(dir) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  /* Option errors. */
  kvc_engine_options* o = kvc_engine_options_new();
  CHECK(o != NULL);
  EXPECT_CODE(KVC_USAGE, kvc_engine_options_set(o, "no-such-option", "1", err));
  EXPECT_CODE(KVC_USAGE, kvc_engine_options_set(o, "tick", "soon", err));
  EXPECT_CODE(KVC_USAGE, kvc_engine_options_set(NULL, "tick", "10ms", err));
  kvc_engine* engine = (kvc_engine*)1;
  EXPECT_CODE(KVC_ERROR, kvc_engine_open(o, &engine, err)); /* no name, no data dir */
  CHECK(engine == NULL);

  char data[256], peer[64], cluster[96];
  snprintf(data, sizeof data, "%s/a", dir);
  snprintf(peer, sizeof peer, "127.0.0.1:%u", free_port());
  snprintf(cluster, sizeof cluster, "a=%s", peer);
  EXPECT_CODE(KVC_OK, kvc_engine_options_set(o, "name", "a", err));
  EXPECT_CODE(KVC_OK, kvc_engine_options_set(o, "data-dir", data, err));
  EXPECT_CODE(KVC_OK, kvc_engine_options_set(o, "listen-peer", peer, err));
  EXPECT_CODE(KVC_OK, kvc_engine_options_set(o, "listen-client", "127.0.0.1:0", err));
  EXPECT_CODE(KVC_OK, kvc_engine_options_set(o, "initial-cluster", cluster, err));
  EXPECT_CODE(KVC_OK, kvc_engine_options_set(o, "tick", "10ms", err));
  EXPECT_CODE(KVC_OK, kvc_engine_options_set(o, "election-timeout", "200ms", err));
  EXPECT_CODE(KVC_OK, kvc_engine_options_set(o, "heartbeat-interval", "20ms", err));
  EXPECT_CODE(KVC_OK, kvc_engine_open(o, &engine, err));
  kvc_engine_options_free(o);
  if (engine == NULL) return 1;
  for (int i = 0; i < 1000 && !kvc_engine_is_ready(engine); ++i) sleep_ms(10);
  CHECK(kvc_engine_is_ready(engine));
  CHECK(kvc_engine_id(engine) != 0);
  char name[8];
  CHECK(kvc_engine_leader(engine, name, sizeof name) == kvc_engine_id(engine));
  CHECK(strcmp(name, "a") == 0);
  struct leader_seen l;
  memset(&l, 0, sizeof l);
  pthread_mutex_init(&l.mu, NULL);
  kvc_engine_on_leader_change(engine, on_leader, &l);
  pthread_mutex_lock(&l.mu);
  CHECK(l.calls >= 1 && l.leader == kvc_engine_id(engine) && l.leads == 1);
  pthread_mutex_unlock(&l.mu);
  kvc_engine_on_leader_change(engine, NULL, NULL);

  exercise(kvc_engine_db(engine), "/embedded");

  char address[64];
  kvc_engine_client_address(engine, address, sizeof address);
  CHECK(strncmp(address, "127.0.0.1:", 10) == 0);
  kvc_client* client = (kvc_client*)1;
  EXPECT_CODE(KVC_USAGE, kvc_client_open("not an endpoint list", NULL, 0, &client, err));
  CHECK(client == NULL);
  /* TLS: certificates are needed, and a CA file that does not exist is named. */
  EXPECT_CODE(KVC_USAGE, kvc_client_open_tls(address, NULL, NULL, NULL, 0, &client, err));
  CHECK(client == NULL);
  CHECK(kvc_client_open_tls(address, "/nonexistent/ca.pem", NULL, NULL, 0, &client, NULL) !=
        KVC_OK);
  CHECK(client == NULL);
  EXPECT_CODE(KVC_OK, kvc_client_open(address, NULL, 5000, &client, err));
  if (client != NULL) {
    exercise(kvc_client_db(client), "/remote");
    /* What one wrote the other reads. */
    kvc_kv* kv = NULL;
    EXPECT_CODE(KVC_OK, kvc_get(kvc_engine_db(engine), "/remote/a", 9, 0, &kv, err));
    CHECK(kv != NULL && kv->value_len == 4 && memcmp(kv->value, "four", 4) == 0);
    kvc_kv_free(kv);
    /* A watch left open is ended by the close. */
    struct seen s;
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.mu, NULL);
    uint64_t w = 0;
    EXPECT_CODE(KVC_OK, kvc_watch(kvc_client_db(client), "/x", 2, 0, 0, on_event, &s, &w, err));
    kvc_client_close(client);
    pthread_mutex_destroy(&s.mu);
  }
  /* NULL handles are usage errors, never crashes. */
  EXPECT_CODE(KVC_USAGE, kvc_set(NULL, "k", 1, "v", 1, 0, NULL, err));
  EXPECT_CODE(KVC_USAGE, kvc_get(NULL, "k", 1, 0, NULL, err));
  kvc_kv_free(NULL);
  kvc_kv_list_free(NULL);
  kvc_error_free(NULL);
  {
    /* A watch left open on the engine is ended by its close. */
    struct seen s;
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.mu, NULL);
    uint64_t w = 0;
    EXPECT_CODE(KVC_OK, kvc_watch(kvc_engine_db(engine), "/y", 2, 0, 0, on_event, &s, &w, err));
    EXPECT_CODE(KVC_OK, kvc_engine_close(engine, err));
    pthread_mutex_destroy(&s.mu);
  }
  pthread_mutex_destroy(&l.mu);
  tokens(dir);
  char rm[300];
  snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
  if (system(rm) != 0) fprintf(stderr, "could not remove %s\n", dir);
  if (failures > 0) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("all checks passed\n");
  return 0;
}
