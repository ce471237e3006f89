/*  redis.c - one Redis connection with timeouts and reconnect.
 *
 *  FKS keeps its shared, rebuildable state in Redis (rate limits, the circuit breaker, the
 *  dedupe cache, latest prices), so a caller must never hang on a dead Redis and must get it
 *  back by itself when Redis restarts. This file wraps hiredis 0.14's blocking API to give
 *  that: every connect and every command is bounded by the timeouts given at creation, AUTH
 *  and SELECT from the URL are redone on every connect, and the connection is replaced when it
 *  is found dead.
 *
 *  As in pg.c, the connection is checked before a command is sent: an idle Redis connection
 *  has nothing to read, so a readable socket means the server closed it (CLIENT KILL, restart,
 *  timeout), and it is replaced once before the command goes out. A failure after sending is
 *  reported (conn_lost) and the context dropped, never retried here, because Redis may have
 *  run the command. Error replies are errors too, with Redis's message. SIGPIPE is blocked
 *  for the calling thread while hiredis writes, so a peer that vanished mid-write gives an
 *  error, not a dead process.
 *
 *  The password comes from the URL, else from FKS_REDIS_PASSWORD (or FKS_REDIS_PASSWORD_FILE);
 *  it is kept in memory only and never appears in an error or a log line.
 */
#include "common/redis.h"
#include "common/config.h"

#include <openssl/evp.h>

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_MAX_URL       4096
#define S_MAX_HOST      255
#define S_MAX_DB        65535
#define S_MAX_TIMEOUT   600000          /* ms */
#define S_SCRIPTS       16              /* scripts a connection knows by SHA-1; more run by text */
#define S_EVAL_ARGV     32              /* EVAL arguments held on the stack; more are allocated */

typedef struct {
    const char *text;           /* the caller's static text, known by its address */
    char sha[41];               /* its SHA-1 in hex */
    bool sent;                  /* sent with EVAL on this connection: Redis has it */
} s_script_t;

struct fks_redis_t {
    char *host;                 /* without IPv6 brackets */
    int port;
    int db;
    char *user;                 /* NULL unless the URL names one (Redis 6 ACL) */
    size_t user_len;
    char *password;             /* NULL when no AUTH is needed */
    size_t password_len;
    int connect_timeout_ms;
    int command_timeout_ms;
    redisContext *ctx;          /* NULL when not connected */
    int pending;                /* replies of fks_redis_send_argv not read yet */
    s_script_t scripts[S_SCRIPTS];
    int n_scripts;
};


//  --------------------------------------------------------------------------
//  Errors

static void
s_err_clear (fks_redis_err_t *err)
{
    if (err) {
        err->conn_lost = false;
        err->msg[0] = '\0';
    }
}

static void
s_set_err (fks_redis_err_t *err, bool conn_lost, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

static void
s_set_err (fks_redis_err_t *err, bool conn_lost, const char *fmt, ...)
{
    if (!err)
        return;
    err->conn_lost = conn_lost;
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (err->msg, sizeof err->msg, fmt, ap);
    va_end (ap);
    //  One line, printable: error replies are outside input.
    for (char *p = err->msg; *p; p++)
        if ((unsigned char) *p < 0x20 || (unsigned char) *p == 0x7f)
            *p = ' ';
}


//  --------------------------------------------------------------------------
//  URL

static int
s_hex (char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

//  Percent-decodes src[0..len) into a new string; *out_len gets its length (it may hold NUL
//  bytes, which AUTH sends as they are). NULL on a bad escape or no memory.
static char *
s_decode (const char *src, size_t len, size_t *out_len)
{
    char *out = malloc (len + 1);
    if (!out)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] != '%') {
            out[n++] = src[i];
            continue;
        }
        int hi = i + 1 < len ? s_hex (src[i + 1]) : -1;
        int lo = i + 2 < len ? s_hex (src[i + 2]) : -1;
        if (hi < 0 || lo < 0) {
            free (out);
            return NULL;
        }
        out[n++] = (char) (hi * 16 + lo);
        i += 2;
    }
    out[n] = '\0';
    if (out_len)
        *out_len = n;
    return out;
}

//  Parses digits [s, end) as a decimal in [min, max]. 0 or -1.
static int
s_parse_int (const char *s, const char *end, long min, long max, int *out)
{
    if (s == end || end - s > 9)
        return -1;
    long v = 0;
    for (const char *p = s; p < end; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
    }
    if (v < min || v > max)
        return -1;
    *out = (int) v;
    return 0;
}

static bool
s_host_char (char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
        || c == '.' || c == '-' || c == '_';
}

//  redis://[[user]:password@]host[:port][/db]. Fills self's host, port, db, user, password.
//  Messages never quote the credentials.
static int
s_parse_url (fks_redis_t *self, const char *url, fks_redis_err_t *err)
{
    size_t url_len = strnlen (url, S_MAX_URL + 1);
    if (url_len > S_MAX_URL) {
        s_set_err (err, false, "invalid Redis URL: longer than %d bytes", S_MAX_URL);
        return -1;
    }
    if (strncmp (url, "redis://", 8) != 0) {
        s_set_err (err, false, "invalid Redis URL: expected redis://[:password@]host[:port][/db]");
        return -1;
    }
    const char *p = url + 8;
    const char *end = url + url_len;
    if (memchr (p, '?', (size_t) (end - p)) || memchr (p, '#', (size_t) (end - p))) {
        //  '?' or '#' may sit inside an unencoded password: do not quote anything.
        s_set_err (err, false, "invalid Redis URL: query strings and fragments are not "
                   "supported (percent-encode '?' and '#' in a password)");
        return -1;
    }
    //  Credentials end at the last '@': the rest (host, port, db) cannot hold one.
    const char *at = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == '@')
            at = q;
    if (at) {
        //  "user:password", ":password", or "user" alone (its password from
        //  FKS_REDIS_PASSWORD).
        const char *colon = memchr (p, ':', (size_t) (at - p));
        if (!colon)
            colon = at;
        if (colon > p) {
            self->user = s_decode (p, (size_t) (colon - p), &self->user_len);
            if (!self->user) {
                s_set_err (err, false, "invalid Redis URL: bad percent-encoding in the user name");
                return -1;
            }
        }
        if (colon < at && at > colon + 1) {
            self->password = s_decode (colon + 1, (size_t) (at - colon - 1), &self->password_len);
            if (!self->password) {
                s_set_err (err, false, "invalid Redis URL: bad percent-encoding in the password");
                return -1;
            }
        }
        p = at + 1;
    }
    //  Host: a name, an IPv4 address, or [IPv6].
    const char *host = p, *host_end;
    if (*p == '[') {
        host = p + 1;
        const char *close = memchr (host, ']', (size_t) (end - host));
        if (!close || close == host) {
            s_set_err (err, false, "invalid Redis URL: unterminated or empty [IPv6] host");
            return -1;
        }
        for (const char *q = host; q < close; q++)
            if (!(s_hex (*q) >= 0 || *q == ':' || *q == '.')) {
                s_set_err (err, false, "invalid Redis URL: bad character in the IPv6 host");
                return -1;
            }
        host_end = close;
        p = close + 1;
    }
    else {
        while (p < end && s_host_char (*p))
            p++;
        host_end = p;
    }
    if (host_end == host || host_end - host > S_MAX_HOST) {
        s_set_err (err, false, "invalid Redis URL: the host is missing or too long");
        return -1;
    }
    self->host = strndup (host, (size_t) (host_end - host));
    if (!self->host) {
        s_set_err (err, false, "out of memory");
        return -1;
    }
    self->port = 6379;
    if (p < end && *p == ':') {
        const char *port = ++p;
        while (p < end && *p != '/')
            p++;
        if (s_parse_int (port, p, 1, 65535, &self->port) != 0) {
            s_set_err (err, false, "invalid Redis URL: expected a port 1-65535 after the host");
            return -1;
        }
    }
    self->db = 0;
    if (p < end && *p == '/') {
        p++;
        if (p < end && s_parse_int (p, end, 0, S_MAX_DB, &self->db) != 0) {
            s_set_err (err, false, "invalid Redis URL: expected a database number 0-%d "
                       "after '/'", S_MAX_DB);
            return -1;
        }
        p = end;
    }
    if (p != end) {
        s_set_err (err, false, "invalid Redis URL: unexpected character at offset %zu "
                   "after the host", (size_t) (p - url));
        return -1;
    }
    return 0;
}


//  --------------------------------------------------------------------------
//  Construction

fks_redis_t *
fks_redis_new (const char *url, int connect_timeout_ms, int command_timeout_ms,
               fks_redis_err_t *err)
{
    s_err_clear (err);
    if (!url || !*url) {
        s_set_err (err, false, "invalid Redis URL: it is empty");
        return NULL;
    }
    if (connect_timeout_ms < 1 || connect_timeout_ms > S_MAX_TIMEOUT
    ||  command_timeout_ms < 1 || command_timeout_ms > S_MAX_TIMEOUT) {
        s_set_err (err, false, "Redis timeouts must be 1-%d ms (got %d and %d)",
                   S_MAX_TIMEOUT, connect_timeout_ms, command_timeout_ms);
        return NULL;
    }
    fks_redis_t *self = calloc (1, sizeof *self);
    if (!self) {
        s_set_err (err, false, "out of memory");
        return NULL;
    }
    self->connect_timeout_ms = connect_timeout_ms;
    self->command_timeout_ms = command_timeout_ms;
    if (s_parse_url (self, url, err) != 0) {
        fks_redis_destroy (&self);
        return NULL;
    }
    if (!self->password) {
        //  Optional: a Redis without a password is fine (e.g. a test instance on loopback).
        //  An empty value counts as no password, so a blank Secret does not send AUTH "".
        char *password = NULL;
        fks_config_err_t cerr;
        if (fks_config_str ("FKS_REDIS_PASSWORD", NULL, &password, &cerr) < 0) {
            s_set_err (err, false, "%s", cerr.msg);
            fks_redis_destroy (&self);
            return NULL;
        }
        if (password && *password) {
            self->password = password;
            self->password_len = strlen (password);
        }
        else
            free (password);
    }
    if (self->user && !self->password) {
        s_set_err (err, false, "the Redis URL names a user but no password is given (put it in "
                   "the URL or in FKS_REDIS_PASSWORD)");
        fks_redis_destroy (&self);
        return NULL;
    }
    return self;
}

static void
s_wipe_free (char *secret, size_t len)
{
    if (secret) {
        volatile char *p = secret;
        for (size_t i = 0; i < len; i++)
            p[i] = 0;
        free (secret);
    }
}

void
fks_redis_destroy (fks_redis_t **self_p)
{
    assert (self_p);
    fks_redis_t *self = *self_p;
    if (!self)
        return;
    if (self->ctx)
        redisFree (self->ctx);
    free (self->host);
    free (self->user);
    s_wipe_free (self->password, self->password_len);
    free (self);
    *self_p = NULL;
}


//  --------------------------------------------------------------------------
//  SIGPIPE: hiredis writes with write(2), which raises SIGPIPE on a socket the peer reset.
//  Like libpq, block it for this thread during the call and swallow one that we caused.

typedef struct {
    sigset_t old;
    bool was_pending;
} s_sigpipe_t;

static void
s_sigpipe_block (s_sigpipe_t *state)
{
    sigset_t pipe_set, pending;
    sigemptyset (&pipe_set);
    sigaddset (&pipe_set, SIGPIPE);
    pthread_sigmask (SIG_BLOCK, &pipe_set, &state->old);
    sigemptyset (&pending);
    sigpending (&pending);
    state->was_pending = sigismember (&pending, SIGPIPE) == 1;
}

static void
s_sigpipe_restore (s_sigpipe_t *state)
{
    if (!state->was_pending) {
        sigset_t pending;
        sigemptyset (&pending);
        sigpending (&pending);
        if (sigismember (&pending, SIGPIPE) == 1) {
            sigset_t pipe_set;
            sigemptyset (&pipe_set);
            sigaddset (&pipe_set, SIGPIPE);
            struct timespec zero = { 0, 0 };
            while (sigtimedwait (&pipe_set, NULL, &zero) < 0 && errno == EINTR)
                ;
        }
    }
    pthread_sigmask (SIG_SETMASK, &state->old, NULL);
}


//  --------------------------------------------------------------------------
//  Connection

static void
s_drop (fks_redis_t *self)
{
    if (self->ctx) {
        redisFree (self->ctx);
        self->ctx = NULL;
    }
    self->pending = 0;
    //  The next connection may reach a server that never saw the scripts (a restart).
    for (int i = 0; i < self->n_scripts; i++)
        self->scripts[i].sent = false;
}

static struct timeval
s_tv (int ms)
{
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
    return tv;
}

//  Describes an I/O failure of the context, after saved_errno from the failing call.
static void
s_set_io_err (fks_redis_t *self, int saved_errno, const char *what, fks_redis_err_t *err)
{
    bool timeout = saved_errno == EAGAIN || saved_errno == EWOULDBLOCK || saved_errno == ETIMEDOUT;
    if (timeout && self->ctx && self->ctx->err == REDIS_ERR_IO)
        s_set_err (err, true, "Redis %s:%d: %s timed out after %d ms", self->host, self->port,
                   what, strcmp (what, "connect") == 0 ? self->connect_timeout_ms
                                                      : self->command_timeout_ms);
    else
        s_set_err (err, true, "Redis %s:%d: %s failed: %s", self->host, self->port, what,
                   self->ctx && self->ctx->err ? self->ctx->errstr : "connection lost");
}

//  Runs one setup command on a fresh context (AUTH, SELECT). 0 or -1.
static int
s_setup_command (fks_redis_t *self, const char *what, int argc, const char **argv,
                 const size_t *argvlen, fks_redis_err_t *err)
{
    errno = 0;
    redisReply *reply = redisCommandArgv (self->ctx, argc, argv, argvlen);
    if (!reply) {
        s_set_io_err (self, errno, what, err);
        return -1;
    }
    int rc = 0;
    if (reply->type == REDIS_REPLY_ERROR) {
        s_set_err (err, false, "Redis %s:%d: %s refused: %.*s", self->host, self->port, what,
                   reply->len > 160 ? 160 : (int) reply->len, reply->str ? reply->str : "");
        rc = -1;
    }
    freeReplyObject (reply);
    return rc;
}

static int
s_open (fks_redis_t *self, fks_redis_err_t *err)
{
    errno = 0;
    self->ctx = redisConnectWithTimeout (self->host, self->port, s_tv (self->connect_timeout_ms));
    int saved = errno;
    if (!self->ctx) {
        s_set_err (err, true, "Redis %s:%d: cannot connect: out of memory", self->host,
                   self->port);
        return -1;
    }
    if (self->ctx->err) {
        s_set_io_err (self, saved, "connect", err);
        s_drop (self);
        return -1;
    }
    if (redisSetTimeout (self->ctx, s_tv (self->command_timeout_ms)) != REDIS_OK
    ||  redisEnableKeepAlive (self->ctx) != REDIS_OK) {
        s_set_io_err (self, errno, "connect", err);
        s_drop (self);
        return -1;
    }
    if (self->password) {
        const char *argv [3] = { "AUTH" };
        size_t argvlen [3] = { 4 };
        int argc = 1;
        if (self->user) {
            argv [argc] = self->user;
            argvlen [argc++] = self->user_len;
        }
        argv [argc] = self->password;
        argvlen [argc++] = self->password_len;
        if (s_setup_command (self, "AUTH", argc, argv, argvlen, err) != 0) {
            s_drop (self);
            return -1;
        }
    }
    if (self->db != 0) {
        char db [16];
        snprintf (db, sizeof db, "%d", self->db);
        const char *argv [2] = { "SELECT", db };
        size_t argvlen [2] = { 6, strlen (db) };
        if (s_setup_command (self, "SELECT", 2, argv, argvlen, err) != 0) {
            s_drop (self);
            return -1;
        }
    }
    return 0;
}

//  True if the idle connection looks usable: no error recorded and nothing to read (Redis
//  only writes to an idle, non-subscribed connection when it closes it).
static bool
s_alive (fks_redis_t *self)
{
    if (!self->ctx || self->ctx->err || self->ctx->fd < 0)
        return false;
    struct pollfd pfd = { .fd = self->ctx->fd, .events = POLLIN };
    int rc;
    do
        rc = poll (&pfd, 1, 0);
    while (rc < 0 && errno == EINTR);
    return rc == 0;
}

//  Reads and drops the replies of sent commands nobody read (a caller that gave up on one),
//  so that the next command gets its own reply. A failure drops the connection.
static void
s_drain (fks_redis_t *self)
{
    while (self->pending > 0 && self->ctx) {
        void *reply = NULL;
        if (redisGetReply (self->ctx, &reply) != REDIS_OK) {
            s_drop (self);
            break;
        }
        freeReplyObject (reply);
        self->pending--;
    }
    self->pending = 0;
}

//  Makes sure a live connection exists before a command is sent; replaces a dead one once.
static int
s_ready (fks_redis_t *self, fks_redis_err_t *err)
{
    s_drain (self);
    if (s_alive (self))
        return 0;
    s_drop (self);
    return s_open (self, err);
}

int
fks_redis_connect (fks_redis_t *self, fks_redis_err_t *err)
{
    assert (self);
    s_err_clear (err);
    s_sigpipe_t sp;
    s_sigpipe_block (&sp);
    int rc = s_ready (self, err);
    s_sigpipe_restore (&sp);
    return rc;
}

bool
fks_redis_connected (fks_redis_t *self)
{
    assert (self);
    return self->ctx && !self->ctx->err;
}


//  --------------------------------------------------------------------------
//  Commands

//  Turns hiredis's answer into ours: the reply, or NULL with err (dropping the context on an
//  I/O failure so the next call reconnects).
static redisReply *
s_check_reply (fks_redis_t *self, redisReply *reply, int saved_errno, fks_redis_err_t *err)
{
    if (!reply) {
        s_set_io_err (self, saved_errno, "command", err);
        s_drop (self);
        return NULL;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        s_set_err (err, false, "%.*s", reply->len > 200 ? 200 : (int) reply->len,
                   reply->str ? reply->str : "error reply");
        //  Redis lost its scripts (SCRIPT FLUSH): every script's text must travel again.
        if (reply->str && strncmp (reply->str, "NOSCRIPT", 8) == 0)
            for (int i = 0; i < self->n_scripts; i++)
                self->scripts[i].sent = false;
        freeReplyObject (reply);
        return NULL;
    }
    return reply;
}

redisReply *
fks_redis_command_argv (fks_redis_t *self, int argc, const char **argv, const size_t *argvlen,
                        fks_redis_err_t *err)
{
    assert (self);
    s_err_clear (err);
    if (argc < 1 || !argv) {
        s_set_err (err, false, "empty Redis command");
        return NULL;
    }
    s_sigpipe_t sp;
    s_sigpipe_block (&sp);
    redisReply *reply = NULL;
    if (s_ready (self, err) == 0) {
        errno = 0;
        reply = redisCommandArgv (self->ctx, argc, argv, argvlen);
        reply = s_check_reply (self, reply, errno, err);
    }
    s_sigpipe_restore (&sp);
    return reply;
}

int
fks_redis_send_argv (fks_redis_t *self, int argc, const char **argv, const size_t *argvlen,
                     fks_redis_err_t *err)
{
    assert (self);
    s_err_clear (err);
    if (argc < 1 || !argv) {
        s_set_err (err, false, "empty Redis command");
        return -1;
    }
    s_sigpipe_t sp;
    s_sigpipe_block (&sp);
    int rc = -1;
    //  Behind replies still to be read, the connection is the one they come on: no check.
    if (self->pending > 0 || s_ready (self, err) == 0) {
        if (redisAppendCommandArgv (self->ctx, argc, argv, argvlen) != REDIS_OK)
            s_set_err (err, false, "Redis: out of memory");
        else {
            int done = 0;
            errno = 0;
            while (!done && redisBufferWrite (self->ctx, &done) == REDIS_OK)
                ;
            if (done) {
                self->pending++;
                rc = 0;
            }
            else {
                s_set_io_err (self, errno, "command", err);
                s_drop (self);
            }
        }
    }
    s_sigpipe_restore (&sp);
    return rc;
}

redisReply *
fks_redis_recv (fks_redis_t *self, fks_redis_err_t *err)
{
    assert (self);
    s_err_clear (err);
    if (self->pending == 0 || !self->ctx) {
        //  Never sent, or the connection went (and the reply with it) since.
        s_set_err (err, true, "Redis: no reply is awaited (the connection was replaced)");
        return NULL;
    }
    s_sigpipe_t sp;
    s_sigpipe_block (&sp);
    void *reply = NULL;
    errno = 0;
    int ok = redisGetReply (self->ctx, &reply) == REDIS_OK;
    int saved = errno;
    self->pending--;
    redisReply *r = s_check_reply (self, ok ? reply : NULL, saved, err);
    s_sigpipe_restore (&sp);
    return r;
}


//  --------------------------------------------------------------------------
//  Lua scripts

//  The connection's entry for script (made on its first use), or NULL when the table is full
//  or the digest cannot be made: the script then always travels as text.
static s_script_t *
s_script (fks_redis_t *self, const char *script)
{
    for (int i = 0; i < self->n_scripts; i++)
        if (self->scripts[i].text == script)
            return &self->scripts[i];
    if (self->n_scripts == S_SCRIPTS)
        return NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (!EVP_Digest (script, strlen (script), md, &md_len, EVP_sha1 (), NULL) || md_len != 20)
        return NULL;
    s_script_t *sc = &self->scripts[self->n_scripts++];
    sc->text = script;
    for (unsigned int i = 0; i < md_len; i++)
        snprintf (sc->sha + 2 * i, 3, "%02x", md[i]);
    sc->sent = false;
    return sc;
}

//  The EVAL or EVALSHA command for script in *cmd / *lens (argc + 3 entries: the stack arrays
//  given, or allocated when too small; s_eval_free gives them back). 0, or -1 with err.
typedef struct {
    const char **argv;
    size_t *lens;
    const char *stack_argv[S_EVAL_ARGV + 3];
    size_t stack_lens[S_EVAL_ARGV + 3];
    char numkeys[16];
} s_eval_t;

static int
s_eval_make (fks_redis_t *self, s_eval_t *e, const char *script, int numkeys, int argc,
             const char **argv, const size_t *argvlen, fks_redis_err_t *err)
{
    e->argv = e->stack_argv;
    e->lens = e->stack_lens;
    if (!script || argc < 0 || numkeys < 0 || numkeys > argc || (argc > 0 && !argv)) {
        s_set_err (err, false, "Redis: bad script call");
        return -1;
    }
    if (argc > S_EVAL_ARGV) {
        e->argv = malloc ((size_t) (argc + 3) * sizeof *e->argv);
        e->lens = malloc ((size_t) (argc + 3) * sizeof *e->lens);
        if (!e->argv || !e->lens) {
            free (e->argv);
            free (e->lens);
            e->argv = NULL;
            e->lens = NULL;
            s_set_err (err, false, "Redis: out of memory");
            return -1;
        }
    }
    s_script_t *sc = s_script (self, script);
    //  Known by this connection's server: by SHA-1. Else the text, which Redis then keeps.
    bool by_sha = sc && sc->sent && self->ctx;
    snprintf (e->numkeys, sizeof e->numkeys, "%d", numkeys);
    e->argv[0] = by_sha ? "EVALSHA" : "EVAL";
    e->argv[1] = by_sha ? sc->sha : script;
    e->argv[2] = e->numkeys;
    for (int i = 0; i < argc; i++) {
        e->argv[3 + i] = argv[i];
        e->lens[3 + i] = argvlen ? argvlen[i] : strlen (argv[i]);
    }
    for (int i = 0; i < 3; i++)
        e->lens[i] = strlen (e->argv[i]);
    return 0;
}

static void
s_eval_free (s_eval_t *e)
{
    if (e->argv != e->stack_argv)
        free (e->argv);
    if (e->lens != e->stack_lens)
        free (e->lens);
}

//  After script's text went out on the current connection (if it is still up): the server
//  has it.
static void
s_eval_sent (fks_redis_t *self, const char *script)
{
    s_script_t *sc = s_script (self, script);
    if (sc && self->ctx)
        sc->sent = true;
}

redisReply *
fks_redis_eval (fks_redis_t *self, const char *script, int numkeys, int argc,
                const char **argv, const size_t *argvlen, fks_redis_err_t *err)
{
    assert (self);
    s_err_clear (err);
    fks_redis_err_t local;
    if (!err)
        err = &local;
    s_sigpipe_t sp;
    s_sigpipe_block (&sp);
    redisReply *r = NULL;
    //  Twice at most: by SHA-1, then by text when Redis answered NOSCRIPT (flushed scripts).
    //  Text or SHA-1 is chosen once the connection the command goes out on is known.
    for (int attempt = 0; attempt < 2; attempt++) {
        s_eval_t e;
        if (s_ready (self, err) != 0
        ||  s_eval_make (self, &e, script, numkeys, argc, argv, argvlen, err) != 0)
            break;
        bool by_sha = e.argv[0][4] == 'S';
        errno = 0;
        r = redisCommandArgv (self->ctx, argc + 3, e.argv, e.lens);
        r = s_check_reply (self, r, errno, err);
        s_eval_free (&e);
        if (!by_sha)
            s_eval_sent (self, script);
        if (r || !by_sha || !fks_redis_noscript (err))
            break;
    }
    s_sigpipe_restore (&sp);
    return r;
}

bool
fks_redis_noscript (const fks_redis_err_t *err)
{
    return err && !err->conn_lost && strncmp (err->msg, "NOSCRIPT", 8) == 0;
}

int
fks_redis_send_eval (fks_redis_t *self, const char *script, int numkeys, int argc,
                     const char **argv, const size_t *argvlen, fks_redis_err_t *err)
{
    assert (self);
    s_err_clear (err);
    //  Connected first (unless replies are awaited on this connection), so that text or SHA-1
    //  is chosen for the connection the command goes out on: a NOSCRIPT here would cost the
    //  caller an attempt.
    if (self->pending == 0 && fks_redis_connect (self, err) != 0)
        return -1;
    s_eval_t e;
    if (s_eval_make (self, &e, script, numkeys, argc, argv, argvlen, err) != 0)
        return -1;
    bool by_sha = e.argv[0][4] == 'S';
    int rc = fks_redis_send_argv (self, argc + 3, e.argv, e.lens, err);
    s_eval_free (&e);
    if (rc == 0 && !by_sha)
        s_eval_sent (self, script);
    return rc;
}

redisReply *
fks_redis_command (fks_redis_t *self, fks_redis_err_t *err, const char *fmt, ...)
{
    assert (self);
    s_err_clear (err);
    if (!fmt || !*fmt) {
        s_set_err (err, false, "empty Redis command");
        return NULL;
    }
    s_sigpipe_t sp;
    s_sigpipe_block (&sp);
    redisReply *reply = NULL;
    if (s_ready (self, err) == 0) {
        va_list ap;
        va_start (ap, fmt);
        errno = 0;
        reply = redisvCommand (self->ctx, fmt, ap);
        int saved = errno;
        va_end (ap);
        reply = s_check_reply (self, reply, saved, err);
    }
    s_sigpipe_restore (&sp);
    return reply;
}

int
fks_redis_ping (fks_redis_t *self, fks_redis_err_t *err)
{
    const char *argv [1] = { "PING" };
    size_t argvlen [1] = { 4 };
    redisReply *reply = fks_redis_command_argv (self, 1, argv, argvlen, err);
    if (!reply)
        return -1;
    freeReplyObject (reply);
    return 0;
}
