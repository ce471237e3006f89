/*  migrate.h - the database migration runner behind `fks migrate`.
 *
 *  Migrations are SQL files named NNNN_name.sql (four digits, then lowercase letters, digits
 *  and underscores) in one folder, applied in version order. Each is applied in its own
 *  transaction together with its row in schema_migrations (version, name, SHA-256 of the file,
 *  applied_at), under a transaction-scoped advisory lock, so two runs at once (two pods
 *  starting together) apply each migration exactly once. A migration recorded with a
 *  different checksum than its file has now is an error: history was edited.
 *
 *  Loading (reading, naming rules, checksums) is separate from applying so that file problems
 *  are reported before anything touches the database. Not thread-safe per object; separate
 *  objects and separate fks_pg_t handles may be used from separate threads.
 */
#ifndef FKS_MIGRATE_H
#define FKS_MIGRATE_H

#include "common/pg.h"

#include <stddef.h>
#include <stdio.h>

#define FKS_MIGRATE_FILE_MAX    (1024 * 1024)   /* bytes per migration file */
#define FKS_MIGRATE_MAX_ENTRIES 10000           /* directory entries looked at */
#define FKS_MIGRATE_NAME_MAX    64              /* the name part, after NNNN_ */

typedef struct fks_migrate_t fks_migrate_t;

typedef struct {
    char msg[512];
} fks_migrate_err_t;

/*  Reads every migration in dir: checks names (a file not named NNNN_name.sql is ignored with
 *  a warning on out; hidden files and README* are skipped silently), sizes (at most
 *  FKS_MIGRATE_FILE_MAX, no NUL bytes) and duplicate versions (an error), and computes each
 *  file's SHA-256. out may be NULL. Returns the set, sorted by version (it may be empty), or
 *  NULL with err. */
fks_migrate_t *fks_migrate_load (const char *dir, FILE *out, fks_migrate_err_t *err);

void fks_migrate_destroy (fks_migrate_t **self_p);

/*  Number of migrations loaded, and the version, name ("init" for 0001_init.sql) and
 *  lowercase hex SHA-256 of the one at index (0-based, in version order). */
size_t fks_migrate_size (fks_migrate_t *self);
int fks_migrate_version (fks_migrate_t *self, size_t index);
const char *fks_migrate_name (fks_migrate_t *self, size_t index);
const char *fks_migrate_checksum (fks_migrate_t *self, size_t index);

/*  The first statement of the migration at index that controls the transaction (a statement
 *  beginning with BEGIN, START, COMMIT, END, ROLLBACK, ABORT or PREPARE TRANSACTION; not
 *  SAVEPOINT, RELEASE or ROLLBACK TO), as "COMMIT", "START TRANSACTION"..., with its line in
 *  *line (may be NULL); NULL if it has none. Quoted strings and names, $tag$ bodies and
 *  comments are skipped, so a function body's BEGIN or a CASE's END does not count. */
const char *fks_migrate_tx_control (fks_migrate_t *self, size_t index, int *line);

/*  Applies the migrations that the database has not recorded yet, in order, each in its own
 *  transaction with its schema_migrations row (created if missing). Prints one line per
 *  migration applied, then a summary ("up to date" when there was nothing to do), on out
 *  (may be NULL). Fails, applying nothing, when a recorded checksum differs from its file,
 *  when a pending migration is older than one already applied, or when a pending migration
 *  controls its own transaction (fks_migrate_tx_control; err names the file and the
 *  statement). Fails, applying nothing more, when a migration fails (its error, SQLSTATE and
 *  line are in err; its transaction is rolled back). Stores the number applied by this call
 *  in *applied (may be NULL). Returns 0 or -1. */
int fks_migrate_apply (fks_migrate_t *self, fks_pg_t *pg, FILE *out, int *applied,
                       fks_migrate_err_t *err);

#endif
