/* A C program that uses a kvc cluster through the C interface (kvc/kvc.h): it writes a key,
 * reads it back, replaces it only if nobody changed it in between (compare-and-set), lists the
 * keys under a prefix page by page, and deletes what it wrote. What a shell script does with
 * kvc-ctl, from C.
 *
 * Build against an installed kvc (docs/library.md):
 *   cc -std=c11 main.c $(pkg-config --cflags --libs kvc) -o c-client
 * or with CMake (examples/CMakeLists.txt, find_package(kvc)); run against any cluster:
 *   c-client 127.0.0.1:2379 [SECRET_FILE]
 * With KVC_TOKEN set, as kvc-ctl takes it, the client sends that token (kvc-permissions(5)).
 * Exit status: 0, or the kvc_code of the call that failed (kvc-ctl(1), EXIT STATUS). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvc/kvc.h"

/* Prints what failed and returns its code (the error is freed). */
static int fail(const char* what, kvc_code code, kvc_error* err) {
  fprintf(stderr, "c-client: %s: %s\n", what, err ? kvc_error_message(err) : "failed");
  kvc_error_free(err);
  return (int)code;
}

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: c-client ENDPOINTS [SECRET_FILE]\n");
    return 2;
  }
  printf("libkvc %s\n", kvc_version());
  kvc_error* err = NULL;
  kvc_client* client = NULL;
  /* Settings by kvc-ctl's flag names: an unknown name fails here, naming it. */
  kvc_client_options* options = kvc_client_options_new();
  if (options == NULL) return fail("open", KVC_ERROR, NULL);
  const char* token = getenv("KVC_TOKEN");
  kvc_code rc = kvc_client_options_set(options, "endpoints", argv[1], &err);
  if (rc == KVC_OK && argc == 3) rc = kvc_client_options_set(options, "secret-file", argv[2], &err);
  if (rc == KVC_OK && token != NULL) rc = kvc_client_options_set(options, "token", token, &err);
  if (rc == KVC_OK) rc = kvc_client_options_set(options, "timeout", "5s", &err);
  if (rc == KVC_OK) rc = kvc_client_open_with(options, &client, &err);
  kvc_client_options_free(options); /* zeroes its copy of the token */
  if (rc != KVC_OK) return fail("open", rc, err);
  kvc_db* db = kvc_client_db(client);

  static const char key[] = "/example/c-client/greeting";
  uint64_t revision = 0;
  rc = kvc_set(db, key, strlen(key), "hello", 5, 0, &revision, &err);
  if (rc != KVC_OK) return fail("set", rc, err);
  printf("set %s = hello at revision %llu\n", key, (unsigned long long)revision);

  kvc_kv* kv = NULL;
  rc = kvc_get(db, key, strlen(key), 0, &kv, &err);
  if (rc != KVC_OK) return fail("get", rc, err);
  printf("get %s = %.*s (mod revision %llu)\n", key, (int)kv->value_len, kv->value,
         (unsigned long long)kv->mod_revision);

  /* Replace it only if it is still the version just read. */
  rc = kvc_cas(db, key, strlen(key), "hello again", 11, kv->mod_revision, &revision, &err);
  kvc_kv_free(kv);
  if (rc != KVC_OK) return fail("cas", rc, err);
  printf("cas %s = hello again at revision %llu\n", key, (unsigned long long)revision);
  /* The same compare again fails: the key has moved on. */
  rc = kvc_cas(db, key, strlen(key), "stale", 5, 1, NULL, &err);
  if (rc != KVC_COMPARE_FAILED) return fail("cas with a stale revision", rc, err);
  kvc_error_free(err);
  err = NULL;
  printf("cas with a stale revision: refused, as it should be\n");

  /* Every key under the prefix, two per page. */
  static const char prefix[] = "/example/";
  char after[256] = "";
  size_t after_len = 0;
  int more = 1;
  while (more) {
    kvc_kv_list* page = NULL;
    rc = kvc_list(db, prefix, strlen(prefix), after_len ? after : NULL, after_len, 2, 0, &page,
                  &err);
    if (rc != KVC_OK) return fail("list", rc, err);
    for (size_t i = 0; i < page->count; ++i) {
      printf("list %.*s\n", (int)page->items[i].key_len, page->items[i].key);
    }
    more = page->more && page->count > 0;
    if (more) {
      const kvc_kv* last = &page->items[page->count - 1];
      after_len = last->key_len < sizeof after ? last->key_len : sizeof after;
      memcpy(after, last->key, after_len);
    }
    kvc_kv_list_free(page);
  }

  rc = kvc_delete(db, key, strlen(key), 0, &err);
  if (rc != KVC_OK) return fail("delete", rc, err);
  printf("deleted %s\n", key);
  kvc_client_close(client);
  return 0;
}
