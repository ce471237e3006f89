/*  modelstore.h - the model in use, loaded from its file and reloaded when the file changes.
 *
 *  The ai worker loads its model at start (a model that does not load stops the program with
 *  the reason) and then looks at the file at most once per check interval: when its identity
 *  (device, inode, size, modification time) changed, the new file is parsed; if it is valid it
 *  replaces the model, otherwise the previous model stays in use and the refusal is reported
 *  once (until the file changes again). Write a new model next to the old one and rename it
 *  over it (tools/train.c does), so a reader never sees half a file; a half-written file is
 *  refused anyway (model.h).
 *
 *  Handler threads take a copy of the current model (a few hundred bytes) under a mutex, so a
 *  reload never changes a model under a computation. Every function is thread-safe.
 */
#ifndef FKS_AI_MODELSTORE_H
#define FKS_AI_MODELSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "workers/ai/model.h"

typedef struct fks_model_store_t fks_model_store_t;

/*  A store for the model file at path (copied), looked at every check_ms (>= 0) at most.
 *  Loads nothing yet. NULL when memory runs out. */
fks_model_store_t *fks_model_store_new (const char *path, int64_t check_ms);
void fks_model_store_destroy (fks_model_store_t **self_p);

/*  Loads the file now, whatever its identity. 0, or -1 with the reason in err (cap bytes);
 *  on failure the store keeps the model it had (if any). */
int fks_model_store_load (fks_model_store_t *self, char *err, size_t cap);

/*  Reloads when check_ms passed since the last look (now_ms is a monotonic clock in ms) and
 *  the file changed. Returns 1 when a new model is in use (its previous version goes to
 *  old_version, "" when there was none; cap FKS_MODEL_VERSION_MAX), 0 when nothing changed (or
 *  a refusal was already reported), -1 when a changed file was refused (err filled; the
 *  previous model stays). A file that disappeared is a refusal too. */
int fks_model_store_refresh (fks_model_store_t *self, int64_t now_ms,
                             char old_version[FKS_MODEL_VERSION_MAX], char *err, size_t cap);

/*  Copies the model in use into out. false when none was ever loaded. */
bool fks_model_store_get (fks_model_store_t *self, fks_model_t *out);

/*  The path (as given). */
const char *fks_model_store_path (fks_model_store_t *self);

#endif
