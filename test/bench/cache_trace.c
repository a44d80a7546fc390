/*
** cache_trace.c - the trace-driven benchmark of the element cache.
**
** Replays the traces of traces.h against pm_cache (S3-FIFO), LRU, perfect
** LFU and Belady's OPT at 1%, 10% and 30% of the keys. Prints a table of
** miss ratios as it goes (for the scan trace also the misses of the
** accesses outside the scans, over the whole trace and over its second
** half), then for the scan trace what each policy misses of those accesses
** with the scans and with the scans removed (what the goal asks against
** what the scans cost and what perfect LFU can learn), then one
** machine-readable RESULT line per trace, size and policy, then which
** goals were missed. Exits 1 only if a cell does worse than the goals less
** the known shortfalls of traces.h (a regression).
**
**   cache_trace            1,000,000 keys, 10,000,000 accesses per trace
**   cache_trace --quick    100,000 keys, 1,000,000 accesses per trace
**
** Build: gcc -O2 -Iext -Itest/bench -o cache_trace test/bench/cache_trace.c
**        ext/cache.c ext/common.c -pthread -lm
*/
#include "traces.h"

#define MAX_CELLS (TR_NSPECS * TR_NSIZES)

typedef struct run {
  tr_cell cells[MAX_CELLS];
  size_t ncells;
  int missed;        /* goals missed */
  int regressions;   /* cells worse than the goals less the known shortfalls */
} run;

/* Print the table heading. */
static void print_heading(const tr_config *cfg) {
  printf("persistmap cache: %u keys, %llu accesses per trace, %u-byte values "
         "(%llu bytes charged each)\n\n",
         cfg->nkeys, (unsigned long long)cfg->accesses, cfg->value_bytes,
         (unsigned long long)tr_cache_charge(cfg->value_bytes));
  printf("%-15s %4s %7s %7s %7s %7s %7s %7s %8s  %s\n", "trace", "size", "entries", "held",
         "s3fifo", "lru", "lfu", "opt", "s3-lru", "non-scan misses s3fifo/lru (2nd half)");
}

/* a / b, or 0 when b is 0. */
static double ratio(uint64_t a, uint64_t b) {
  return b ? (double)a / (double)b : 0;
}

/* One row of the table for cell. */
static void print_row(const tr_cell *cell) {
  const tr_result *s3 = &cell->res[TR_S3FIFO], *lru = &cell->res[TR_LRU];
  printf("%-15s %3.0f%% %7u %7llu", cell->spec->name, cell->size * 100, cell->entries,
         (unsigned long long)cell->held);
  for (int p = 0; p < TR_NPOLICIES; p++) printf(" %6.2f%%", tr_miss_ratio(&cell->res[p]) * 100);
  printf(" %+6.2fpp", (tr_miss_ratio(s3) - tr_miss_ratio(lru)) * 100);
  if (cell->spec->kind == TR_ZIPF_SCAN)
    printf("  %llu/%llu = %.2f (%.2f)", (unsigned long long)s3->nonscan_misses,
           (unsigned long long)lru->nonscan_misses, ratio(s3->nonscan_misses, lru->nonscan_misses),
           ratio(s3->late_nonscan_misses, lru->late_nonscan_misses));
  printf("\n");
}

/* For a cell of the scan trace, one row: each policy's misses of the
** accesses outside the scans as a fraction of LRU's, with the scans and
** on the same accesses with the scans removed. */
static void print_scan_row(const tr_cell *cell) {
  double lru = (double)cell->res[TR_LRU].nonscan_misses;
  printf("%3.0f%%  ", cell->size * 100);
  for (int p = 0; p < TR_NPOLICIES; p++) printf(" %7.3f", (double)cell->res[p].nonscan_misses / lru);
  printf("   ");
  for (int p = 0; p < TR_NPOLICIES; p++) printf(" %7.3f", (double)cell->scanless[p].misses / lru);
  printf("   %llu\n", (unsigned long long)cell->res[TR_LRU].nonscan_accesses);
}

/* The scan trace's rows, under their heading (nothing if there is none). */
static void print_scan_table(const run *r) {
  const tr_cell *first = NULL;
  for (size_t i = 0; i < r->ncells && !first; i++)
    if (r->cells[i].has_scanless) first = &r->cells[i];
  if (!first) return;
  printf("\n%s: misses of the accesses outside the scans, as a fraction of lru's with the "
         "scans (the goal: s3fifo <= %.2f)\n", first->spec->name, TR_GOAL_SCAN);
  printf("%6s %-32s   %s\n%-6s", "", "with the scans", "the scans removed", "size");
  for (int i = 0; i < 2; i++) {
    for (int p = 0; p < TR_NPOLICIES; p++) printf(" %7s", TR_POLICY_NAMES[p]);
    printf("   ");
  }
  printf("accesses\n");
  for (size_t i = 0; i < r->ncells; i++)
    if (r->cells[i].has_scanless) print_scan_row(&r->cells[i]);
}

/* One RESULT line per policy of cell: key=value pairs, for scripts. */
static void print_machine_lines(const tr_cell *cell) {
  for (int p = 0; p < TR_NPOLICIES; p++) {
    const tr_result *r = &cell->res[p];
    printf("RESULT trace=%s size=%.2f entries=%u held=%llu policy=%s accesses=%llu "
           "misses=%llu miss_ratio=%.6f nonscan_accesses=%llu nonscan_misses=%llu "
           "late_nonscan_misses=%llu seconds=%.3f",
           cell->spec->name, cell->size, cell->entries,
           (unsigned long long)(p == TR_S3FIFO ? cell->held : cell->entries),
           TR_POLICY_NAMES[p], (unsigned long long)r->accesses, (unsigned long long)r->misses,
           tr_miss_ratio(r), (unsigned long long)r->nonscan_accesses,
           (unsigned long long)r->nonscan_misses, (unsigned long long)r->late_nonscan_misses,
           cell->seconds[p]);
    if (cell->has_scanless)
      printf(" scanless_misses=%llu", (unsigned long long)cell->scanless[p].misses);
    printf("\n");
  }
}

/* tr_run_all's callback: print the row, keep the cell, count its misses. */
static void on_cell(const tr_cell *cell, void *arg) {
  run *r = arg;
  char why[1024];
  print_row(cell);
  fflush(stdout);
  if (r->ncells < MAX_CELLS) r->cells[r->ncells++] = *cell;
  r->regressions += tr_check(cell, TR_KNOWN, why, sizeof why);
}

/* After the table: the scan trace with and without its scans, every
** RESULT line, then the goals missed. */
static void print_summary(const run *r, double seconds) {
  char why[1024];
  print_scan_table(r);
  printf("\n");
  for (size_t i = 0; i < r->ncells; i++) print_machine_lines(&r->cells[i]);
  printf("\n");
  int missed = 0;
  for (size_t i = 0; i < r->ncells; i++) {
    if (!tr_check(&r->cells[i], TR_GOALS, why, sizeof why)) continue;
    missed++;
    printf("goal missed: %s", why);
  }
  if (!missed) printf("all goals met\n");
  else if (!r->regressions)
    printf("every goal missed is a known shortfall (traces.h), within its bound\n");
  else printf("REGRESSION: %d cell(s) worse than the known shortfalls allow\n", r->regressions);
  printf("(%.1f s)\n", seconds);
}

int main(int argc, char **argv) {
  const tr_config *cfg = &TR_FULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0) {
      cfg = &TR_QUICK;
    } else {
      fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
      return 2;
    }
  }
  static run r;
  print_heading(cfg);
  double t0 = tr_seconds();
  tr_run_all(cfg, on_cell, &r);
  print_summary(&r, tr_seconds() - t0);
  return r.regressions ? 1 : 0;
}
