/* kvc.h: the C interface of libkvc, for programs in C and for other languages' bindings (cgo,
 * ctypes). It offers what kvc::server::Engine and kvc::client::Kv offer C++: a member of a
 * cluster embedded in the calling process (kvc_engine), or a client of a cluster over the
 * network (kvc_client), and the same key-value calls on either through a kvc_db handle.
 *
 * Errors. A call that can fail returns a kvc_code: KVC_OK, or the exit-code contract of the
 * kvc binaries (kvc-ctl(1), "EXIT STATUS"): KVC_ERROR (nothing applied), KVC_NOT_FOUND,
 * KVC_COMPARE_FAILED, KVC_UNAVAILABLE (nothing applied), KVC_TIMEOUT (outcome unknown);
 * KVC_USAGE for a bad argument to the call itself (a NULL handle, an unknown option name). Each
 * such call also takes `kvc_error** err`: when it is not NULL and the call fails, *err receives
 * an error (its code and a message naming what failed) that the caller frees with
 * kvc_error_free. No C++ exception crosses this interface.
 *
 * Memory. Strings passed in are read during the call only; keys and values are byte arrays with
 * an explicit length (they may hold NUL). What a call returns through an out-pointer belongs to
 * the caller, who frees it with the matching kvc_*_free (each accepts NULL). Data handed to a
 * callback is valid during the callback only.
 *
 * Threads. Every call is safe from any thread, except that blocking calls must not be made from
 * inside a callback (callbacks run on the engine's or client's own thread); a callback must
 * return quickly. A handle must not be used after it was closed.
 */
#ifndef KVC_KVC_H
#define KVC_KVC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kvc_code {
  KVC_OK = 0,
  KVC_ERROR = 1,          /* failed; nothing applied */
  KVC_USAGE = 2,          /* a bad argument to the call (NULL handle, unknown option) */
  KVC_NOT_FOUND = 3,      /* the key, lease or member does not exist */
  KVC_COMPARE_FAILED = 4, /* a compare-and-set or compare-and-delete saw another revision */
  KVC_UNAVAILABLE = 5,    /* no leader, no quorum, shutting down: nothing applied */
  KVC_TIMEOUT = 6         /* the deadline passed after the request was sent: outcome unknown */
} kvc_code;

typedef struct kvc_error kvc_error;
kvc_code kvc_error_code(const kvc_error* err);
const char* kvc_error_message(const kvc_error* err); /* valid until kvc_error_free */
/* The status behind the error, named as kvc's logs and HTTP answers name it: finer than the
 * code, e.g. KVC_ERROR is "permission_denied" (the identity may not do this), "unauthenticated"
 * (the member does not know the token), "failed_precondition", "invalid_argument", ... ("ok"
 * for NULL). Valid until kvc_error_free. */
const char* kvc_error_status(const kvc_error* err);
void kvc_error_free(kvc_error* err);

/* The library's version, "MAJOR.MINOR.PATCH (commit)". Static storage. */
const char* kvc_version(void);

/* A key-value as the cluster stores it. */
typedef struct kvc_kv {
  const char* key;
  size_t key_len;
  const char* value;
  size_t value_len;
  uint64_t create_revision;
  uint64_t mod_revision;
  uint64_t version;
  uint64_t lease; /* the lease the key is attached to, 0: none */
} kvc_kv;
void kvc_kv_free(kvc_kv* kv);

typedef struct kvc_kv_list {
  kvc_kv* items;
  size_t count;
  int more; /* kvc_list: keys remain after the last one (ask again from it) */
} kvc_kv_list;
void kvc_kv_list_free(kvc_kv_list* list);

/* --- The key-value calls, on an embedded member or a remote cluster ------------------------ */

typedef struct kvc_db kvc_db;

/* KVC_OK with *out set (free it with kvc_kv_free), or KVC_NOT_FOUND with *out NULL. A read is
 * linearizable unless `serializable` is nonzero (the answering member's state, no quorum
 * round). */
kvc_code kvc_get(kvc_db* db, const char* key, size_t key_len, int serializable, kvc_kv** out,
                 kvc_error** err);
/* Writes the value (attached to `lease` unless it is 0); *revision (when not NULL) receives the
 * write's revision. */
kvc_code kvc_set(kvc_db* db, const char* key, size_t key_len, const char* value, size_t value_len,
                 uint64_t lease, uint64_t* revision, kvc_error** err);
/* Deletes the key: KVC_NOT_FOUND when it did not exist. With `expect_revision` nonzero, only
 * when that is its mod revision (KVC_COMPARE_FAILED otherwise). */
kvc_code kvc_delete(kvc_db* db, const char* key, size_t key_len, uint64_t expect_revision,
                    kvc_error** err);
/* Writes only if the key's mod revision is `expect_revision` (0: the key must not exist);
 * KVC_COMPARE_FAILED otherwise. */
kvc_code kvc_cas(kvc_db* db, const char* key, size_t key_len, const char* value, size_t value_len,
                 uint64_t expect_revision, uint64_t* revision, kvc_error** err);
/* One page of the keys under `prefix`, in order, after the key `after` (NULL: from the first),
 * at most `limit` (0: the member's page size). *out is set (free with kvc_kv_list_free);
 * out->more says whether to ask again with `after` = the last key. */
kvc_code kvc_list(kvc_db* db, const char* prefix, size_t prefix_len, const char* after,
                  size_t after_len, uint64_t limit, int serializable, kvc_kv_list** out,
                  kvc_error** err);

/* Leases (kvc-ctl(1), "lease"): *id receives the new lease's id. */
kvc_code kvc_lease_grant(kvc_db* db, uint64_t ttl_seconds, uint64_t* id, kvc_error** err);
kvc_code kvc_lease_keep_alive(kvc_db* db, uint64_t id, kvc_error** err);
kvc_code kvc_lease_revoke(kvc_db* db, uint64_t id, kvc_error** err);

/* Watches: `callback` runs for each change of `key` (every key under it when `prefix` is
 * nonzero) from `start_revision` on (0: from now), on the engine's or client's thread, with
 * `type` KVC_EVENT_PUT or KVC_EVENT_DELETE and the key-value after the change (a delete: key and
 * mod_revision only). When the watch ends by itself (the history it needs was compacted, the
 * member stops) the callback runs once more with type KVC_EVENT_END and kv NULL. *watch_id
 * receives the id for kvc_unwatch. */
typedef enum kvc_event_type {
  KVC_EVENT_PUT = 1,
  KVC_EVENT_DELETE = 2,
  KVC_EVENT_END = 3
} kvc_event_type;
typedef void (*kvc_watch_fn)(void* ctx, kvc_event_type type, const kvc_kv* kv);
kvc_code kvc_watch(kvc_db* db, const char* key, size_t key_len, int prefix, uint64_t start_revision,
                   kvc_watch_fn callback, void* ctx, uint64_t* watch_id, kvc_error** err);
/* Stops a watch; when it returns the callback is not running and will not run again. Never
 * from inside the callback. Unknown ids are ignored. */
void kvc_unwatch(kvc_db* db, uint64_t watch_id);

/* --- An embedded member -------------------------------------------------------------------- */

typedef struct kvc_engine kvc_engine;

/* Options are kvc-node's settings by their flag names without the dashes (kvc-node(1)):
 * "name", "data-dir", "listen-peer", "listen-client", "listen-http", "advertise-client",
 * "initial-cluster", "initial-cluster-state", "cluster-token", "secret-file",
 * "permissions-file", "http-open-paths", and the durations "tick", "election-timeout",
 * "heartbeat-interval", "request-timeout" ("100ms", "1s"). */
typedef struct kvc_engine_options kvc_engine_options;
kvc_engine_options* kvc_engine_options_new(void);
kvc_code kvc_engine_options_set(kvc_engine_options* options, const char* name, const char* value,
                                kvc_error** err);
void kvc_engine_options_free(kvc_engine_options* options);

/* Opens the data directory, recovers, binds the listeners and starts the member's threads;
 * returns once it runs (it may not know a leader yet: kvc_engine_is_ready). */
kvc_code kvc_engine_open(const kvc_engine_options* options, kvc_engine** out, kvc_error** err);
/* Stops the member (flushes the state, syncs the WAL) and frees the handle, its kvc_db and
 * its watches. NULL is ignored. */
kvc_code kvc_engine_close(kvc_engine* engine, kvc_error** err);
/* The handle's kvc_db; valid until kvc_engine_close. */
kvc_db* kvc_engine_db(kvc_engine* engine);
uint64_t kvc_engine_id(const kvc_engine* engine);
/* Nonzero once the member knows a leader and has applied what was committed when it learned of
 * it. */
int kvc_engine_is_ready(const kvc_engine* engine);
/* The leader's member id (0: none known); its name is copied into `name` (NUL-terminated,
 * truncated to `name_size`) when `name` is not NULL. */
uint64_t kvc_engine_leader(const kvc_engine* engine, char* name, size_t name_size);
/* `callback` runs on the member's thread whenever the leader changes (leader_id 0: none known),
 * and once soon after registration when a leader is known. One callback per engine: a second
 * call replaces the first (NULL removes it). */
typedef void (*kvc_leader_fn)(void* ctx, uint64_t leader_id, int this_member_leads);
void kvc_engine_on_leader_change(kvc_engine* engine, kvc_leader_fn callback, void* ctx);
/* The addresses the listeners are bound to (useful with port 0), NUL-terminated into `buf`. */
void kvc_engine_client_address(const kvc_engine* engine, char* buf, size_t size);

/* --- A client of a remote cluster ---------------------------------------------------------- */

typedef struct kvc_client kvc_client;

/* Options are kvc-ctl's flag names without the dashes (kvc-ctl(1)), so new settings need no
 * new open function: "endpoints" ("HOST:PORT,HOST:PORT", required), "secret-file" (the cluster's
 * secret file), "cacert", "cert", "key" (TLS certificates, as kvc_client_open_tls takes them),
 * "token" (a named token of the members' permissions file, sent in the hello: the identity
 * this client's requests are checked as; kvc-permissions(5)), "token-file" (a file holding
 * the token: mode 600, one trailing newline stripped, read at open) and "timeout" (each call's
 * deadline, "500ms", "5s"; default 5s). Setting one again replaces it; "" unsets it. The token
 * is zeroed in the options' memory when it is replaced and when the options are freed. */
typedef struct kvc_client_options kvc_client_options;
kvc_client_options* kvc_client_options_new(void);
kvc_code kvc_client_options_set(kvc_client_options* options, const char* name, const char* value,
                                kvc_error** err);
void kvc_client_options_free(kvc_client_options* options);
/* Opens a client with these options (they may be freed or reused after the call). Connections
 * are made on first use: an unknown token is refused at the first call (KVC_ERROR, status
 * "unauthenticated"), not here. */
kvc_code kvc_client_open_with(const kvc_client_options* options, kvc_client** out, kvc_error** err);

/* The same as options "endpoints", "secret-file" (NULL: none) and "timeout" in milliseconds
 * (0: 5000). */
kvc_code kvc_client_open(const char* endpoints, const char* secret_file, uint64_t timeout_ms,
                         kvc_client** out, kvc_error** err);
/* With TLS certificates (kvc-ctl --cacert, --cert, --key; docs/security.md): `cacert`
 * verifies the members' certificates (NULL: the system's roots), `cert` and `key` are this
 * client's, for members with --client-cert-auth (both or neither). A secret file and
 * certificates do not go together. */
kvc_code kvc_client_open_tls(const char* endpoints, const char* cacert, const char* cert,
                             const char* key, uint64_t timeout_ms, kvc_client** out,
                             kvc_error** err);
/* Ends every watch and frees the handle. NULL is ignored. */
void kvc_client_close(kvc_client* client);
kvc_db* kvc_client_db(kvc_client* client);

#ifdef __cplusplus
}
#endif

#endif /* KVC_KVC_H */
