/*
** log.h - the write-ahead log: a manifest naming the store and its current
** segments, append-only segment files of checksummed records, fsync with
** group commit, and the scanner that recovery and catch-up replay.
**
** On disk (byte layouts in the README, all integers little-endian):
**
**   MANIFEST       magic, format version, store id, hash seed, store-level
**                  options, high-water marks, the current segment numbers and
**                  the creator; rewritten whole (temp file, fsync, rename,
**                  directory fsync), so it is always either the old or the
**                  new one. XXH3-64 checksum.
**   NNNNNN.log     a segment: a 64-byte header (magic, version, store id,
**                  segment number, checksum) then records, each padded to 8
**                  bytes. Every record has a 32-byte header: an XXH3-64
**                  checksum (seeded by the store seed and the segment number,
**                  so a record never validates in another store or segment)
**                  over the rest of the header, the key and the value; the
**                  record type (put, delete, commit, abort); key and value
**                  types and lengths; a sequence number.
**
** A transaction is written as one group: its put and delete records, then a
** commit record stating how many records and bytes the group has and how far
** the segment was known to be fsynced when it was written. An abort record
** right after a commit record cancels that group (SQLite's xRollback after
** xSync). Recovery applies whole groups only.
**
** Torn tail or corruption: a segment that is not the last one was fsynced
** before the next one was created, so any damage in it is corruption. In the
** last segment, damage at offset X is corruption when the log is known to
** have been durable beyond X (a commit record anywhere in the segment, or
** the shared-memory file, says so); otherwise it is a torn tail, ignored and
** cut off at the last whole group by the next writer.
**
** Thread safety: appends, roll-over and repairs are made by the one writer
** that holds the store's writer lock. pm_log_read and pm_log_sync may be
** called from any thread at any time.
*/
#ifndef PM_LOG_H
#define PM_LOG_H

#include <pthread.h>
#include "common.h"
#include "io.h"

#define PM_FORMAT_VERSION 1
#define PM_SEG_HEADER 64u
#define PM_REC_HEADER 32u

enum { PM_REC_PUT = 1, PM_REC_DEL = 2, PM_REC_COMMIT = 3, PM_REC_ABORT = 4 };

/* A position in the log: a segment number and a byte offset in it. */
typedef struct pm_pos {
  uint32_t seg;
  uint64_t off;
} pm_pos;

static inline int pm_pos_cmp(pm_pos a, pm_pos b) {
  if (a.seg != b.seg) return a.seg < b.seg ? -1 : 1;
  return a.off < b.off ? -1 : a.off > b.off;
}

/* ---- Manifest ------------------------------------------------------------ */
typedef struct pm_manifest {
  uint8_t store_id[16];
  uint64_t seed;              /* seeds the index hash and record checksums */
  uint64_t gen;               /* bumped at every rewrite */
  uint64_t segment_size;
  double auto_shrink;
  uint64_t auto_shrink_min;
  uint64_t seq_hw;            /* every seq below this was used */
  int64_t int_hw;             /* highest integer key ever committed ... */
  int has_int_hw;             /* ... if any */
  uint32_t next_segment;      /* segment numbers are never reused */
  uint32_t active;            /* the segment appended to (a compaction's
                                 output may have higher numbers) */
  uint32_t nsegs;
  uint32_t *segs;             /* ascending */
  char *creator;
} pm_manifest;

#define PM_MANIFEST_NAME "MANIFEST"

/* Read dir/MANIFEST. PM_NOTFOUND if there is none, PM_CORRUPT if it does not
** parse or its checksum fails. */
int pm_manifest_read(const pm_io *io, const char *dir, pm_manifest *m, pm_err *err);
/* Write m atomically (temp file, fsync, rename, directory fsync); bumps gen.
** renamed (may be NULL) is set when the new file took the old one's name: a
** failure after that leaves either manifest to a crash, so the caller must
** keep every file both name. */
int pm_manifest_write(const pm_io *io, const char *dir, pm_manifest *m, int *renamed, pm_err *err);
void pm_manifest_clear(pm_manifest *m);
/* Copy src into dst (deep). */
int pm_manifest_copy(pm_manifest *dst, const pm_manifest *src);

/* ---- Records ------------------------------------------------------------- */
/* A record as the scanner reports it. key points into scanner memory valid
** for the callback only; the value is not read. */
typedef struct pm_rec {
  uint8_t type, ktype, vtype;
  uint32_t klen, vlen;
  uint64_t seq;
  pm_pos at;                  /* where the record starts */
  const uint8_t *key;
} pm_rec;

/* Bytes a record of klen/vlen takes on disk (header, key, value, padding). */
static inline uint64_t pm_rec_size(uint32_t klen, uint32_t vlen) {
  return ((uint64_t)PM_REC_HEADER + klen + vlen + 7u) & ~(uint64_t)7u;
}

/* ---- The log ------------------------------------------------------------- */
typedef struct pm_segfile {
  uint32_t num;
  int fd;
  uint64_t size;              /* bytes known to be in the file */
  int retired;                /* compacted away: kept open for readers only */
  int hinted;                 /* its hint file is known to be good */
  uint64_t records;           /* records in it, as far as this process read or wrote */
  int output;                 /* written by a compaction, not part of the
                                 append chain (segment header byte 36) */
} pm_segfile;

typedef struct pm_log {
  const pm_io *io;
  char *dir;
  int readonly;
  pm_manifest man;

  pthread_mutex_t num_mu;     /* guards man.next_segment (compaction allocates too) */

  /* Segment table: readers look up fds under segs_lock (read). Scans work
  ** on copies of its entries; while any runs (scanning, atomic), retired
  ** segments stay open, so that no descriptor a scan holds is closed. */
  pthread_rwlock_t segs_lock;
  pm_segfile *files;
  uint32_t nfiles;
  int scanning;

  /* Writer state (under the store's writer lock). */
  pm_pos end;                 /* where the next record goes */
  uint8_t *wbuf;              /* records encoded but not yet written */
  size_t wlen, wcap;
  pm_pos wstart;              /* where wbuf[0] goes */
  int failed;                 /* sticky error code after a failed write/fsync */
  char failmsg[320];

  /* Durability (under sync_mu). */
  pthread_mutex_t sync_mu;
  pthread_cond_t sync_cv;
  int syncing;                /* a thread is in fsync now */
  pm_pos written;             /* everything before this reached write() */
  pm_pos durable;             /* everything before this is fsynced */
  uint64_t fsyncs;
  void (*on_durable)(void *ctx, pm_pos durable);   /* e.g. publish to shm */
  void *on_durable_ctx;
} pm_log;

/* Open the segments named by m (copied) in dir. Read-only opens files
** O_RDONLY. Does not scan: see pm_log_scan. */
int pm_log_open(pm_log *log, const pm_io *io, const char *dir, const pm_manifest *m,
                int readonly, pm_err *err);
void pm_log_close(pm_log *log);

/* A fresh segment number (never reused; persisted by the next manifest). */
uint32_t pm_log_alloc_segment(pm_log *log);

/* Create the first segment of a new store and write its manifest. */
int pm_log_create(const pm_io *io, const char *dir, pm_manifest *m, pm_err *err);

/* Make the segment table follow a newer manifest written by another
** process: segments it added are opened; segments it dropped (a compaction)
** are retired, kept open for readers, and *removed is set: the caller must
** then rebuild its index from the new segments. */
int pm_log_follow(pm_log *log, const pm_manifest *m, int *removed, pm_err *err);

/* Read up to n bytes of segment seg at off (*got: fewer at its end): a
** scan reads the log in large sequential chunks. */
int pm_log_read_raw(pm_log *log, uint32_t seg, uint64_t off, uint8_t *dst, size_t n, size_t *got,
                    pm_err *err);
/* Read len bytes of the value of the record at pos (key length klen). */
int pm_log_read_value(pm_log *log, pm_pos at, uint32_t klen, uint8_t *dst, uint32_t len,
                      pm_err *err);

/* Writer side. Set where appending starts (after a scan); cuts the active
** segment there if the file is longer (a torn tail). */
int pm_log_start_append(pm_log *log, pm_pos end, pm_err *err);
/* Roll over (see pm_log_roll) if the active segment reached segment_size.
** Called before a group is written: a group never spans two segments. */
int pm_log_roll_if_full(pm_log *log, pm_err *err);
/* Append one record (buffered). *at gets its position. */
int pm_log_add(pm_log *log, uint8_t type, const pm_key *k, uint8_t vtype, const void *v,
               uint32_t vlen, uint64_t seq, pm_pos *at, pm_err *err);
/* Seal the active segment (flush, fsync) and start a new one: the new file
** is created and fsynced, then the manifest naming it is written. */
int pm_log_roll(pm_log *log, pm_err *err);
/* Append a commit record for a group of nrec records starting at group_start. */
int pm_log_add_commit(pm_log *log, uint64_t group_id, uint32_t nrec, pm_pos group_start,
                      pm_pos *at, pm_err *err);
int pm_log_add_abort(pm_log *log, uint64_t group_id, pm_err *err);
/* Write what is buffered. */
int pm_log_flush(pm_log *log, pm_err *err);
/* Wait until everything before upto is durable, sharing the fsync with other
** threads. timeout_ns < 0 waits for ever; PM_TIMEOUT otherwise. */
int pm_log_sync(pm_log *log, pm_pos upto, int64_t timeout_ns, pm_err *err);
/* Everything written so far (for background syncs and "sync all"). */
pm_pos pm_log_written(pm_log *log);
/* Mark the log failed with err (sticky; NULL: a generic I/O error). */
void pm_log_fail(pm_log *log, const pm_err *err);

/* ---- Scanning ------------------------------------------------------------ */
typedef struct pm_grec {      /* one record of a committed group */
  uint8_t type, ktype, vtype;
  uint32_t klen, vlen;
  uint64_t seq;
  pm_pos at;
  uint64_t key_off;           /* offset of the key bytes in pm_group.keys */
} pm_grec;

typedef struct pm_group {
  uint64_t id;                /* the commit record's seq */
  size_t n;
  pm_grec *recs;
  uint8_t *keys;
  pm_pos end;                 /* just after the commit record */
} pm_group;

typedef int (*pm_apply_fn)(void *ctx, const pm_group *g, pm_err *err);

enum {
  PM_SCAN_OPEN = 0,     /* recovery at open: torn tail allowed in the last segment */
  PM_SCAN_BOUNDED = 1,  /* catch-up to a known committed end: any damage is corruption */
  PM_SCAN_SALVAGE = 2,  /* recover: skip damage, keep every valid group */
  PM_SCAN_HINTS = 0x10, /* flag: read sealed segments' hint files instead */
  PM_SCAN_CHAIN = 0x20, /* flag: after `from`, only the append chain (catch-up) */
  PM_SCAN_COUNT = 0x40  /* flag: the scan feeds the live index: count records */
};

typedef struct pm_scan {
  pm_pos end;             /* just after the last group applied (or aborted) in
                             the append chain (compaction outputs aside) */
  uint64_t max_seq;       /* highest seq in any valid record */
  int64_t max_int;        /* highest integer key in applied groups */
  int has_int;
  uint64_t records;       /* valid records read */
  uint64_t groups;        /* groups applied */
  uint64_t dropped_bytes; /* torn tail or damage skipped */
  uint64_t dropped_groups;/* groups lost to damage (salvage) */
  pm_pos damage;          /* first damage seen, if any */
  int damaged;
} pm_scan;

/* Replay the log from `from` (a record boundary) to `limit` (or the end of
** the last segment when limit.seg == 0), calling apply for each committed
** group in order. durable_hint is a position known to have been fsynced
** (from the shared-memory file), or {0,0}. */
int pm_log_scan(pm_log *log, pm_pos from, pm_pos limit, int mode, pm_pos durable_hint,
                pm_apply_fn apply, void *ctx, pm_scan *out, pm_err *err);

/* Verify every record checksum in every segment up to limit ({0,0}: the
** end); appends problems to
** *report (a pm_malloc'ed string, one line each). Returns PM_OK or error. */
int pm_log_check(pm_log *log, pm_pos limit, char **report, pm_err *err);

/* ---- Segments written beside the log (compaction) ------------------------
** A compaction writes the live records it copies into new segments of its
** own, each one committed group, while the writer goes on appending to the
** active segment. They join the log only when a new manifest names them. */
typedef struct pm_segwriter {
  pm_log *log;
  uint32_t num;
  int fd;
  uint64_t off;               /* where the next record goes */
  uint64_t synced;            /* fsynced up to here */
  uint32_t nrec;
  pm_pos start;
  uint64_t max_seq;
  uint8_t *buf;
  size_t len, cap;
} pm_segwriter;

/* Create a new segment file (a fresh number) to write into. */
int pm_segw_open(pm_log *log, pm_segwriter *w, pm_err *err);
/* Append a put record keeping its seq; *at gets its position. */
int pm_segw_add(pm_segwriter *w, const pm_key *k, uint8_t vtype, const void *v, uint32_t vlen,
                uint64_t seq, pm_pos *at, pm_err *err);
/* Close the group with a commit record, fsync and close the file. The file
** is closed and the buffer freed even when this fails. */
int pm_segw_finish(pm_segwriter *w, pm_err *err);
/* Delete segment num and its hint (w, if not NULL, is closed first). */
void pm_segw_discard(pm_log *log, uint32_t num, pm_segwriter *w);

/* Open segment num (named by the new manifest) into the segment table;
** hinted says its hint file was written. */
int pm_log_adopt(pm_log *log, uint32_t num, int hinted, uint64_t records, pm_err *err);
/* Mark segment num compacted away: reads still work through its open file. */
void pm_log_retire(pm_log *log, uint32_t num);
/* Close retired segments (once nothing can read them). 0 when it could not
** now, because a scan is under way: call it again later. */
int pm_log_drop_retired(pm_log *log);
/* Replace the log's manifest by *m (taken over; *m is cleared). */
void pm_log_set_manifest(pm_log *log, pm_manifest *m);
/* A copy of the log's manifest. */
int pm_log_manifest_copy(pm_log *log, pm_manifest *out);

/* Name of segment n: "NNNNNN.log" into buf (at least 32 bytes). */
void pm_seg_name(uint32_t n, char *buf, size_t cap);

/* Append a formatted line to a pm_malloc'ed report (NULL report: ignored).
** PM_NOMEM if the line could not be added: a caller must not then call the
** report complete (a damaged store would read as "ok"). */
int pm_log_report(char **report, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- Hint files (hint.c) ------------------------------------------------- */
/* Name of segment n's hint: "NNNNNN.hint". */
void pm_hint_name(uint32_t seg, char *buf, size_t cap);
/* Write the hint of sealed segment seg (scans it; temp file, fsync, rename).
** Called with the writer lock held. */
int pm_hint_write(pm_log *log, uint32_t seg, pm_err *err);
/* Apply f's hint as one group through apply. PM_NOTFOUND when the hint is
** missing, stale or corrupt: the caller then scans the segment. */
int pm_hint_apply(pm_log *log, pm_segfile *f, pm_apply_fn apply, void *ctx, pm_scan *out,
                  pm_err *err);
/* Write the hint of segment seg (seg_size bytes long) from the group it holds. */
int pm_hint_write_group(pm_log *log, uint32_t seg, uint64_t seg_size, const pm_group *g, pm_err *err);
/* How many records and key bytes the segments hold, from their hint headers
** (a guess for segments without a usable hint): to size the index once. */
void pm_hint_estimate(pm_log *log, uint64_t *records, uint64_t *key_bytes);
/* Compare f's hint (if any) with the segment; problems go to *report. */
int pm_hint_check(pm_log *log, const pm_segfile *f, char **report, pm_err *err);

#endif /* PM_LOG_H */
