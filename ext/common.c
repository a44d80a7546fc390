/*
** common.c - error reports, the allocation hook, refcounted values, clocks.
*/
#include "common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- Errors -------------------------------------------------------------- */

static int err_vset(pm_err *err, int code, int sys_errno, const char *fmt, va_list ap) {
  if (!err) return code;
  err->code = code;
  err->sys_errno = sys_errno;
  int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  if (n < 0) err->msg[0] = 0;
  if (sys_errno && n >= 0 && (size_t)n < sizeof err->msg) {
    snprintf(err->msg + n, sizeof err->msg - (size_t)n, ": %s", strerror(sys_errno));
  }
  return code;
}

int pm_err_set(pm_err *err, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  err_vset(err, code, 0, fmt, ap);
  va_end(ap);
  return code;
}

int pm_err_sys(pm_err *err, int sys_errno, const char *fmt, ...) {
  int code = (sys_errno == ENOSPC || sys_errno == EDQUOT) ? PM_FULL
           : (sys_errno == ENOMEM) ? PM_NOMEM : PM_IOERR;
  va_list ap;
  va_start(ap, fmt);
  err_vset(err, code, sys_errno, fmt, ap);
  va_end(ap);
  return code;
}

void pm_err_clear(pm_err *err) {
  if (!err) return;
  err->code = PM_OK;
  err->sys_errno = 0;
  err->msg[0] = 0;
}

const char *pm_code_name(int code) {
  static const char *names[] = {
    "ok", "notfound", "error", "nomem", "ioerr", "full", "corrupt", "busy",
    "readonly", "cantopen", "toobig", "constraint", "misuse", "timeout"
  };
  if (code < 0 || (size_t)code >= sizeof names / sizeof names[0]) return "unknown";
  return names[code];
}

pm_key pm_key_int(int64_t v, uint8_t buf[8]) {
  pm_put_u64(buf, (uint64_t)v);
  pm_key k = { PM_INTEGER, 8, buf };
  return k;
}

/* ---- Allocation ----------------------------------------------------------- */

static void *libc_malloc(size_t n) { return malloc(n ? n : 1); }
static void *libc_realloc(void *p, size_t n) { return realloc(p, n ? n : 1); }
static void libc_free(void *p) { free(p); }

static const pm_allocator libc_allocator = { libc_malloc, libc_realloc, libc_free };
static const pm_allocator *allocator = &libc_allocator;

/* Every connection's entry point sets it (to the same table) while other
** threads allocate: an atomic pointer. */
static const pm_allocator *cur_allocator(void) { return __atomic_load_n(&allocator, __ATOMIC_ACQUIRE); }

void pm_set_allocator(const pm_allocator *a) {
  __atomic_store_n(&allocator, a ? a : &libc_allocator, __ATOMIC_RELEASE);
}

void *pm_malloc(size_t n) { return cur_allocator()->xMalloc(n ? n : 1); }

void *pm_calloc(size_t n, size_t size) {
  if (size && n > SIZE_MAX / size) return NULL;
  void *p = pm_malloc(n * size);
  if (p) memset(p, 0, n * size);
  return p;
}

void *pm_realloc(void *p, size_t n) {
  if (!p) return pm_malloc(n);
  return cur_allocator()->xRealloc(p, n ? n : 1);
}

void pm_free(void *p) {
  if (p) cur_allocator()->xFree(p);
}

char *pm_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = pm_malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

char *pm_sprintf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return NULL;
  char *s = pm_malloc((size_t)n + 1);
  if (!s) return NULL;
  va_start(ap, fmt);
  vsnprintf(s, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return s;
}

/* ---- Values --------------------------------------------------------------- */

pm_value *pm_value_new(uint8_t type, uint32_t len) {
  pm_value *v = pm_malloc(sizeof(pm_value) + (size_t)len + 1);
  if (!v) return NULL;
  v->refs = 1;
  v->type = type;
  v->len = len;
  v->data[len] = 0;
  return v;
}

pm_value *pm_value_ref(pm_value *v) {
  __atomic_add_fetch(&v->refs, 1, __ATOMIC_RELAXED);
  return v;
}

void pm_value_unref(pm_value *v) {
  if (v && __atomic_sub_fetch(&v->refs, 1, __ATOMIC_ACQ_REL) == 0) pm_free(v);
}

size_t pm_value_footprint(const pm_value *v) {
  /* Round to the allocator's 16-byte granule plus its 8-byte header. */
  size_t n = sizeof(pm_value) + (size_t)v->len + 1 + 8;
  return (n + 15) & ~(size_t)15;
}

/* ---- Clocks --------------------------------------------------------------- */

uint64_t pm_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t pm_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
