/*  migrate.c - applies schemas/migrations/NNNN_name.sql to a database, once each.
 *
 *  `fks migrate` and the tests call this; every pod of a deployment may run it at start, so
 *  it must be safe to run twice at once and harmless to run again. The rules:
 *
 *  - Files are read, named-checked and checksummed before the database is touched; a bad
 *    folder (duplicate versions, a file over 1 MiB) applies nothing.
 *  - Each migration runs in its own transaction together with the INSERT of its
 *    schema_migrations row, so a migration is either fully applied and recorded or not at all.
 *  - Every transaction first takes pg_advisory_xact_lock(S_LOCK_KEY) and then re-reads what is
 *    recorded, so a concurrent run waits, sees the migration already applied, and skips it.
 *  - A recorded migration whose file now has another SHA-256 stops everything: applied
 *    history must never change (write a new migration instead).
 *  - A pending migration numbered below one already applied is refused (it was probably
 *    merged late; renumber it), rather than applied out of order.
 *  - A pending migration that controls the transaction itself (a statement beginning with
 *    BEGIN, START, COMMIT, END, ROLLBACK, ABORT or PREPARE TRANSACTION) is refused before
 *    anything is applied. Such a file would commit part of itself without its
 *    schema_migrations row and release the lock, and every later run would then fail on what
 *    that part created. The file is scanned as PostgreSQL splits it (strings, quoted names,
 *    $tag$ bodies and comments are skipped), so BEGIN in a function body is fine.
 *
 *  Migration files run through the simple query protocol, so one file may hold many
 *  statements; they must not contain statements that cannot run inside a transaction
 *  (CREATE INDEX CONCURRENTLY). schemas/migrations/README.md says more.
 */
#include "tools/migrate.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

//  "fks_migr" in ASCII: one advisory lock key for every FKS migration run on a database.
#define S_LOCK_KEY          "7380119268071401330"
#define S_MAX_RECORDED      100000      /* rows of schema_migrations we are willing to read */

typedef struct {
    int version;
    char name[FKS_MIGRATE_NAME_MAX + 1];
    char file[FKS_MIGRATE_NAME_MAX + 16];       /* NNNN_name.sql */
    char checksum[65];
    char *sql;
    size_t len;
    const char *tx_control;     /* its first transaction control statement, or NULL */
    int tx_line;                /* and that statement's line */
} s_migration_t;

struct fks_migrate_t {
    char *dir;
    s_migration_t *items;
    size_t n;
};

static void
s_set_err (fks_migrate_err_t *err, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

static void
s_set_err (fks_migrate_err_t *err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (err->msg, sizeof err->msg, fmt, ap);
    va_end (ap);
}

static void
s_say (FILE *out, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

static void
s_say (FILE *out, const char *fmt, ...)
{
    if (!out)
        return;
    va_list ap;
    va_start (ap, fmt);
    vfprintf (out, fmt, ap);
    va_end (ap);
    fputc ('\n', out);
    fflush (out);
}


//  --------------------------------------------------------------------------
//  Loading

//  Parses "NNNN_name.sql": 0 with version and name, or -1 if the file is not named so.
static int
s_parse_file_name (const char *file, int *version, char *name)
{
    size_t len = strlen (file);
    if (len < 4 + 1 + 1 + 4 || strcmp (file + len - 4, ".sql") != 0 || file[4] != '_')
        return -1;
    int v = 0;
    for (int i = 0; i < 4; i++) {
        if (file[i] < '0' || file[i] > '9')
            return -1;
        v = v * 10 + (file[i] - '0');
    }
    size_t name_len = len - 4 - 1 - 4;
    if (v < 1 || name_len > FKS_MIGRATE_NAME_MAX)
        return -1;
    for (size_t i = 0; i < name_len; i++) {
        char c = file[5 + i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return -1;
    }
    *version = v;
    memcpy (name, file + 5, name_len);
    name[name_len] = '\0';
    return 0;
}

static void
s_sha256_hex (const char *data, size_t len, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (EVP_Digest (data, len, md, &md_len, EVP_sha256 (), NULL) != 1 || md_len != 32) {
        hex[0] = '\0';
        return;
    }
    static const char digits[] = "0123456789abcdef";
    for (unsigned int i = 0; i < md_len; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = '\0';
}

//  Reads path (a regular file, at most FKS_MIGRATE_FILE_MAX bytes, no NUL) into m.
static int
s_read_file (const char *path, s_migration_t *m, fks_migrate_err_t *err)
{
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        s_set_err (err, "cannot open %s: %s", path, strerror (errno));
        return -1;
    }
    struct stat st;
    if (fstat (fd, &st) != 0 || !S_ISREG (st.st_mode)) {
        s_set_err (err, "%s is not a regular file", path);
        close (fd);
        return -1;
    }
    if (st.st_size > FKS_MIGRATE_FILE_MAX) {
        s_set_err (err, "%s is %lld bytes; a migration may be at most %d bytes (split it)",
                   path, (long long) st.st_size, FKS_MIGRATE_FILE_MAX);
        close (fd);
        return -1;
    }
    //  Read up to one byte more than the limit, in case the file grew since fstat.
    char *buf = malloc (FKS_MIGRATE_FILE_MAX + 2);
    if (!buf) {
        s_set_err (err, "out of memory reading %s", path);
        close (fd);
        return -1;
    }
    size_t len = 0;
    while (len < FKS_MIGRATE_FILE_MAX + 1) {
        ssize_t n = read (fd, buf + len, FKS_MIGRATE_FILE_MAX + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            s_set_err (err, "cannot read %s: %s", path, strerror (errno));
            free (buf);
            close (fd);
            return -1;
        }
        if (n == 0)
            break;
        len += (size_t) n;
    }
    close (fd);
    if (len > FKS_MIGRATE_FILE_MAX) {
        s_set_err (err, "%s is over %d bytes (split it)", path, FKS_MIGRATE_FILE_MAX);
        free (buf);
        return -1;
    }
    if (memchr (buf, '\0', len)) {
        s_set_err (err, "%s holds a NUL byte; a migration must be SQL text", path);
        free (buf);
        return -1;
    }
    buf[len] = '\0';
    s_sha256_hex (buf, len, m->checksum);
    if (!m->checksum[0]) {
        s_set_err (err, "cannot compute the SHA-256 of %s", path);
        free (buf);
        return -1;
    }
    m->sql = buf;
    m->len = len;
    return 0;
}

//  --------------------------------------------------------------------------
//  Transaction control in a file
//
//  The runner owns each migration's transaction; a statement in the file that ends it, or
//  opens a new one, breaks the promise that a migration is applied and recorded together.
//  s_find_tx_control splits the file into statements the way PostgreSQL's lexer does and
//  looks at the first word of each. Only what begins a statement counts: END closes a CASE
//  in the middle of one, and BEGIN inside a function body is in a string or a $tag$ body.
//  When the scan and the server disagree on a file (unterminated quotes), the server refuses
//  it as a syntax error before running any of it; and fks_migrate_apply still checks the
//  transaction state after each file.

//  Statements refused at the start of a statement, matched in order: `next` is the word that
//  must follow (NULL: any), `name` what the error says (NULL: allowed, it stays inside the
//  transaction). SAVEPOINT and RELEASE never end the transaction and are not listed.
static const struct {
    const char *word;
    const char *next;
    const char *name;
} s_tx_control[] = {
    { "BEGIN", NULL, "BEGIN" },
    { "START", NULL, "START TRANSACTION" },
    { "COMMIT", "PREPARED", "COMMIT PREPARED" },
    { "COMMIT", NULL, "COMMIT" },
    { "END", NULL, "END" },
    { "ROLLBACK", "PREPARED", "ROLLBACK PREPARED" },
    { "ROLLBACK", "TO", NULL },                 /* ROLLBACK TO SAVEPOINT */
    { "ROLLBACK", NULL, "ROLLBACK" },
    { "ABORT", NULL, "ABORT" },
    { "PREPARE", "TRANSACTION", "PREPARE TRANSACTION" },
};

//  PostgreSQL's identifier characters: bytes >= 0x80 are letters (UTF-8), and $ may follow
//  the first character.
static bool
s_ident_start (unsigned char c)
{
    return isalpha (c) || c == '_' || c >= 0x80;
}

static bool
s_ident_char (unsigned char c)
{
    return s_ident_start (c) || isdigit (c) || c == '$';
}

//  Skips white space, -- comments and nested /* */ comments from i; counts lines in *line.
static size_t
s_skip_blank (const char *sql, size_t len, size_t i, int *line)
{
    while (i < len) {
        if (sql[i] == '\n') {
            (*line)++;
            i++;
        }
        else if (isspace ((unsigned char) sql[i]))
            i++;
        else if (sql[i] == '-' && i + 1 < len && sql[i + 1] == '-') {
            while (i < len && sql[i] != '\n')
                i++;
        }
        else if (sql[i] == '/' && i + 1 < len && sql[i + 1] == '*') {
            int depth = 0;
            while (i < len) {
                if (sql[i] == '/' && i + 1 < len && sql[i + 1] == '*') {
                    depth++;
                    i += 2;
                }
                else if (sql[i] == '*' && i + 1 < len && sql[i + 1] == '/') {
                    i += 2;
                    if (--depth == 0)
                        break;
                }
                else {
                    if (sql[i] == '\n')
                        (*line)++;
                    i++;
                }
            }
        }
        else
            break;
    }
    return i;
}

//  Skips a quoted token whose opening quote is at i: 'string', "name" (a doubled quote is
//  one quote), or with `backslash` an E'string', where \\ escapes the next byte too.
static size_t
s_skip_quoted (const char *sql, size_t len, size_t i, bool backslash, int *line)
{
    char quote = sql[i++];
    while (i < len) {
        if (sql[i] == '\n')
            (*line)++;
        if (backslash && sql[i] == '\\' && i + 1 < len) {
            if (sql[i + 1] == '\n')
                (*line)++;
            i += 2;
        }
        else if (sql[i] == quote) {
            if (i + 1 < len && sql[i + 1] == quote)
                i += 2;
            else
                return i + 1;
        }
        else
            i++;
    }
    return len;
}

//  At a '$' at i: if it opens a $tag$ body, returns the position after the closing $tag$
//  (or len); else returns i unchanged ($1 is a parameter, not a quote).
static size_t
s_skip_dollar_quoted (const char *sql, size_t len, size_t i, int *line)
{
    size_t j = i + 1;
    if (j < len && s_ident_start ((unsigned char) sql[j]))
        while (j < len && sql[j] != '$' && s_ident_char ((unsigned char) sql[j]))
            j++;
    if (j >= len || sql[j] != '$')
        return i;
    size_t tag_len = j - i + 1;
    for (size_t k = j + 1; k < len; k++) {
        if (sql[k] == '\n')
            (*line)++;
        else if (sql[k] == '$' && k + tag_len <= len && memcmp (sql + k, sql + i, tag_len) == 0)
            return k + tag_len;
    }
    return len;
}

//  Reads the word at i, uppercased into word (at most cap - 1 bytes; a longer word is no
//  keyword and comes back empty). Returns the position after it.
static size_t
s_read_word (const char *sql, size_t len, size_t i, char *word, size_t cap)
{
    size_t n = 0;
    bool fits = true;
    while (i < len && s_ident_char ((unsigned char) sql[i])) {
        if (n + 1 < cap)
            word[n++] = (char) toupper ((unsigned char) sql[i]);
        else
            fits = false;
        i++;
    }
    word[fits ? n : 0] = '\0';
    return i;
}

//  Returns the name of the first statement in sql that controls the transaction, with its
//  1-based line in *line, or NULL if there is none.
static const char *
s_find_tx_control (const char *sql, size_t len, int *line_p)
{
    int line = 1;
    size_t i = 0;
    bool at_start = true;       /* the next word begins a statement */
    int atomic = 0;             /* depth in BEGIN ATOMIC ... END, whose ; end no statement */
    char prev[16] = "";         /* the word just before, if the last token was one */
    while ((i = s_skip_blank (sql, len, i, &line)) < len) {
        unsigned char c = (unsigned char) sql[i];
        if (s_ident_start (c)) {
            char word[16];
            size_t end = s_read_word (sql, len, i, word, sizeof word);
            if (strcmp (word, "E") == 0 && end < len && sql[end] == '\'') {
                i = s_skip_quoted (sql, len, end, true, &line);
                at_start = false;
                prev[0] = '\0';
                continue;
            }
            if (at_start) {
                int next_line = line;
                char next[16];
                s_read_word (sql, len, s_skip_blank (sql, len, end, &next_line), next,
                             sizeof next);
                for (size_t k = 0; k < sizeof s_tx_control / sizeof s_tx_control[0]; k++)
                    if (strcmp (word, s_tx_control[k].word) == 0
                    &&  (!s_tx_control[k].next || strcmp (next, s_tx_control[k].next) == 0)) {
                        if (s_tx_control[k].name) {
                            *line_p = line;
                            return s_tx_control[k].name;
                        }
                        break;
                    }
            }
            //  An SQL-standard function body (CREATE FUNCTION ... BEGIN ATOMIC ... END) holds
            //  statements of its own, and the CASE ... END inside it count for its nesting.
            if (strcmp (word, "ATOMIC") == 0 && strcmp (prev, "BEGIN") == 0)
                atomic++;
            else if (atomic > 0 && strcmp (word, "CASE") == 0)
                atomic++;
            else if (atomic > 0 && strcmp (word, "END") == 0)
                atomic--;
            snprintf (prev, sizeof prev, "%s", word);
            at_start = false;
            i = end;
            continue;
        }
        prev[0] = '\0';
        if (c == ';') {
            at_start = atomic == 0;
            i++;
            continue;
        }
        at_start = false;
        if (c == '\'' || c == '"')
            i = s_skip_quoted (sql, len, i, false, &line);
        else if (c == '$') {
            size_t after = s_skip_dollar_quoted (sql, len, i, &line);
            i = after > i ? after : i + 1;
        }
        else
            i++;
    }
    return NULL;
}

static int
s_by_version (const void *a, const void *b)
{
    const s_migration_t *x = a, *y = b;
    return (x->version > y->version) - (x->version < y->version);
}

fks_migrate_t *
fks_migrate_load (const char *dir, FILE *out, fks_migrate_err_t *err)
{
    if (!dir || !*dir) {
        s_set_err (err, "no migrations directory given");
        return NULL;
    }
    DIR *d = opendir (dir);
    if (!d) {
        s_set_err (err, "cannot open the migrations directory %s: %s", dir, strerror (errno));
        return NULL;
    }
    fks_migrate_t *self = calloc (1, sizeof *self);
    size_t cap = 16;
    if (self) {
        self->dir = strdup (dir);
        self->items = calloc (cap, sizeof *self->items);
    }
    if (!self || !self->dir || !self->items) {
        s_set_err (err, "out of memory");
        closedir (d);
        fks_migrate_destroy (&self);
        return NULL;
    }
    struct dirent *e;
    size_t seen = 0;
    int rc = 0;
    while (rc == 0 && (e = readdir (d))) {
        if (++seen > FKS_MIGRATE_MAX_ENTRIES) {
            s_set_err (err, "%s has more than %d entries; is it the right directory?",
                       dir, FKS_MIGRATE_MAX_ENTRIES);
            rc = -1;
            break;
        }
        const char *file = e->d_name;
        //  Hidden entries include Kubernetes ConfigMap plumbing (..data); README* documents.
        if (file[0] == '.' || strncmp (file, "README", 6) == 0)
            continue;
        char path[4096];
        if (snprintf (path, sizeof path, "%s/%s", dir, file) >= (int) sizeof path) {
            s_say (out, "warning: ignoring %s/%s: path too long", dir, file);
            continue;
        }
        struct stat st;
        if (stat (path, &st) != 0 || !S_ISREG (st.st_mode)) {
            s_say (out, "warning: ignoring %s: not a regular file", path);
            continue;
        }
        s_migration_t m = { 0 };
        if (s_parse_file_name (file, &m.version, m.name) != 0) {
            s_say (out, "warning: ignoring %s: migrations are named NNNN_name.sql "
                   "(4 digits from 0001, then a-z, 0-9 and _)", path);
            continue;
        }
        snprintf (m.file, sizeof m.file, "%04d_%s.sql", m.version, m.name);
        for (size_t i = 0; i < self->n; i++)
            if (self->items[i].version == m.version) {
                s_set_err (err, "two migrations are numbered %04d: %s and %s; renumber one",
                           m.version, self->items[i].file, m.file);
                rc = -1;
                break;
            }
        if (rc != 0)
            break;
        if (s_read_file (path, &m, err) != 0) {
            rc = -1;
            break;
        }
        m.tx_control = s_find_tx_control (m.sql, m.len, &m.tx_line);
        if (self->n == cap) {
            s_migration_t *grown = realloc (self->items, 2 * cap * sizeof *grown);
            if (!grown) {
                free (m.sql);
                s_set_err (err, "out of memory");
                rc = -1;
                break;
            }
            self->items = grown;
            cap *= 2;
        }
        self->items[self->n++] = m;
    }
    closedir (d);
    if (rc != 0) {
        fks_migrate_destroy (&self);
        return NULL;
    }
    qsort (self->items, self->n, sizeof *self->items, s_by_version);
    return self;
}

void
fks_migrate_destroy (fks_migrate_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fks_migrate_t *self = *self_p;
    for (size_t i = 0; i < self->n; i++)
        free (self->items[i].sql);
    free (self->items);
    free (self->dir);
    free (self);
    *self_p = NULL;
}

size_t
fks_migrate_size (fks_migrate_t *self)
{
    return self ? self->n : 0;
}

int
fks_migrate_version (fks_migrate_t *self, size_t index)
{
    return self && index < self->n ? self->items[index].version : -1;
}

const char *
fks_migrate_name (fks_migrate_t *self, size_t index)
{
    return self && index < self->n ? self->items[index].name : NULL;
}

const char *
fks_migrate_checksum (fks_migrate_t *self, size_t index)
{
    return self && index < self->n ? self->items[index].checksum : NULL;
}

const char *
fks_migrate_tx_control (fks_migrate_t *self, size_t index, int *line)
{
    if (!self || index >= self->n || !self->items[index].tx_control)
        return NULL;
    if (line)
        *line = self->items[index].tx_line;
    return self->items[index].tx_control;
}


//  --------------------------------------------------------------------------
//  Applying

static const char *s_bootstrap_sql =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version integer PRIMARY KEY CHECK (version > 0),"
    " name text NOT NULL,"
    " checksum text NOT NULL CHECK (checksum ~ '^[0-9a-f]{64}$'),"
    " applied_at timestamptz NOT NULL DEFAULT now())";

static s_migration_t *
s_find (fks_migrate_t *self, int version)
{
    for (size_t i = 0; i < self->n; i++)
        if (self->items[i].version == version)
            return &self->items[i];
    return NULL;
}

//  Begins a transaction and takes the migration lock. 0 or -1.
static int
s_begin_locked (fks_pg_t *pg, fks_migrate_err_t *err)
{
    fks_pg_err_t perr;
    if (fks_pg_begin (pg, &perr) != 0
    ||  fks_pg_command (pg, "SELECT pg_advisory_xact_lock(" S_LOCK_KEY ")", &perr) != 0) {
        s_set_err (err, "cannot start a migration transaction: %s%s%s",
                   perr.sqlstate[0] ? perr.sqlstate : "", perr.sqlstate[0] ? ": " : "", perr.msg);
        fks_pg_rollback (pg);
        return -1;
    }
    return 0;
}

static void
s_pg_fail (fks_migrate_err_t *err, const char *what, const fks_pg_err_t *perr)
{
    s_set_err (err, "%s: %s%s%s", what, perr->sqlstate[0] ? perr->sqlstate : "",
               perr->sqlstate[0] ? ": " : "", perr->msg);
}

//  Checks what the database has recorded against the files. Sets *max_applied and the
//  applied flags (by version, in `applied_set`). 0 or -1.
static int
s_check_recorded (fks_migrate_t *self, fks_pg_t *pg, FILE *out, bool *applied_set,
                  int *max_applied, fks_migrate_err_t *err)
{
    fks_pg_err_t perr;
    if (s_begin_locked (pg, err) != 0)
        return -1;
    if (fks_pg_command (pg, s_bootstrap_sql, &perr) != 0) {
        s_pg_fail (err, "cannot create schema_migrations", &perr);
        fks_pg_rollback (pg);
        return -1;
    }
    PGresult *res = fks_pg_query (pg, "SELECT version, name, checksum FROM schema_migrations "
                                  "ORDER BY version LIMIT 100001", 0, NULL, NULL, NULL, &perr);
    if (!res) {
        s_pg_fail (err, "cannot read schema_migrations", &perr);
        fks_pg_rollback (pg);
        return -1;
    }
    int rows = PQntuples (res);
    int rc = 0;
    if (rows > S_MAX_RECORDED) {
        s_set_err (err, "schema_migrations has more than %d rows; refusing to go on",
                   S_MAX_RECORDED);
        rc = -1;
    }
    *max_applied = 0;
    for (int r = 0; rc == 0 && r < rows; r++) {
        const char *vtext = PQgetvalue (res, r, 0);
        const char *name = PQgetvalue (res, r, 1);
        const char *sum = PQgetvalue (res, r, 2);
        char *end = NULL;
        long v = strtol (vtext, &end, 10);
        if (!end || *end || v < 1 || v > 9999) {
            s_set_err (err, "schema_migrations holds a version outside 1-9999 (%.12s)", vtext);
            rc = -1;
            break;
        }
        if (v > *max_applied)
            *max_applied = (int) v;
        s_migration_t *m = s_find (self, (int) v);
        if (!m) {
            s_say (out, "warning: the database has migration %04ld_%.64s, which is not in %s "
                   "(is this build older than the database?)", v, name, self->dir);
            continue;
        }
        applied_set[v] = true;
        if (strcmp (m->checksum, sum) != 0) {
            s_set_err (err, "migration %s was applied with SHA-256 %.12s... but the file now "
                       "has %.12s...; an applied migration must never change "
                       "(restore it and add a new migration instead)", m->file, sum, m->checksum);
            rc = -1;
            break;
        }
        if (strcmp (m->name, name) != 0)
            s_say (out, "warning: migration %04ld is recorded as '%.64s' but the file is %s "
                   "(same content)", v, name, m->file);
    }
    PQclear (res);
    if (rc != 0) {
        fks_pg_rollback (pg);
        return -1;
    }
    if (fks_pg_commit (pg, &perr) != 0) {
        s_pg_fail (err, "cannot commit", &perr);
        fks_pg_rollback (pg);
        return -1;
    }
    return 0;
}

//  Line number (1-based) of the character at 1-based position `pos` of text, for errors.
//  PostgreSQL counts characters, not bytes; the text is UTF-8.
static int
s_line_of (const char *text, size_t len, long pos)
{
    int line = 1;
    long chars = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) text[i];
        if ((c & 0xC0) != 0x80 && ++chars >= pos)
            break;
        if (c == '\n')
            line++;
    }
    return line;
}

//  Refuses a migration that controls the transaction itself. 0 or -1.
static int
s_check_tx_control (s_migration_t *m, fks_migrate_err_t *err)
{
    if (!m->tx_control)
        return 0;
    s_set_err (err, "migration %s has its own transaction control (%s at line %d); remove "
               "it: the runner applies each file in one transaction with its "
               "schema_migrations row (nothing was applied)", m->file, m->tx_control, m->tx_line);
    return -1;
}

//  Applies one migration in its own locked transaction. Returns 1 if applied, 0 if another
//  run had applied it meanwhile, -1 on error (rolled back).
static int
s_apply_one (fks_migrate_t *self, s_migration_t *m, fks_pg_t *pg, fks_migrate_err_t *err)
{
    (void) self;
    //  fks_migrate_apply refused such a file before applying any; this keeps any other
    //  caller from running one.
    if (s_check_tx_control (m, err) != 0)
        return -1;
    fks_pg_err_t perr;
    if (s_begin_locked (pg, err) != 0)
        return -1;

    //  Under the lock, look again: a concurrent run may have got here first.
    char version[16];
    snprintf (version, sizeof version, "%d", m->version);
    const char *params[1] = { version };
    PGresult *res = fks_pg_query (pg,
        "SELECT (SELECT checksum FROM schema_migrations WHERE version = $1::integer),"
        "       (SELECT max(version) FROM schema_migrations)", 1, params, NULL, NULL, &perr);
    if (!res) {
        s_pg_fail (err, "cannot read schema_migrations", &perr);
        fks_pg_rollback (pg);
        return -1;
    }
    bool recorded = !PQgetisnull (res, 0, 0);
    bool same = recorded && strcmp (PQgetvalue (res, 0, 0), m->checksum) == 0;
    long max_applied = PQgetisnull (res, 0, 1) ? 0 : strtol (PQgetvalue (res, 0, 1), NULL, 10);
    PQclear (res);
    if (recorded) {
        fks_pg_rollback (pg);
        if (!same) {
            s_set_err (err, "migration %s was applied meanwhile with another SHA-256; an "
                       "applied migration must never change", m->file);
            return -1;
        }
        return 0;
    }
    if (max_applied > m->version) {
        fks_pg_rollback (pg);
        s_set_err (err, "migration %s is older than %04ld, which is already applied; "
                   "renumber it above %04ld", m->file, max_applied, max_applied);
        return -1;
    }

    //  The file itself: run raw so that the error position (a line number) is available.
    PGconn *conn = fks_pg_conn (pg);
    res = conn ? PQexec (conn, m->sql) : NULL;
    ExecStatusType st = res ? PQresultStatus (res) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
        const char *state = res ? PQresultErrorField (res, PG_DIAG_SQLSTATE) : NULL;
        const char *primary = res ? PQresultErrorField (res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
        const char *pos = res ? PQresultErrorField (res, PG_DIAG_STATEMENT_POSITION) : NULL;
        char where[32] = "";
        if (pos)
            snprintf (where, sizeof where, " (line %d)", s_line_of (m->sql, m->len, atol (pos)));
        if (!primary && conn)
            primary = PQerrorMessage (conn);
        s_set_err (err, "migration %s failed%s: %s%s%.300s", m->file, where,
                   state ? state : "", state ? ": " : "", primary ? primary : "no answer");
        //  libpq messages end with a newline; keep the error one line.
        for (char *p = err ? err->msg : NULL; p && *p; p++)
            if (*p == '\n')
                *p = ' ';
        PQclear (res);
        fks_pg_rollback (pg);
        return -1;
    }
    PQclear (res);
    //  A second line of defence behind s_check_tx_control, should the scan ever miss a
    //  statement that ended the transaction.
    if (PQtransactionStatus (conn) != PQTRANS_INTRANS) {
        fks_pg_rollback (pg);
        s_set_err (err, "migration %s ended its own transaction (COMMIT or ROLLBACK in the "
                   "file); remove it, the runner wraps each file in a transaction", m->file);
        return -1;
    }
    const char *row[3] = { version, m->name, m->checksum };
    res = fks_pg_query (pg, "INSERT INTO schema_migrations (version, name, checksum) "
                        "VALUES ($1::integer, $2, $3)", 3, row, NULL, NULL, &perr);
    if (!res) {
        s_pg_fail (err, "cannot record the migration", &perr);
        fks_pg_rollback (pg);
        return -1;
    }
    PQclear (res);
    if (fks_pg_commit (pg, &perr) != 0) {
        char what[128];
        snprintf (what, sizeof what, "cannot commit migration %s", m->file);
        s_pg_fail (err, what, &perr);
        fks_pg_rollback (pg);
        return -1;
    }
    return 1;
}

int
fks_migrate_apply (fks_migrate_t *self, fks_pg_t *pg, FILE *out, int *applied,
                   fks_migrate_err_t *err)
{
    if (applied)
        *applied = 0;
    if (!self || !pg) {
        s_set_err (err, "nothing to migrate with (no migrations or no database handle)");
        return -1;
    }
    fks_pg_err_t perr;
    if (fks_pg_connect (pg, &perr) != 0) {
        s_set_err (err, "%s", perr.msg);
        return -1;
    }
    bool applied_set[10000] = { false };
    int max_applied = 0;
    if (s_check_recorded (self, pg, out, applied_set, &max_applied, err) != 0)
        return -1;

    //  Refuse before applying anything if a pending migration is older than history or
    //  controls its own transaction. Applied ones are history: they were recorded, and
    //  refusing them now would only stop every run.
    for (size_t i = 0; i < self->n; i++) {
        s_migration_t *m = &self->items[i];
        if (!applied_set[m->version] && s_check_tx_control (m, err) != 0)
            return -1;
        if (!applied_set[m->version] && m->version < max_applied) {
            s_set_err (err, "migration %s is older than %04d, which is already applied; "
                       "renumber it above %04d", m->file, max_applied, max_applied);
            return -1;
        }
    }
    int count = 0;
    int current = max_applied;
    for (size_t i = 0; i < self->n; i++) {
        s_migration_t *m = &self->items[i];
        if (applied_set[m->version])
            continue;
        struct timespec t0, t1;
        clock_gettime (CLOCK_MONOTONIC, &t0);
        int rc = s_apply_one (self, m, pg, err);
        if (rc < 0) {
            if (applied)
                *applied = count;
            return -1;
        }
        clock_gettime (CLOCK_MONOTONIC, &t1);
        if (rc == 1) {
            count++;
            long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
            s_say (out, "applied %s (sha256 %.12s) in %ld ms", m->file, m->checksum, ms);
        }
        else
            s_say (out, "skipped %s: another run applied it", m->file);
        if (m->version > current)
            current = m->version;
    }
    if (applied)
        *applied = count;
    if (count == 0)
        s_say (out, "database is up to date (version %04d, %zu migration%s)", current,
               self->n, self->n == 1 ? "" : "s");
    else
        s_say (out, "applied %d migration%s; database at version %04d", count,
               count == 1 ? "" : "s", current);
    return 0;
}
