/*  modelstore.c - the model in use, loaded from its file and reloaded when the file changes.
 *
 *  See modelstore.h. The file's identity is read with stat before loading and the loaded
 *  model is kept with that identity; if the file is replaced during the load, the next look
 *  sees a new identity and loads again, so the store never settles on a stale model.
 */
#include "workers/ai/modelstore.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    bool valid;
    dev_t dev;
    ino_t ino;
    off_t size;
    int64_t mtime_ns;
} s_ident_t;

struct fks_model_store_t {
    pthread_mutex_t lock;
    char *path;
    int64_t check_ms;
    int64_t last_check_ms;
    bool checked;
    bool has_model;
    fks_model_t model;
    s_ident_t loaded;           /* the identity of the file the model came from */
    s_ident_t refused;          /* the identity of the last file refused */
    bool missing_reported;
};

fks_model_store_t *
fks_model_store_new (const char *path, int64_t check_ms)
{
    if (!path || check_ms < 0)
        return NULL;
    fks_model_store_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->path = strdup (path);
    if (!self->path) {
        free (self);
        return NULL;
    }
    self->check_ms = check_ms;
    pthread_mutex_init (&self->lock, NULL);
    return self;
}

void
fks_model_store_destroy (fks_model_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fks_model_store_t *self = *self_p;
    pthread_mutex_destroy (&self->lock);
    free (self->path);
    free (self);
    *self_p = NULL;
}

static int
s_ident (const char *path, s_ident_t *id)
{
    struct stat st;
    memset (id, 0, sizeof *id);
    if (stat (path, &st) != 0)
        return -1;
    id->valid = true;
    id->dev = st.st_dev;
    id->ino = st.st_ino;
    id->size = st.st_size;
    id->mtime_ns = (int64_t) st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    return 0;
}

static bool
s_same (const s_ident_t *a, const s_ident_t *b)
{
    return a->valid && b->valid && a->dev == b->dev && a->ino == b->ino && a->size == b->size
        && a->mtime_ns == b->mtime_ns;
}

//  Loads under the lock. 0 or -1 with err.
static int
s_load (fks_model_store_t *self, const s_ident_t *id, char *err, size_t cap)
{
    fks_model_t m;
    if (fks_model_load (self->path, &m, err, cap) != 0) {
        self->refused = *id;
        return -1;
    }
    self->model = m;
    self->has_model = true;
    self->loaded = *id;
    memset (&self->refused, 0, sizeof self->refused);
    self->missing_reported = false;
    return 0;
}

int
fks_model_store_load (fks_model_store_t *self, char *err, size_t cap)
{
    pthread_mutex_lock (&self->lock);
    s_ident_t id;
    int rc;
    if (s_ident (self->path, &id) != 0) {
        snprintf (err, cap, "%s: %s", self->path, strerror (errno));
        rc = -1;
    }
    else
        rc = s_load (self, &id, err, cap);
    pthread_mutex_unlock (&self->lock);
    return rc;
}

int
fks_model_store_refresh (fks_model_store_t *self, int64_t now_ms,
                         char old_version[FKS_MODEL_VERSION_MAX], char *err, size_t cap)
{
    pthread_mutex_lock (&self->lock);
    int rc = 0;
    if (self->checked && now_ms - self->last_check_ms < self->check_ms)
        goto done;
    self->checked = true;
    self->last_check_ms = now_ms;
    s_ident_t id;
    if (s_ident (self->path, &id) != 0) {
        if (!self->missing_reported) {
            self->missing_reported = true;
            snprintf (err, cap, "%s: %s; keeping model %s", self->path, strerror (errno),
                      self->has_model ? self->model.version : "(none)");
            rc = -1;
        }
        goto done;
    }
    self->missing_reported = false;
    if (s_same (&id, &self->loaded) || s_same (&id, &self->refused))
        goto done;
    snprintf (old_version, FKS_MODEL_VERSION_MAX, "%s", self->has_model ? self->model.version
                                                                        : "");
    char why[320];
    if (s_load (self, &id, why, sizeof why) != 0) {
        snprintf (err, cap, "%s; keeping model %s", why,
                  self->has_model ? self->model.version : "(none)");
        rc = -1;
    }
    else
        rc = 1;
done:
    pthread_mutex_unlock (&self->lock);
    return rc;
}

bool
fks_model_store_get (fks_model_store_t *self, fks_model_t *out)
{
    pthread_mutex_lock (&self->lock);
    bool has = self->has_model;
    if (has)
        *out = self->model;
    pthread_mutex_unlock (&self->lock);
    return has;
}

const char *
fks_model_store_path (fks_model_store_t *self)
{
    return self->path;
}
