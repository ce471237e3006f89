/*  config.h - typed configuration from FKS_* environment variables.
 *
 *  Every setting is an environment variable NAME, or a file named by NAME_FILE (a Kubernetes
 *  Secret mounted as a file); setting both is an error. File contents lose one trailing newline
 *  (or CRLF). Values are bounded (FKS_CONFIG_VALUE_MAX bytes) and parsed strictly: the whole
 *  string must be a valid value, with no trailing garbage. On a bad value the getters fill `err`
 *  with a message that names the variable and quotes what was wrong, e.g.
 *      FKS_GATEWAY_PORT: expected a port 1-65535, got 'abc'
 *  but never quote a secret's value (fks_config_secret).
 *
 *  The getters return 0 when the variable was set and valid (value stored), 1 when it was unset
 *  (the default is stored), and -1 on error (err filled, *out untouched). They are thread-safe
 *  as long as nobody calls setenv concurrently.
 */
#ifndef FKS_CONFIG_H
#define FKS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FKS_CONFIG_VALUE_MAX 4096
#define FKS_CONFIG_ERR_MAX    256

typedef struct {
    char msg[FKS_CONFIG_ERR_MAX];
} fks_config_err_t;

/*  String setting. On success *out is a malloc'd copy (caller frees), or a copy of `def`
 *  (NULL stays NULL) when unset. An empty value counts as set. */
int fks_config_str (const char *name, const char *def, char **out, fks_config_err_t *err);

/*  A secret: like fks_config_str but required, non-empty, at least `min_len` bytes, and the
 *  value is never echoed in an error. Unset gives -1 with "NAME is required (set NAME or
 *  NAME_FILE)". */
int fks_config_secret (const char *name, size_t min_len, char **out, fks_config_err_t *err);

/*  Integer in [min, max], decimal only. */
int fks_config_int (const char *name, int64_t def, int64_t min, int64_t max, int64_t *out,
                    fks_config_err_t *err);

/*  TCP port 1-65535. */
int fks_config_port (const char *name, int def, int *out, fks_config_err_t *err);

/*  Finite double in [min, max]. */
int fks_config_double (const char *name, double def, double min, double max, double *out,
                       fks_config_err_t *err);

/*  Boolean: 1/0, true/false, yes/no, on/off (any case). */
int fks_config_bool (const char *name, bool def, bool *out, fks_config_err_t *err);

/*  Duration in milliseconds: a number with unit ms, s, m or h ("250ms", "5s", "2m"); a bare
 *  number is milliseconds. Bounded to [min_ms, max_ms]. */
int fks_config_duration_ms (const char *name, int64_t def, int64_t min_ms, int64_t max_ms,
                            int64_t *out, fks_config_err_t *err);

#endif
