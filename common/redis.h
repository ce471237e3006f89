/*  redis.h - one Redis connection with timeouts and reconnect.
 *
 *  A fks_redis_t wraps a hiredis (0.14) blocking context. Every command has the connect and
 *  command timeouts given at creation, so a dead Redis costs a caller at most that long. After
 *  an I/O error the context is dropped and the next command reconnects (at most once per call,
 *  with AUTH and SELECT from the URL redone). Error replies from Redis are returned as errors.
 *  Not thread-safe: one per thread.
 *
 *  URL: redis://[[user]:password@]host[:port][/db] (port 6379 and db 0 by default; user for
 *  Redis 6 ACLs; percent-encode '@', ':', '/', '?' and '#' in a password). When the URL has no
 *  password, FKS_REDIS_PASSWORD (or its _FILE) is used if set and non-empty; the URL's wins
 *  when both are given. A URL may name a user alone (redis://user@host) and take the password
 *  from there. The password is never logged nor put in an error.
 */
#ifndef FKS_REDIS_H
#define FKS_REDIS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct fks_redis_t fks_redis_t;

typedef struct {
    bool conn_lost;     /* I/O failure or timeout, not an error reply */
    char msg[256];
} fks_redis_err_t;

/*  Parses url and stores the timeouts (each 1-600000 ms); does not connect. NULL with err on
 *  a bad URL or timeout, or an unreadable FKS_REDIS_PASSWORD_FILE. */
fks_redis_t *fks_redis_new (const char *url, int connect_timeout_ms, int command_timeout_ms,
                            fks_redis_err_t *err);
void fks_redis_destroy (fks_redis_t **self_p);

/*  Connects now (AUTH and SELECT included) unless a live connection exists. 0 or -1. */
int fks_redis_connect (fks_redis_t *self, fks_redis_err_t *err);

/*  True if a connection is open and has seen no error (no server round trip). */
bool fks_redis_connected (fks_redis_t *self);

/*  Runs PING. 0 or -1. */
int fks_redis_ping (fks_redis_t *self, fks_redis_err_t *err);

/*  Runs a command given as argv (binary-safe). Returns the reply (caller freeReplyObject's
 *  it), or NULL with err on I/O failure, timeout, or an error reply. Reconnects first if the
 *  connection is down. */
redisReply *fks_redis_command_argv (fks_redis_t *self, int argc, const char **argv,
                                    const size_t *argvlen, fks_redis_err_t *err);

/*  Sends a command without waiting for its reply, which fks_redis_recv reads later: the
 *  round trip overlaps whatever the caller does meanwhile (a PostgreSQL round trip). A reply
 *  still unread when the next command is sent is read and dropped first, so a caller that
 *  gives up on one leaves the connection usable. 0, or -1 with err. */
int fks_redis_send_argv (fks_redis_t *self, int argc, const char **argv, const size_t *argvlen,
                         fks_redis_err_t *err);

/*  The reply of the oldest command sent with fks_redis_send_argv and not read yet; same
 *  contract as fks_redis_command_argv (conn_lost when the connection went meanwhile). */
redisReply *fks_redis_recv (fks_redis_t *self, fks_redis_err_t *err);

/*  Runs a Lua script: script is its text, a static string known by its address; argv holds
 *  numkeys keys then the script's arguments (argc in all; argvlen may be NULL for C strings).
 *  The text travels once per connection (EVAL, which makes Redis keep it), then the script runs
 *  by its SHA-1 (EVALSHA); when Redis answers NOSCRIPT (its scripts were flushed) the text is
 *  sent again, at once. Same contract as fks_redis_command_argv. */
redisReply *fks_redis_eval (fks_redis_t *self, const char *script, int numkeys, int argc,
                            const char **argv, const size_t *argvlen, fks_redis_err_t *err);

/*  The same, sent without waiting (read the reply with fks_redis_recv). A NOSCRIPT reply read
 *  there is returned as an error, and the next use of any script on the connection sends its
 *  text again. */
int fks_redis_send_eval (fks_redis_t *self, const char *script, int numkeys, int argc,
                         const char **argv, const size_t *argvlen, fks_redis_err_t *err);

/*  True when err says Redis did not know the script (its reply to a sent EVALSHA): send it
 *  again, its text travels then. */
bool fks_redis_noscript (const fks_redis_err_t *err);

/*  printf-style command (hiredis format: %s, %b, %d...). Same contract. */
redisReply *fks_redis_command (fks_redis_t *self, fks_redis_err_t *err, const char *fmt, ...);

#endif
