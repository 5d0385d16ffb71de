/*
 * sim.h - the simulated storage's generator, shared by the adapter (sim.c)
 * and the ground truth (tm_sim_stats in sim_gen.c). docs/sim.md is the
 * user's page.
 *
 * A world is a tree that is never stored: the children of a folder are a
 * pure function of (seed, world, path). Every node has a 64-bit key derived
 * from its parent's key and its index among its siblings, and every name
 * encodes that index ("d12", "f7", "x3" plus an optional decoration), so a
 * path resolves back to its key in O(depth). All functions here are pure
 * and may be called from any thread at once; the spec is read-only once
 * parsed.
 */
#ifndef TM_SIM_H
#define TM_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define TM_SIM_MAX_DEPTH 64   /* largest depth= */
#define TM_SIM_MAX_PREFIX 32  /* deny prefixes per list */
#define TM_SIM_NAME_MAX 64    /* bytes of a generated name, NUL included */

enum { TM_SIM_SRC = 0, TM_SIM_DST = 1 };

/* A list of path prefixes (deny=, src_deny=). */
struct tm__sim_prefixes {
    char *p[TM_SIM_MAX_PREFIX]; /* malloc'd prefixes, "/" or "/a/b" */
    size_t len[TM_SIM_MAX_PREFIX]; /* their lengths */
    int n;                      /* prefixes used */
};

/* A parsed spec; every field is documented with its key in docs/sim.md. */
struct tm__sim_spec {
    uint64_t seed;          /* seed=: the source world */
    int world;              /* world=: TM_SIM_SRC or TM_SIM_DST */
    int depth;              /* depth=: deepest node (files), root = 0 */
    double folders;         /* folders=: mean subfolders of the root */
    double files;           /* files=: mean files of the root */
    double decay;           /* decay=: means are multiplied by this per level */
    double tail;            /* tail=: Lomax shape of the fan-out, > 1 */
    int64_t root_folders;   /* root_folders=: subfolders of the root, -1: folders= rounded */
    int64_t root_files;     /* root_files=: files of the root, -1: files= rounded */
    int64_t max_folders;    /* max_folders=: cap of subfolders per folder */
    int64_t max_files;      /* max_files=: cap of files per folder */
    double size;            /* size=: mean size of a non-empty file */
    double size_tail;       /* size_tail=: Lomax shape of file sizes, > 1 */
    int64_t max_size;       /* max_size=: cap of a file size */
    double empty;           /* empty=: probability of a 0-byte file */
    int mixed_names;        /* names=mixed: decorated names */
    uint64_t dst_seed;      /* dst_seed=: varies the destination alone */
    double keep;            /* keep=: a node is kept given its parent */
    double extra;           /* extra=: dst-only children per source child */
    double extra_folders;   /* extra_folders=: share of extras that are folders */
    double csize;           /* csize=: kept files with another size */
    double cmtime;          /* cmtime=: kept files with another mtime */
    double ctype;           /* ctype=: kept nodes of the other type */
    double cmode;           /* cmode=: kept nodes with another mode only */
    double transient;       /* transient=: listings failing, retryable */
    double permanent;       /* permanent=: folders whose listing always fails */
    struct tm__sim_prefixes deny;     /* deny=: EACCES at and below */
    double src_permanent;   /* src_permanent=: the source's, for sim-stats */
    struct tm__sim_prefixes src_deny; /* src_deny=: the source's, for sim-stats */
    struct tm__sim_prefixes badname;  /* badname=: listings return an invalid name */
    struct tm__sim_prefixes src_badname; /* src_badname=: the source's, for sim-stats */
    char *overlay;          /* overlay=: file keeping what was written, or NULL */
    double latency_ms;      /* latency=: per listing page, ms */
    double jitter_ms;       /* jitter=: +- this, uniform, ms */
    int64_t page;           /* page=: children per latency */
    int64_t throttle;       /* throttle=: listings per second, 0: none */
    int64_t burst;          /* burst=: listings allowed at once */
    int64_t crash_after;    /* crash_after=: SIGKILL after N listings, 0: never */
    uint64_t dsalt;         /* derived: salt of the destination's choices */
};

/* How a destination node relates to its source twin. */
enum tm__sim_fate {
    TM_SIM_GONE = 0,  /* not on the destination */
    TM_SIM_SAME,      /* same type; a file of equal size and mtime */
    TM_SIM_SIZE,      /* file of another size */
    TM_SIM_MTIME,     /* file of the same size, earlier mtime */
    TM_SIM_NEWER,     /* file of the same size, later mtime */
    TM_SIM_TYPE,      /* the other type */
    TM_SIM_MODE,      /* same type and content, another mode (a file 0600,
                         a folder 0700) */
    TM_SIM_EXTRA,     /* destination only */
};

/* How a folder's children are made. */
enum tm__sim_gen {
    TM_SIM_PLAIN = 0, /* the shape generator alone (source, dst-only trees) */
    TM_SIM_TWIN,      /* a destination folder derived from its source twin */
};

/* A folder of a world: enough to list it. */
struct tm__sim_folder {
    uint64_t key; /* generation key (the source twin's key for TM_SIM_TWIN) */
    int depth;    /* root = 0 */
    int gen;      /* enum tm__sim_gen */
};

/* One generated node. */
struct tm__sim_ent {
    char name[TM_SIM_NAME_MAX]; /* NUL-terminated */
    size_t name_len;            /* bytes before the NUL */
    int type;                   /* TM_T_FOLDER or TM_T_FILE */
    int64_t size;               /* bytes (files), 0 for folders */
    int64_t mtime;              /* ns since the epoch */
    uint32_t mode;              /* permission bits */
    int fate;                   /* enum tm__sim_fate (destination nodes) */
    struct tm__sim_folder sub;  /* a folder: how to list it */
};

/* Parses params (the text after "sim:"). On failure returns TM_EBADSPEC
 * (or TM_ENOMEM) and writes a message naming the parameter into err.
 * tm__sim_spec_release() frees what it allocated, in both cases. */
int tm__sim_spec_parse(struct tm__sim_spec *sp, const char *params, char *err,
                       size_t errlen);
void tm__sim_spec_release(struct tm__sim_spec *sp);

/* A folder with its child counts, ready to be listed. */
struct tm__sim_dir {
    struct tm__sim_folder f; /* the folder */
    int64_t nf;              /* subfolders of the plain shape */
    int64_t n;               /* subfolders + files of the plain shape */
    int64_t slots;           /* n + destination-only extras (TM_SIM_TWIN) */
};

/* The root folder of the spec's world. */
struct tm__sim_folder tm__sim_root(const struct tm__sim_spec *sp);
/* Resolves a root-relative path to a folder of the spec's world: 0,
 * TM_ENOENT, or TM_ENOTDIR (a file). */
int tm__sim_resolve(const struct tm__sim_spec *sp, const char *path,
                    struct tm__sim_folder *out);
/* The node at path (the root: a folder named ""): 0, TM_ENOENT or
 * TM_ENOTDIR (a file in the middle of path). */
int tm__sim_lookup(const struct tm__sim_spec *sp, const char *path,
                   struct tm__sim_ent *e);
/* Computes the child counts of f. */
void tm__sim_dir_init(const struct tm__sim_spec *sp,
                      const struct tm__sim_folder *f, struct tm__sim_dir *d);
/* Fills *e with the child in slot i (0 <= i < d->slots): slots [0, nf) are
 * folders, [nf, n) files, [n, slots) extras. Returns 1 when the slot holds
 * a node, 0 when it is empty (a source node the destination did not keep;
 * e->fate is then TM_SIM_GONE). */
int tm__sim_child(const struct tm__sim_spec *sp, const struct tm__sim_dir *d,
                  int64_t i, struct tm__sim_ent *e);
/* The destination twin of a source child src (dst may be src): returns 0
 * when it is not kept; dst->fate says how it differs. */
int tm__sim_derive(const struct tm__sim_spec *sp, const struct tm__sim_ent *src,
                   struct tm__sim_ent *dst);
/* 1 when path (len bytes) is one of the prefixes or lies below one. */
int tm__sim_prefix_match(const struct tm__sim_prefixes *l, const char *path,
                         size_t len);
/* 1 when listing folder f of world fails for good with rate permanent=
 * (never the root). A pure function of (seed, world, path). */
int tm__sim_permanent(const struct tm__sim_spec *sp, double rate, int world,
                      const struct tm__sim_folder *f);
/* A well-mixed 64-bit hash of (a, b); the building block of everything. */
uint64_t tm__sim_hash(uint64_t a, uint64_t b);
/* A hash mapped to [0, 1). */
double tm__sim_unit(uint64_t h);

/* ------------------------------------------------------------ overlay
 * What was written into a simulated storage (sim_overlay.c). */

/* How the bytes of a written file are kept. */
enum tm__ovl_kind {
    TM_OVL_NONE = 0, /* a folder or symlink */
    TM_OVL_GEN,      /* the generated stream of content id id, size bytes */
    TM_OVL_LIT,      /* the bytes themselves (data) */
    TM_OVL_GONE,     /* removed (the mirror, a backup): nothing is at the
                        path, generated or written before */
};

/* One written node. */
struct tm__ovl_ent {
    int type;         /* TM_T_FOLDER, TM_T_FILE or TM_T_SYMLINK */
    int kind;         /* enum tm__ovl_kind */
    uint32_t mode;    /* permission bits */
    int64_t mtime;    /* ns since the epoch */
    int64_t size;     /* bytes (symlink: target length) */
    uint64_t id;      /* content id (TM_OVL_GEN) */
    size_t data_len;  /* bytes of literal content or symlink target */
};

/* A written child of a folder, as tm__ovl_children copies it out. */
struct tm__ovl_child {
    const char *name;      /* into the list's names, not NUL-terminated */
    size_t name_len;
    size_t name_off;       /* offset of name in names */
    int ghost;             /* a generated folder holding written children */
    struct tm__ovl_ent e;  /* what was written (not for a ghost) */
};

/* The written children of one folder, sorted by name (bytewise). */
struct tm__ovl_list {
    struct tm__ovl_child *v;
    size_t n;
    char *names;
};

struct tm__ovl;

/* Opens an overlay: in memory (file NULL) or kept in file, which is
 * created (mode 0600) or replayed. On failure writes a message into err. */
int tm__ovl_open(const char *file, struct tm__ovl **out, char *err,
                 size_t errlen);
void tm__ovl_close(struct tm__ovl *o);
/* Records a written node at path, replacing what was written there (the
 * caller checked that the parent is a folder). Appends to the file. */
int tm__ovl_put(struct tm__ovl *o, const char *path,
                const struct tm__ovl_ent *e, const void *data, size_t dlen);
/* 1 and *e (and data, may be NULL) when something was written at path,
 * 0 when not, or an error. */
int tm__ovl_get(struct tm__ovl *o, const char *path, struct tm__ovl_ent *e,
                struct tm__buf *data);
/* Copies out the written children of the folder at path (none: n = 0). */
int tm__ovl_children(struct tm__ovl *o, const char *path,
                     struct tm__ovl_list *out);
const struct tm__ovl_child *tm__ovl_list_find(const struct tm__ovl_list *l,
                                              const char *name, size_t len);
void tm__ovl_list_release(struct tm__ovl_list *l);
/* Makes the file durable (fdatasync) when something was appended. */
int tm__ovl_sync(struct tm__ovl *o);
/* Nodes in the table, ghosts included. */
size_t tm__ovl_count(struct tm__ovl *o);

/* The content id of a generated file (source and destination twins of
 * the same source file share it). */
uint64_t tm__sim_content_id(const struct tm__sim_ent *e);
/* Fills buf with len bytes of the content stream id from offset off. */
void tm__sim_content(uint64_t id, int64_t off, unsigned char *buf, size_t len);

#endif
