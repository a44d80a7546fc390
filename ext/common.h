/*
** common.h - what every engine module shares: result codes, the error
** report, value types, limits, the allocation hook and refcounted values.
**
** The engine (store, log, index, cache, lock, io) never includes sqlite3.h.
** Value types use the same numbers as SQLite's fundamental datatypes so
** that the SQL layer can pass them through unchanged.
*/
#ifndef PM_COMMON_H
#define PM_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* ---- Result codes -------------------------------------------------------
** Every fallible engine function returns one of these and, when it is not
** PM_OK or PM_NOTFOUND, fills the caller's pm_err (if not NULL) with a
** one-line lowercase message naming the offending file, offset or value.
*/
enum {
  PM_OK = 0,
  PM_NOTFOUND,    /* not an error: the key is absent */
  PM_ERROR,       /* generic error, see message */
  PM_NOMEM,       /* allocation failed */
  PM_IOERR,       /* a read, write, fsync or other file call failed */
  PM_FULL,        /* the disk is full (ENOSPC, EDQUOT) */
  PM_CORRUPT,     /* damage inside durable data; see pm_store_recover() */
  PM_BUSY,        /* another writer holds the store */
  PM_READONLY,    /* read-only store, or a store stopped by an earlier error */
  PM_CANTOPEN,    /* the directory is missing or is not a persistmap store */
  PM_TOOBIG,      /* key or value larger than the limits below */
  PM_CONSTRAINT,  /* plain insert of a key that exists */
  PM_MISUSE,      /* the API was called wrongly */
  PM_TIMEOUT      /* pm_store_sync() ran out of time */
};

typedef struct pm_err {
  int code;           /* one of the codes above */
  int sys_errno;      /* errno of the failed system call, or 0 */
  char msg[320];      /* lowercase, no "persistmap: " prefix, no newline */
} pm_err;

/* Fill err (if not NULL) and return code. fmt is printf-style. */
int pm_err_set(pm_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Like pm_err_set, for a failed system call: maps errno (ENOSPC/EDQUOT to
** PM_FULL, everything else to PM_IOERR) and appends strerror(errno). */
int pm_err_sys(pm_err *err, int sys_errno, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Reset to PM_OK with an empty message. */
void pm_err_clear(pm_err *err);
/* Short name of a code ("ioerr", "corrupt", ...), for stats and tests. */
const char *pm_code_name(int code);

/* ---- Types and limits ---------------------------------------------------- */
enum {
  PM_INTEGER = 1, /* 8 bytes, little-endian two's complement */
  PM_REAL = 2,    /* 8 bytes, little-endian IEEE-754 bits (bit-exact, -0.0 kept) */
  PM_TEXT = 3,    /* UTF-8 bytes, no terminator */
  PM_BLOB = 4,    /* bytes */
  PM_NULL = 5     /* 0 bytes; a value only, never a key */
};

#define PM_MAX_KEY   65536u        /* bytes in a key (64 KiB) */
#define PM_MAX_VALUE 1000000000u   /* bytes in a value */

/* A key as the engine sees it: a type tag and bytes. Two keys are the same
** key when type, length and bytes are equal (the SQL layer normalizes
** REAL keys with an integral value to PM_INTEGER before they get here). */
typedef struct pm_key {
  uint8_t type;          /* PM_INTEGER, PM_REAL, PM_TEXT or PM_BLOB */
  uint32_t len;          /* 0..PM_MAX_KEY */
  const uint8_t *data;
} pm_key;

/* Build an integer key; buf must hold 8 bytes and outlive the key. */
pm_key pm_key_int(int64_t v, uint8_t buf[8]);

/* ---- Allocation hook -----------------------------------------------------
** Every allocation of the engine goes through pm_malloc/pm_realloc/pm_free,
** so an embedding application can supply its own and tests can make the
** Nth allocation fail. pm_set_allocator(NULL) restores the C library. */
typedef struct pm_allocator {
  void *(*xMalloc)(size_t n);
  void *(*xRealloc)(void *p, size_t n);
  void (*xFree)(void *p);
} pm_allocator;

void pm_set_allocator(const pm_allocator *a);
void *pm_malloc(size_t n);               /* NULL on failure (also for n == 0 returns a valid pointer) */
void *pm_calloc(size_t n, size_t size);  /* zeroed; NULL on overflow or failure */
void *pm_realloc(void *p, size_t n);     /* NULL on failure, p untouched */
void pm_free(void *p);                   /* NULL is fine */
char *pm_strdup(const char *s);
char *pm_sprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- Values -------------------------------------------------------------
** A value read from the store is an immutable, reference-counted buffer, so
** the cache and any number of readers can share it without copying and no
** reader can corrupt what another sees. Create with pm_value_new(), fill
** data[] before publishing it, then only read. The count is atomic. */
typedef struct pm_value {
  uint32_t refs;        /* atomic; the value is freed when it drops to 0 */
  uint8_t type;         /* PM_INTEGER..PM_NULL */
  uint32_t len;         /* bytes in data[] */
  uint8_t data[];       /* len bytes, then one 0 byte (handy for text) */
} pm_value;

pm_value *pm_value_new(uint8_t type, uint32_t len);   /* refs = 1; NULL on OOM */
pm_value *pm_value_ref(pm_value *v);                 /* +1, returns v */
void pm_value_unref(pm_value *v);                    /* -1, frees at 0; NULL is fine */
/* Bytes a value costs in memory (header, data, allocator rounding). */
size_t pm_value_footprint(const pm_value *v);

/* ---- Little helpers used across modules --------------------------------- */
static inline void pm_put_u32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline uint32_t pm_get_u32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void pm_put_u64(uint8_t *p, uint64_t v) {
  pm_put_u32(p, (uint32_t)v); pm_put_u32(p + 4, (uint32_t)(v >> 32));
}
static inline uint64_t pm_get_u64(const uint8_t *p) {
  return (uint64_t)pm_get_u32(p) | (uint64_t)pm_get_u32(p + 4) << 32;
}

/* Monotonic clock in nanoseconds and wall clock in milliseconds. */
uint64_t pm_now_ns(void);
uint64_t pm_wall_ms(void);

#endif /* PM_COMMON_H */
