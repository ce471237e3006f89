/*  pg.c - one PostgreSQL connection with reconnect and prepared statements.
 *
 *  Every FKS program that writes an effect goes through here. The handle keeps the parsed
 *  connection options (with a connect timeout and TCP keepalives by default, s_defaults), the table of named statements
 *  it prepares on every (re)connect, and one libpq connection that is opened lazily.
 *
 *  The reconnect rule is the heart of this file. Before a call sends anything it checks the
 *  connection without a round trip: libpq's status, then whether the idle socket has anything
 *  to read (an idle connection only gets bytes when the server is telling it goodbye, e.g.
 *  after pg_terminate_backend or a restart). A connection found broken at that point is
 *  replaced once and the call goes ahead, because nothing was sent. A failure after sending
 *  is reported with conn_lost set and never retried, because the server may have applied the
 *  statement. A connection lost inside a transaction is never silently replaced either: the
 *  handle refuses further calls until the caller rolls back, so the rest of a transaction can
 *  never run in autocommit on a fresh connection.
 *
 *  Errors carry the SQLSTATE and one line of message; parameter values and DETAIL lines are
 *  never copied into them, since they may hold secrets. Server notices go to the JSON log.
 */
#include "common/pg.h"
#include "common/sbuf.h"
#include "common/log.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Connection options FKS sets unless the URL does. A server that stops answering (a network
//  partition, a host gone without a reset) would otherwise hold a caller for the kernel's
//  TCP timeouts: two hours before an idle connection is probed, about fifteen minutes before
//  unacknowledged data gives up. With these a dead server is noticed within about a minute
//  (conn_lost, and the caller's retry reconnects); a slow query is not cut short, since the
//  server's kernel answers the probes while it runs.
static const struct {
    const char *key, *val;
} s_defaults[] = {
    { "connect_timeout", "5" },             /* seconds */
    { "fallback_application_name", "fks" },
    { "keepalives", "1" },
    { "keepalives_idle", "30" },            /* seconds of silence before the first probe */
    { "keepalives_interval", "10" },
    { "keepalives_count", "3" },
    { "tcp_user_timeout", "60000" },        /* ms data may stay unacknowledged */
};
#define S_N_DEFAULTS (sizeof s_defaults / sizeof s_defaults[0])
#define S_MAX_URL           8192
#define S_MAX_STMTS         1024
#define S_MAX_NAME          63          /* PostgreSQL's identifier limit (NAMEDATALEN - 1) */
#define S_MAX_SQL           (1024 * 1024)
#define S_MAX_DRAIN         4096        /* bound on results/rows drained after an abort */
#define S_MAX_IDLE_READS    8           /* bound on reads while checking an idle socket */

static inline bool
s_streq (const char *a, const char *b)
{
    return strcmp (a, b) == 0;
}

struct fks_pg_t {
    char **keys;                /* connection options, NULL-terminated, for PQconnectdbParams */
    char **vals;
    fks_pg_stmt_t *stmts;       /* our own copies */
    size_t n_stmts;
    PGconn *conn;               /* NULL until the first connect */
    bool in_tx;                 /* the server last said we were inside a transaction */
    bool tx_lost;               /* the connection died inside a transaction: refuse until rollback */
    bool goodbye;               /* the server sent FATAL on the idle connection: it is closing */
};


//  --------------------------------------------------------------------------
//  Error helpers

static void
s_err_clear (fks_pg_err_t *err)
{
    if (err) {
        err->sqlstate[0] = '\0';
        err->conn_lost = false;
        err->msg[0] = '\0';
    }
}

//  Copies text into err->msg as one line: newlines and tabs become spaces, runs of spaces
//  collapse, and leading/trailing blanks go.
static void
s_set_msg_line (fks_pg_err_t *err, const char *prefix, const char *text)
{
    if (!err)
        return;
    size_t cap = sizeof err->msg;
    size_t n = 0;
    if (prefix) {
        int w = snprintf (err->msg, cap, "%s", prefix);
        n = w < 0 ? 0 : ((size_t) w >= cap ? cap - 1 : (size_t) w);
    }
    bool space = n == 0 || err->msg[n - 1] == ' ';
    for (const char *p = text ? text : ""; *p && n + 1 < cap; p++) {
        unsigned char c = (unsigned char) *p;
        if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
            if (!space) {
                err->msg[n++] = ' ';
                space = true;
            }
            continue;
        }
        err->msg[n++] = (char) (c < 0x20 ? '?' : c);
        space = false;
    }
    while (n > 0 && err->msg[n - 1] == ' ')
        n--;
    err->msg[n] = '\0';
}

static void
s_set_err (fks_pg_err_t *err, const char *sqlstate, bool conn_lost, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));

static void
s_set_err (fks_pg_err_t *err, const char *sqlstate, bool conn_lost, const char *fmt, ...)
{
    if (!err)
        return;
    snprintf (err->sqlstate, sizeof err->sqlstate, "%s", sqlstate ? sqlstate : "");
    err->conn_lost = conn_lost;
    char text[sizeof err->msg];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (text, sizeof text, fmt, ap);
    va_end (ap);
    s_set_msg_line (err, NULL, text);
}

//  Fills err from a failed result (or from the connection when res is NULL).
static void
s_set_err_from (fks_pg_t *self, const PGresult *res, fks_pg_err_t *err)
{
    if (!err)
        return;
    bool lost = !self->conn || PQstatus (self->conn) != CONNECTION_OK;
    const char *state = res ? PQresultErrorField (res, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = res ? PQresultErrorField (res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    snprintf (err->sqlstate, sizeof err->sqlstate, "%s", state ? state : "");
    err->conn_lost = lost;
    if (primary)
        s_set_msg_line (err, NULL, primary);
    else
    if (res && *PQresultErrorMessage (res))
        s_set_msg_line (err, NULL, PQresultErrorMessage (res));
    else
    if (self->conn && *PQerrorMessage (self->conn))
        s_set_msg_line (err, NULL, PQerrorMessage (self->conn));
    else
        s_set_msg_line (err, NULL, lost ? "connection to the server lost" : "unknown error");
}


//  --------------------------------------------------------------------------
//  Connection options

//  libpq's parse errors quote the offending part of the URL, which may be (or hold) the password,
//  and a password may itself hold quotes: only libpq's own words before the first quote are
//  kept ("invalid percent-encoded token", "missing key/value separator..."), never the text.
static void
s_set_parse_err (fks_pg_err_t *err, const char *libpq_msg)
{
    const char *m = libpq_msg ? libpq_msg : "";
    size_t n = strcspn (m, "\"\n");
    while (n > 0 && (m[n - 1] == ' ' || m[n - 1] == ':'))
        n--;
    s_set_err (err, "", false, "invalid PostgreSQL URL: %.*s (the URL is not repeated: it may "
               "hold a password)", n > 0 ? (int) n : 15, n > 0 ? m : "cannot parse it");
}

static void
s_free_strv (char **v)
{
    if (v) {
        for (char **p = v; *p; p++)
            free (*p);
        free (v);
    }
}

//  Parses url into NULL-terminated keyword/value arrays, adding the s_defaults the URL does
//  not set. Returns 0 or -1.
static int
s_parse_url (fks_pg_t *self, const char *url, fks_pg_err_t *err)
{
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse (url, &errmsg);
    if (!opts) {
        s_set_parse_err (err, errmsg ? errmsg : "out of memory");
        PQfreemem (errmsg);
        return -1;
    }
    size_t n = 0;
    bool has[S_N_DEFAULTS] = { false };
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val)
            continue;
        n++;
        for (size_t d = 0; d < S_N_DEFAULTS; d++)
            if (s_streq (o->keyword, s_defaults[d].key))
                has[d] = true;
    }
    //  One slot more than needed: room for "options" (fks_pg_set_option) and the NULL.
    self->keys = calloc (n + S_N_DEFAULTS + 2, sizeof (char *));
    self->vals = calloc (n + S_N_DEFAULTS + 2, sizeof (char *));
    if (!self->keys || !self->vals) {
        PQconninfoFree (opts);
        s_set_err (err, "", false, "out of memory");
        return -1;
    }
    size_t i = 0;
    bool oom = false;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val)
            continue;
        self->keys[i] = strdup (o->keyword);
        self->vals[i] = strdup (o->val);
        oom |= !self->keys[i] || !self->vals[i];
        i++;
    }
    for (size_t d = 0; d < S_N_DEFAULTS; d++) {
        if (has[d])
            continue;
        self->keys[i] = strdup (s_defaults[d].key);
        self->vals[i] = strdup (s_defaults[d].val);
        oom |= !self->keys[i] || !self->vals[i];
        i++;
    }
    PQconninfoFree (opts);
    if (oom) {
        s_set_err (err, "", false, "out of memory");
        return -1;
    }
    return 0;
}


//  --------------------------------------------------------------------------
//  Construction

//  Server notices go to the log. An ErrorResponse that arrives on an idle connection also
//  comes here (libpq treats it as a notice); it is FATAL when the server is about to close
//  the connection (pg_terminate_backend, shutdown), which marks the connection as dead even
//  before the socket's end-of-file arrives.
static void
s_notice_receiver (void *arg, const PGresult *res)
{
    fks_pg_t *self = arg;
    const char *severity = PQresultErrorField (res, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *state = PQresultErrorField (res, PG_DIAG_SQLSTATE);
    const char *primary = PQresultErrorField (res, PG_DIAG_MESSAGE_PRIMARY);
    bool fatal = severity && (s_streq (severity, "FATAL") || s_streq (severity, "PANIC"));
    bool warning = fatal || (severity && s_streq (severity, "WARNING"));
    if (fatal)
        self->goodbye = true;
    char fields[96] = "";
    fks_log_field_str (fields, sizeof fields, "sqlstate", state ? state : "");
    fks_log (warning ? FKS_LOG_WARN : FKS_LOG_DEBUG, NULL, fields, "postgres %s: %s",
             severity ? severity : "NOTICE", primary ? primary : "");
}

fks_pg_t *
fks_pg_new (const char *url, const fks_pg_stmt_t *stmts, size_t n_stmts, fks_pg_err_t *err)
{
    s_err_clear (err);
    if (!url || !*url) {
        s_set_err (err, "", false, "invalid PostgreSQL URL: it is empty");
        return NULL;
    }
    if (strnlen (url, S_MAX_URL + 1) > S_MAX_URL) {
        s_set_err (err, "", false, "invalid PostgreSQL URL: longer than %d bytes", S_MAX_URL);
        return NULL;
    }
    if (n_stmts > S_MAX_STMTS || (n_stmts > 0 && !stmts)) {
        s_set_err (err, "", false, "invalid statement table (%zu statements)", n_stmts);
        return NULL;
    }
    for (size_t i = 0; i < n_stmts; i++) {
        const fks_pg_stmt_t *s = &stmts[i];
        if (!s->name || !s->sql || !*s->name || strlen (s->name) > S_MAX_NAME
        ||  strlen (s->sql) > S_MAX_SQL || s->n_params < 0 || s->n_params > 65535
        ||  (s->flags & ~FKS_PG_CUSTOM_PLAN) != 0) {
            s_set_err (err, "", false, "statement %zu is malformed (needs a name of 1-%d bytes, "
                       "SQL, 0-65535 parameters and known flags)", i, S_MAX_NAME);
            return NULL;
        }
        for (size_t j = 0; j < i; j++)
            if (s_streq (stmts[j].name, s->name)) {
                s_set_err (err, "", false, "statement name '%s' is used twice", s->name);
                return NULL;
            }
    }
    fks_pg_t *self = calloc (1, sizeof *self);
    if (!self) {
        s_set_err (err, "", false, "out of memory");
        return NULL;
    }
    if (s_parse_url (self, url, err) != 0) {
        fks_pg_destroy (&self);
        return NULL;
    }
    if (n_stmts > 0) {
        self->stmts = calloc (n_stmts, sizeof *self->stmts);
        if (!self->stmts) {
            fks_pg_destroy (&self);
            s_set_err (err, "", false, "out of memory");
            return NULL;
        }
        self->n_stmts = n_stmts;
        for (size_t i = 0; i < n_stmts; i++) {
            self->stmts[i].name = strdup (stmts[i].name);
            self->stmts[i].sql = strdup (stmts[i].sql);
            self->stmts[i].n_params = stmts[i].n_params;
            self->stmts[i].flags = stmts[i].flags;
            if (!self->stmts[i].name || !self->stmts[i].sql) {
                fks_pg_destroy (&self);
                s_set_err (err, "", false, "out of memory");
                return NULL;
            }
        }
    }
    return self;
}

int
fks_pg_set_option (fks_pg_t *self, const char *name, const char *value, fks_pg_err_t *err)
{
    assert (self);
    s_err_clear (err);
    //  Plain words only: the options string separates arguments with spaces and escapes with
    //  backslashes, and neither has a use in a setting FKS makes.
    bool ok = name && value && *name && *value && strlen (name) <= 63 && strlen (value) <= 63;
    for (const char *c = name; ok && *c; c++)
        ok = islower ((unsigned char) *c) || *c == '_' || *c == '.';
    for (const char *c = value; ok && *c; c++)
        ok = isalnum ((unsigned char) *c) || *c == '_' || *c == '.';
    if (!ok) {
        s_set_err (err, "", false, "invalid session setting (name [a-z_.], value [A-Za-z0-9_.], "
                   "1-63 bytes each)");
        return -1;
    }
    size_t i = 0;
    while (self->keys[i] && !s_streq (self->keys[i], "options"))
        i++;                        /* the URL's options, or the spare slot before the NULL */
    const char *old = self->keys[i] ? self->vals[i] : "";
    size_t cap = strlen (old) + strlen (name) + strlen (value) + 8;
    char *opt = malloc (cap);
    char *key = self->keys[i] ? NULL : strdup ("options");
    if (!opt || (!self->keys[i] && !key)) {
        free (opt);
        free (key);
        s_set_err (err, "", false, "out of memory");
        return -1;
    }
    //  After what the URL says, so that this setting wins; it applies from the next connect.
    snprintf (opt, cap, "%s%s-c %s=%s", old, *old ? " " : "", name, value);
    if (key)
        self->keys[i] = key;        /* the array's last slot stays NULL */
    else
        free (self->vals[i]);
    self->vals[i] = opt;
    return 0;
}

void
fks_pg_destroy (fks_pg_t **self_p)
{
    assert (self_p);
    fks_pg_t *self = *self_p;
    if (!self)
        return;
    if (self->conn)
        PQfinish (self->conn);
    s_free_strv (self->keys);
    s_free_strv (self->vals);
    for (size_t i = 0; i < self->n_stmts; i++) {
        free ((char *) self->stmts[i].name);
        free ((char *) self->stmts[i].sql);
    }
    free (self->stmts);
    free (self);
    *self_p = NULL;
}


//  --------------------------------------------------------------------------
//  Connection state

//  Drops a dead connection. If it died inside a transaction, remembers that so the rest of
//  the transaction cannot run in autocommit on a new connection.
static void
s_drop (fks_pg_t *self)
{
    if (self->conn) {
        PQfinish (self->conn);
        self->conn = NULL;
    }
    if (self->in_tx)
        self->tx_lost = true;
    self->in_tx = false;
}

static void
s_note_tx (fks_pg_t *self)
{
    if (!self->conn || PQstatus (self->conn) != CONNECTION_OK)
        return;
    PGTransactionStatusType ts = PQtransactionStatus (self->conn);
    self->in_tx = ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR || ts == PQTRANS_ACTIVE;
}

//  True if the connection looks usable without a round trip. An idle connection should have
//  nothing to read; if the socket is readable we read what is there, which is how libpq learns
//  that the server has closed it (e.g. after pg_terminate_backend or a restart).
static bool
s_alive (fks_pg_t *self)
{
    if (!self->conn || PQstatus (self->conn) != CONNECTION_OK || self->goodbye)
        return false;
    int fd = PQsocket (self->conn);
    if (fd < 0)
        return false;
    for (int i = 0; i < S_MAX_IDLE_READS; i++) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int rc = poll (&pfd, 1, 0);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            break;              /* nothing to read: looks alive */
        if (pfd.revents & (POLLERR | POLLNVAL))
            return false;
        if (!PQconsumeInput (self->conn))
            return false;
        //  Let libpq parse what arrived (notices, parameter changes, a FATAL goodbye) and
        //  throw away notifications nobody here listens to.
        PQisBusy (self->conn);
        PGnotify *note;
        while ((note = PQnotifies (self->conn)))
            PQfreemem (note);
        if (PQstatus (self->conn) != CONNECTION_OK || self->goodbye)
            return false;
    }
    return PQstatus (self->conn) == CONNECTION_OK;
}

//  Opens a new connection and prepares every statement. 0 or -1 (err filled, no connection
//  kept).
static int
s_open (fks_pg_t *self, fks_pg_err_t *err)
{
    self->conn = PQconnectdbParams ((const char *const *) self->keys,
                                    (const char *const *) self->vals, 0);
    if (!self->conn) {
        s_set_err (err, "", true, "cannot connect to PostgreSQL: out of memory");
        return -1;
    }
    if (PQstatus (self->conn) != CONNECTION_OK) {
        s_set_msg_line (err, "cannot connect to PostgreSQL: ", PQerrorMessage (self->conn));
        if (err) {
            err->sqlstate[0] = '\0';
            err->conn_lost = true;
        }
        PQfinish (self->conn);
        self->conn = NULL;
        return -1;
    }
    self->goodbye = false;
    PQsetNoticeReceiver (self->conn, s_notice_receiver, self);
    //  Statements flagged FKS_PG_CUSTOM_PLAN are prepared too, so that a mistake in their SQL
    //  shows on connect; they run with their SQL (pg.h, "Plans").
    for (size_t i = 0; i < self->n_stmts; i++) {
        const fks_pg_stmt_t *s = &self->stmts[i];
        PGresult *res = PQprepare (self->conn, s->name, s->sql, s->n_params, NULL);
        if (!res || PQresultStatus (res) != PGRES_COMMAND_OK) {
            fks_pg_err_t tmp;
            s_set_err_from (self, res, &tmp);
            s_set_err (err, tmp.sqlstate, tmp.conn_lost, "cannot prepare statement %s: %s",
                       s->name, tmp.msg);
            PQclear (res);
            PQfinish (self->conn);
            self->conn = NULL;
            return -1;
        }
        PQclear (res);
    }
    self->in_tx = false;
    return 0;
}

//  Makes sure there is a live connection before a call sends anything. A broken connection is
//  replaced here (once per call) unless it broke inside a transaction.
static int
s_ready (fks_pg_t *self, fks_pg_err_t *err)
{
    if (self->tx_lost) {
        s_set_err (err, "08006", true, "connection lost inside a transaction; "
                   "roll back before the next call");
        return -1;
    }
    s_note_tx (self);           /* the caller may have used fks_pg_conn directly */
    if (s_alive (self))
        return 0;
    bool was_in_tx = self->conn && self->in_tx;
    if (self->conn)
        s_drop (self);
    if (was_in_tx) {
        s_set_err (err, "08006", true, "connection lost inside a transaction; "
                   "roll back before the next call");
        return -1;
    }
    return s_open (self, err);
}

int
fks_pg_connect (fks_pg_t *self, fks_pg_err_t *err)
{
    assert (self);
    s_err_clear (err);
    return s_ready (self, err);
}

bool
fks_pg_connected (fks_pg_t *self)
{
    assert (self);
    return self->conn && PQstatus (self->conn) == CONNECTION_OK;
}

PGconn *
fks_pg_conn (fks_pg_t *self)
{
    assert (self);
    return self->conn;
}


//  --------------------------------------------------------------------------
//  Running statements

//  After PQexec returned a COPY state, ends the copy so the connection is usable again.
static void
s_abort_copy (fks_pg_t *self, PGresult *res)
{
    ExecStatusType st = PQresultStatus (res);
    if (st == PGRES_COPY_IN)
        PQputCopyEnd (self->conn, "COPY FROM STDIN is not supported by fks_pg_query");
    else
    if (st == PGRES_COPY_OUT) {
        for (int i = 0; i < S_MAX_DRAIN; i++) {
            char *row = NULL;
            int n = PQgetCopyData (self->conn, &row, 0);
            if (row)
                PQfreemem (row);
            if (n < 0)
                break;
        }
    }
    else
    if (st == PGRES_COPY_BOTH) {
        s_drop (self);
        return;
    }
    int i;
    for (i = 0; i < S_MAX_DRAIN; i++) {
        PGresult *more = PQgetResult (self->conn);
        if (!more)
            break;
        PQclear (more);
    }
    if (i == S_MAX_DRAIN)
        s_drop (self);          /* cannot get back in sync: start over next call */
}

//  Checks a result: returns it on success, or clears it, fills err and returns NULL.
static PGresult *
s_finish (fks_pg_t *self, PGresult *res, fks_pg_err_t *err)
{
    ExecStatusType st = res ? PQresultStatus (res) : PGRES_FATAL_ERROR;
    if (res && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)) {
        s_note_tx (self);
        return res;
    }
    if (res && (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH)) {
        s_abort_copy (self, res);
        s_set_err (err, "0A000", false, "COPY is not supported here; use fks_pg_conn");
    }
    else
    if (res && st == PGRES_EMPTY_QUERY)
        s_set_err (err, "", false, "empty query");
    else
        s_set_err_from (self, res, err);
    PQclear (res);
    if (!self->conn || PQstatus (self->conn) != CONNECTION_OK) {
        if (err)
            err->conn_lost = true;
        s_drop (self);
    }
    else
        s_note_tx (self);
    return NULL;
}

static const fks_pg_stmt_t *
s_find_stmt (fks_pg_t *self, const char *name)
{
    for (size_t i = 0; i < self->n_stmts; i++)
        if (s_streq (self->stmts[i].name, name))
            return &self->stmts[i];
    return NULL;
}

//  The statement table entry for name with n_params, or NULL with err.
static const fks_pg_stmt_t *
s_stmt_for (fks_pg_t *self, const char *name, int n_params, const char *const *values,
            fks_pg_err_t *err)
{
    const fks_pg_stmt_t *stmt = name ? s_find_stmt (self, name) : NULL;
    if (!stmt) {
        s_set_err (err, "", false, "unknown statement '%s'", name ? name : "(null)");
        return NULL;
    }
    if (n_params != stmt->n_params || (n_params > 0 && !values)) {
        s_set_err (err, "", false, "statement %s takes %d parameters, got %d",
                   name, stmt->n_params, values || n_params == 0 ? n_params : 0);
        return NULL;
    }
    return stmt;
}

PGresult *
fks_pg_exec (fks_pg_t *self, const char *name, int n_params, const char *const *values,
             const int *lengths, const int *formats, fks_pg_err_t *err)
{
    assert (self);
    s_err_clear (err);
    const fks_pg_stmt_t *stmt = s_stmt_for (self, name, n_params, values, err);
    if (!stmt)
        return NULL;
    if (s_ready (self, err) != 0)
        return NULL;
    PGresult *res = stmt->flags & FKS_PG_CUSTOM_PLAN
        ? PQexecParams (self->conn, stmt->sql, n_params, NULL, values, lengths, formats, 0)
        : PQexecPrepared (self->conn, name, n_params, values, lengths, formats, 0);
    return s_finish (self, res, err);
}

PGresult *
fks_pg_query (fks_pg_t *self, const char *sql, int n_params, const char *const *values,
              const int *lengths, const int *formats, fks_pg_err_t *err)
{
    assert (self);
    s_err_clear (err);
    if (!sql || n_params < 0 || n_params > 65535 || (n_params > 0 && !values)) {
        s_set_err (err, "", false, "invalid query (no SQL, or parameters missing)");
        return NULL;
    }
    if (s_ready (self, err) != 0)
        return NULL;
    PGresult *res = n_params == 0
        ? PQexec (self->conn, sql)
        : PQexecParams (self->conn, sql, n_params, NULL, values, lengths, formats, 0);
    return s_finish (self, res, err);
}

//  Runs [pre], the calls, [post] in one round trip (libpq's pipeline mode): pre and post are
//  parameterless commands (BEGIN, COMMIT) or NULL, the calls' statements were looked up by the
//  caller (stmts[i] for calls[i]). Each call's result goes to out[i] (out may be NULL: all
//  discarded). 0, or -1 with err from the first part that failed; the parts after a failed
//  one are skipped by the server, and no result is kept. Afterwards the connection is out of
//  pipeline mode, or dropped when it broke.
static int
s_pipeline (fks_pg_t *self, const char *pre, const fks_pg_call_t *calls,
            const fks_pg_stmt_t *const *stmts, size_t n, const char *post, PGresult **out,
            fks_pg_err_t *err)
{
    for (size_t i = 0; out && i < n; i++)
        out[i] = NULL;
    if (s_ready (self, err) != 0)
        return -1;
    PGconn *c = self->conn;
    if (!PQenterPipelineMode (c)) {
        s_set_err (err, "", false, "cannot enter pipeline mode: %s", PQerrorMessage (c));
        return -1;
    }
    int sent = 0;
    bool ok = true;
    if (pre) {
        ok = PQsendQueryParams (c, pre, 0, NULL, NULL, NULL, NULL, 0) == 1 && ++sent;
        //  From here the server may be inside the transaction: a connection lost before its
        //  answer is a lost transaction (s_drop), never silently replaced.
        self->in_tx = self->in_tx || ok;
    }
    for (size_t i = 0; i < n && ok; i++) {
        const fks_pg_call_t *k = &calls[i];
        ok = (stmts[i]->flags & FKS_PG_CUSTOM_PLAN
              ? PQsendQueryParams (c, stmts[i]->sql, k->n_params, NULL, k->values, k->lengths,
                                   k->formats, 0)
              : PQsendQueryPrepared (c, stmts[i]->name, k->n_params, k->values, k->lengths,
                                     k->formats, 0))
             == 1 && ++sent;
    }
    if (ok && post)
        ok = PQsendQueryParams (c, post, 0, NULL, NULL, NULL, NULL, 0) == 1 && ++sent;
    if (ok)
        ok = PQpipelineSync (c) == 1;
    int first = pre ? 1 : 0, rc = 0;
    //  One result (then a NULL) per query sent, then the sync's.
    for (int i = 0; i < sent && ok; i++) {
        PGresult *res = PQgetResult (c);
        if (!res) {
            ok = false;
            break;
        }
        while (PQgetResult (c) != NULL)
            ;                       /* nothing else comes for one query; read to its end */
        ExecStatusType st = PQresultStatus (res);
        bool good = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
        if (good && post && i == sent - 1 && strcmp (PQcmdStatus (res), "ROLLBACK") == 0) {
            //  As fks_pg_commit: COMMIT of a failed transaction answers ROLLBACK.
            if (rc == 0)
                s_set_err (err, "25P02", false, "the transaction was rolled back (an earlier "
                           "statement in it failed)");
            rc = -1;
        }
        else if (!good && rc == 0) {
            if (st == PGRES_PIPELINE_ABORTED)
                s_set_err (err, "", false, "skipped after an earlier failure");
            else
                s_set_err_from (self, res, err);
            rc = -1;
        }
        if (good && out && i >= first && (size_t) (i - first) < n)
            out[i - first] = res;
        else
            PQclear (res);
    }
    if (ok) {
        PGresult *sync = PQgetResult (c);
        ok = sync && PQresultStatus (sync) == PGRES_PIPELINE_SYNC;
        PQclear (sync);
    }
    if (!ok || !PQexitPipelineMode (c) || PQstatus (c) != CONNECTION_OK) {
        if (rc == 0)
            s_set_err (err, "08006", true, "connection lost: %s", PQerrorMessage (c));
        else if (err)
            err->conn_lost = true;
        s_drop (self);
        rc = -1;
    }
    else
        s_note_tx (self);
    for (size_t i = 0; rc != 0 && out && i < n; i++) {
        PQclear (out[i]);
        out[i] = NULL;
    }
    return rc;
}

//  Looks up every call's statement; NULL entries never reach the server.
static int
s_stmts_for (fks_pg_t *self, const fks_pg_call_t *calls, size_t n,
             const fks_pg_stmt_t **stmts, fks_pg_err_t *err)
{
    for (size_t i = 0; i < n; i++)
        if (!(stmts[i] = s_stmt_for (self, calls[i].name, calls[i].n_params, calls[i].values,
                                     err)))
            return -1;
    return 0;
}

//  fks_pg_exec_pipeline and fks_pg_begin_pipeline: pre is NULL or "BEGIN".
static int
s_pipeline_calls (fks_pg_t *self, const char *pre, const fks_pg_call_t *calls, size_t n,
                  const char *post, PGresult **out, fks_pg_err_t *err)
{
    assert (self);
    s_err_clear (err);
    for (size_t i = 0; out && i < n; i++)
        out[i] = NULL;
    const fks_pg_stmt_t *stmts[FKS_PG_PIPELINE_MAX];
    if (!calls || n == 0 || n > FKS_PG_PIPELINE_MAX) {
        s_set_err (err, "", false, "a pipeline takes 1 to %d statements, got %zu",
                   FKS_PG_PIPELINE_MAX, calls ? n : 0);
        return -1;
    }
    if (s_stmts_for (self, calls, n, stmts, err) != 0)
        return -1;
    return s_pipeline (self, pre, calls, stmts, n, post, out, err);
}

int
fks_pg_exec_pipeline (fks_pg_t *self, const fks_pg_call_t *calls, size_t n, PGresult **out,
                      fks_pg_err_t *err)
{
    return s_pipeline_calls (self, NULL, calls, n, NULL, out, err);
}

int
fks_pg_begin_pipeline (fks_pg_t *self, const fks_pg_call_t *calls, size_t n, PGresult **out,
                       fks_pg_err_t *err)
{
    return s_pipeline_calls (self, "BEGIN", calls, n, NULL, out, err);
}

int
fks_pg_commit_pipeline (fks_pg_t *self, const fks_pg_call_t *calls, size_t n,
                        fks_pg_err_t *err)
{
    return s_pipeline_calls (self, NULL, calls, n, "COMMIT", NULL, err);
}

int
fks_pg_command (fks_pg_t *self, const char *sql, fks_pg_err_t *err)
{
    PGresult *res = fks_pg_query (self, sql, 0, NULL, NULL, NULL, err);
    if (!res)
        return -1;
    PQclear (res);
    return 0;
}

int
fks_pg_ping (fks_pg_t *self, fks_pg_err_t *err)
{
    return fks_pg_command (self, "SELECT 1", err);
}

int
fks_pg_begin (fks_pg_t *self, fks_pg_err_t *err)
{
    return fks_pg_command (self, "BEGIN", err);
}

int
fks_pg_commit (fks_pg_t *self, fks_pg_err_t *err)
{
    PGresult *res = fks_pg_query (self, "COMMIT", 0, NULL, NULL, NULL, err);
    if (!res)
        return -1;
    //  COMMIT of a failed transaction "succeeds" with the tag ROLLBACK: report it as the
    //  failure it is.
    bool rolled_back = strcmp (PQcmdStatus (res), "ROLLBACK") == 0;
    PQclear (res);
    if (rolled_back) {
        s_set_err (err, "25P02", false, "the transaction was rolled back (an earlier statement "
                   "in it failed)");
        return -1;
    }
    return 0;
}

void
fks_pg_rollback (fks_pg_t *self)
{
    assert (self);
    //  A connection that died took its transaction with it: there is nothing to roll back,
    //  and the handle may be used again.
    self->tx_lost = false;
    if (!self->conn || PQstatus (self->conn) != CONNECTION_OK) {
        s_drop (self);
        self->tx_lost = false;
        return;
    }
    if (PQtransactionStatus (self->conn) == PQTRANS_IDLE)
        return;
    PGresult *res = PQexec (self->conn, "ROLLBACK");
    if (!res || PQresultStatus (res) != PGRES_COMMAND_OK) {
        fks_pg_err_t err;
        s_set_err_from (self, res, &err);
        fks_log (FKS_LOG_WARN, NULL, NULL, "postgres ROLLBACK failed: %s", err.msg);
    }
    PQclear (res);
    if (PQstatus (self->conn) != CONNECTION_OK) {
        s_drop (self);
        self->tx_lost = false;
    }
    else
        s_note_tx (self);
}


//  --------------------------------------------------------------------------
//  Redaction

//  Appends one "keyword=value" to out, the value single-quoted (libpq's conninfo quoting)
//  when it is empty or holds a space, a quote or a backslash.
static void
s_put_option (fks_sbuf_t *out, const char *keyword, const char *value)
{
    if (out->len > 0)
        fks_sbuf_put (out, " ", 1);
    fks_sbuf_puts (out, keyword);
    fks_sbuf_put (out, "=", 1);
    bool quote = !*value || strpbrk (value, " \t\n\r\f\v'\\") != NULL;
    if (quote)
        fks_sbuf_put (out, "'", 1);
    for (const char *p = value; *p; p++) {
        if (*p == '\'' || *p == '\\')
            fks_sbuf_put (out, "\\", 1);
        fks_sbuf_put (out, p, 1);
    }
    if (quote)
        fks_sbuf_put (out, "'", 1);
}

//  What libpq itself reads from the URL or keyword=value string, as keyword=value pairs, with
//  every option libpq marks secret (password, sslpassword) shown as "***". Reading it with
//  libpq's parser, not a copy of its rules, means no spelling libpq accepts (a raw '?' or '@' in
//  a password, a percent-encoded parameter name) can slip a password past the redaction.
char *
fks_pg_url_redacted (const char *url)
{
    if (!url)
        return strdup ("");
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse (url, &errmsg);
    PQfreemem (errmsg);
    if (!opts)
        return strdup ("(unparseable connection string)");
    fks_sbuf_t out;
    fks_sbuf_init (&out, 64 * 1024);
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val)
            continue;
        //  libpq ends a URL's credentials at the first '@': a password with a raw '@' leaves
        //  its tail in the host, which no real host name holds.
        bool secret = strchr (o->dispchar, '*')
                      || (strchr (o->val, '@') && (strcmp (o->keyword, "host") == 0
                                                   || strcmp (o->keyword, "hostaddr") == 0
                                                   || strcmp (o->keyword, "port") == 0));
        s_put_option (&out, o->keyword, secret ? "***" : o->val);
    }
    PQconninfoFree (opts);
    char *text = out.failed ? strdup ("(connection string too long)")
                            : strdup (out.data ? out.data : "");
    fks_sbuf_free (&out);
    return text;
}

bool
fks_pg_err_transient (const fks_pg_err_t *err)
{
    const char *s = err->sqlstate;
    return err->conn_lost || !s[0]
        || !strncmp (s, "08", 2) || !strncmp (s, "40", 2) || !strncmp (s, "53", 2)
        || !strncmp (s, "57", 2) || !strncmp (s, "58", 2);
}

int
fks_pg_set_statement_timeout (fks_pg_t *self, int64_t ms, fks_pg_err_t *err)
{
    s_err_clear (err);
    if (ms <= 0)
        return 0;
    char v[24];
    snprintf (v, sizeof v, "%" PRId64, ms);
    return fks_pg_set_option (self, "statement_timeout", v, err);
}
