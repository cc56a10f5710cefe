/*
 * insn_window: a QEMU TCG plugin (API v1, QEMU 7.2) that counts executed guest instructions in
 * "windows" delimited by two marker functions, for keel-cost.
 *
 *   -plugin insn_window.so,begin=0x5148,end=0x5150,out=/tmp/w.txt,stack_lo=0x20000010,stack_hi=0x20400000
 *
 * A window opens at the first instruction of `begin` and closes at the first instruction of `end`
 * (the firmware calls the two around one `act`), so it counts begin's own few instructions plus
 * everything up to the call of `end`; the firmware opens one empty window first to measure that
 * overhead. TCG plugins see every executed instruction in program order on a single vCPU, so the
 * counts are exact and repeatable (unlike timers, and DWT's CYCCNT reads 0 in QEMU 7.2).
 *
 * Also recorded: how many times each code address ran inside windows (to attribute the count to
 * functions), and the lowest address touched in [stack_lo, stack_hi), overall and inside windows
 * (stack high-water marks; nothing else lives there in the firmware), and which instruction
 * went deepest.
 *
 * Debian ships no qemu-plugin.h, so the few declarations used are written out below, as
 * documented for plugin API version 1 (QEMU 4.2 to 7.2).
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the subset of qemu-plugin.h (API v1) this plugin uses ---- */
typedef uint64_t qemu_plugin_id_t;
typedef uint32_t qemu_plugin_meminfo_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_mem_rw { QEMU_PLUGIN_MEM_R = 1, QEMU_PLUGIN_MEM_W, QEMU_PLUGIN_MEM_RW };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_vcpu_mem_cb_t)(unsigned int vcpu_index, qemu_plugin_meminfo_t info,
                                          uint64_t vaddr, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn,
                                            qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_vcpu_mem_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_mem_cb_t cb,
                                      enum qemu_plugin_cb_flags flags, enum qemu_plugin_mem_rw rw,
                                      void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))
QEMU_PLUGIN_EXPORT int qemu_plugin_version = 1;
/* ---- end of the declarations ---- */

/* Code memory covered by the per-address histogram (mps2-an386: 4 MiB at 0; Thumb is 2-aligned). */
#define CODE_LIMIT 0x400000u
#define MAX_WINDOWS 65536

static uint64_t begin_addr, end_addr, stack_lo, stack_hi;
static const char *out_path;
static bool active;
static uint64_t current, n_windows, windows[MAX_WINDOWS];
static uint64_t stack_min_all = UINT64_MAX, stack_min_window = UINT64_MAX;
static uint64_t stack_min_pc; /* the instruction that touched stack_min_all */
static uint32_t *hist; /* executions per halfword address, inside windows */

static void on_insn(unsigned int vcpu, void *udata)
{
    uint64_t pc = (uint64_t)(uintptr_t)udata;
    (void)vcpu;
    if (pc == end_addr && active) {
        if (n_windows < MAX_WINDOWS) {
            windows[n_windows] = current;
        }
        n_windows++;
        active = false;
    }
    if (pc == begin_addr) {
        active = true;
        current = 0;
    }
    if (active) {
        current++;
        if (pc < CODE_LIMIT) {
            hist[pc / 2]++;
        }
    }
}

static void on_mem(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void *udata)
{
    (void)vcpu, (void)info;
    if (vaddr >= stack_lo && vaddr < stack_hi) {
        if (vaddr < stack_min_all) {
            stack_min_all = vaddr;
            stack_min_pc = (uint64_t)(uintptr_t)udata;
        }
        if (active && vaddr < stack_min_window) {
            stack_min_window = vaddr;
        }
    }
}

static void on_tb(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t pc = qemu_plugin_insn_vaddr(insn);
        qemu_plugin_register_vcpu_insn_exec_cb(insn, on_insn, QEMU_PLUGIN_CB_NO_REGS,
                                               (void *)(uintptr_t)pc);
        if (stack_hi > stack_lo) {
            qemu_plugin_register_vcpu_mem_cb(insn, on_mem, QEMU_PLUGIN_CB_NO_REGS,
                                             QEMU_PLUGIN_MEM_RW, (void *)(uintptr_t)pc);
        }
    }
}

/* Writes the report: `window I N` lines, `stack_min_* ADDR` (and the pc that went deepest), then
   `hist ADDR N` lines. */
static void write_report(qemu_plugin_id_t id, void *udata)
{
    (void)id, (void)udata;
    FILE *f = fopen(out_path, "w");
    if (!f) {
        perror(out_path);
        return;
    }
    fprintf(f, "windows %" PRIu64 "\n", n_windows);
    for (uint64_t i = 0; i < n_windows && i < MAX_WINDOWS; i++) {
        fprintf(f, "window %" PRIu64 " %" PRIu64 "\n", i, windows[i]);
    }
    fprintf(f, "stack_min_all 0x%" PRIx64 "\n", stack_min_all);
    fprintf(f, "stack_min_window 0x%" PRIx64 "\n", stack_min_window);
    fprintf(f, "stack_min_pc 0x%" PRIx64 "\n", stack_min_pc);
    for (uint32_t i = 0; i < CODE_LIMIT / 2; i++) {
        if (hist[i]) {
            fprintf(f, "hist 0x%" PRIx32 " %" PRIu32 "\n", i * 2, hist[i]);
        }
    }
    fclose(f);
}

static bool parse(const char *arg, const char *key, uint64_t *value)
{
    size_t k = strlen(key);
    if (strncmp(arg, key, k) != 0 || arg[k] != '=') {
        return false;
    }
    *value = strtoull(arg + k + 1, NULL, 0);
    return true;
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const void *info, int argc,
                                           char **argv)
{
    (void)info;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "out=", 4) == 0) {
            out_path = a + 4;
        } else if (!parse(a, "begin", &begin_addr) && !parse(a, "end", &end_addr) &&
                   !parse(a, "stack_lo", &stack_lo) && !parse(a, "stack_hi", &stack_hi)) {
            fprintf(stderr, "insn_window: unknown argument '%s'\n", a);
            return -1;
        }
    }
    if (!out_path || !begin_addr || !end_addr) {
        fprintf(stderr, "insn_window: needs begin=ADDR,end=ADDR,out=PATH\n");
        return -1;
    }
    /* Thumb symbols carry bit 0; instruction addresses do not. */
    begin_addr &= ~(uint64_t)1;
    end_addr &= ~(uint64_t)1;
    hist = calloc(CODE_LIMIT / 2, sizeof *hist);
    if (!hist) {
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb);
    qemu_plugin_register_atexit_cb(id, write_report, NULL);
    return 0;
}
