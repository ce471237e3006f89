/*  test_redis.c - common/redis.c: URLs, binary-safe commands, errors, reconnects, timeouts.
 *
 *  Suite redis_url needs nothing running (meson suite 'unit'). Suite redis talks to the Redis
 *  at FKS_TEST_REDIS_URL (meson suite 'integration'); without it every test fails and says to
 *  run tools/test.sh. Tests that need AUTH create their own ACL user, so they never change
 *  what other tests running at the same time see.
 */
#include "common/redis.h"

#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *
s_redis_url (void)
{
    const char *url = getenv ("FKS_TEST_REDIS_URL");
    cr_assert (url && *url, "FKS_TEST_REDIS_URL is not set: run tools/test.sh, which starts "
               "PostgreSQL and Redis and sets it (e.g. redis://127.0.0.1:PORT/0)");
    return url;
}

//  The test URL with its database number replaced (or user credentials added): host and
//  port are taken from FKS_TEST_REDIS_URL, which has no password (a test instance).
static void
s_url_with (char *out, size_t cap, const char *userinfo, int db)
{
    const char *url = s_redis_url ();
    cr_assert (strncmp (url, "redis://", 8) == 0);
    const char *host = url + 8;
    const char *at = strrchr (host, '@');
    if (at)
        host = at + 1;
    const char *slash = strchr (host, '/');
    int host_len = slash ? (int) (slash - host) : (int) strlen (host);
    snprintf (out, cap, "redis://%s%s%.*s/%d", userinfo ? userinfo : "", userinfo ? "@" : "",
              host_len, host, db);
}

static fks_redis_t *
s_new_url (const char *url, int connect_ms, int command_ms)
{
    fks_redis_err_t err;
    fks_redis_t *r = fks_redis_new (url, connect_ms, command_ms, &err);
    cr_assert (r, "fks_redis_new: %s", err.msg);
    return r;
}

static fks_redis_t *
s_new (void)
{
    return s_new_url (s_redis_url (), 2000, 2000);
}

static long long
s_client_id (fks_redis_t *r)
{
    fks_redis_err_t err;
    redisReply *reply = fks_redis_command (r, &err, "CLIENT ID");
    cr_assert (reply, "CLIENT ID: %s", err.msg);
    cr_assert_eq (reply->type, REDIS_REPLY_INTEGER);
    long long id = reply->integer;
    freeReplyObject (reply);
    return id;
}

static int
s_free_port (void)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    cr_assert (bind (fd, (struct sockaddr *) &a, sizeof a) == 0);
    cr_assert (getsockname (fd, (struct sockaddr *) &a, &len) == 0);
    close (fd);
    return ntohs (a.sin_port);
}

static double
s_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

//  Waits until Redis no longer lists client id (so its socket is closed on the server side),
//  asking over a separate connection.
static void
s_wait_client_gone (long long id)
{
    fks_redis_t *watcher = s_new ();
    fks_redis_err_t err;
    bool gone = false;
    for (int i = 0; i < 500 && !gone; i++) {
        redisReply *reply = fks_redis_command (watcher, &err, "CLIENT LIST ID %lld", id);
        cr_assert (reply, "CLIENT LIST: %s", err.msg);
        gone = reply->type == REDIS_REPLY_STRING && reply->len == 0;
        freeReplyObject (reply);
        if (!gone)
            usleep (10 * 1000);
    }
    cr_assert (gone, "client %lld was not closed", id);
    fks_redis_destroy (&watcher);
}

//  Creates an ACL user with this password (all keys, all commands) for the test's lifetime.
static void
s_acl_user (const char *user, const char *password)
{
    fks_redis_t *admin = s_new ();
    fks_redis_err_t err;
    char pass_rule[128];
    snprintf (pass_rule, sizeof pass_rule, ">%s", password);
    const char *argv[] = { "ACL", "SETUSER", user, "reset", "on", pass_rule, "~*", "&*", "+@all" };
    redisReply *reply = fks_redis_command_argv (admin, 9, argv, NULL, &err);
    cr_assert (reply, "ACL SETUSER: %s", err.msg);
    freeReplyObject (reply);
    fks_redis_destroy (&admin);
}

static void
s_acl_deluser (const char *user)
{
    fks_redis_t *admin = s_new ();
    fks_redis_err_t err;
    redisReply *reply = fks_redis_command (admin, &err, "ACL DELUSER %s", user);
    if (reply)
        freeReplyObject (reply);
    fks_redis_destroy (&admin);
}


//  --------------------------------------------------------------------------
//  redis_url: no server needed

Test (redis_url, valid_urls_parse_without_connecting)
{
    const char *urls[] = {
        "redis://127.0.0.1", "redis://127.0.0.1:6380", "redis://localhost:6379/15",
        "redis://:s3cret@redis:6379/0", "redis://fks:s3%40cret@redis/2", "redis://[::1]:6379/",
    };
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        fks_redis_err_t err;
        fks_redis_t *r = fks_redis_new (urls[i], 100, 100, &err);
        cr_assert (r, "%s: %s", urls[i], err.msg);
        cr_assert_eq (fks_redis_connected (r), false);
        fks_redis_destroy (&r);
        cr_assert_null (r);
    }
}

Test (redis_url, bad_urls_are_refused_without_quoting_secrets)
{
    const char *urls[] = {
        "http://127.0.0.1", "redis://", "redis://host:0", "redis://host:99999",
        "redis://host/abc", "redis://:hunter2@host?db=1", "redis://[::1", "redis://host:6379x",
        "redis://:hunter2%zz@host", "redis://ho st",
    };
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        fks_redis_err_t err;
        fks_redis_t *r = fks_redis_new (urls[i], 100, 100, &err);
        cr_assert_null (r, "%s was accepted", urls[i]);
        cr_assert (strstr (err.msg, "Redis URL"), "%s: message: %s", urls[i], err.msg);
        cr_assert_null (strstr (err.msg, "hunter2"), "leaked: %s", err.msg);
    }
}

Test (redis_url, user_without_any_password_is_refused)
{
    fks_redis_err_t err;
    unsetenv ("FKS_REDIS_PASSWORD");
    unsetenv ("FKS_REDIS_PASSWORD_FILE");
    cr_assert_null (fks_redis_new ("redis://fks@host:6379/0", 100, 100, &err));
    cr_assert (strstr (err.msg, "password"), "message: %s", err.msg);
}

Test (redis_url, timeouts_must_be_positive)
{
    fks_redis_err_t err;
    cr_assert_null (fks_redis_new ("redis://127.0.0.1", 0, 100, &err));
    cr_assert_null (fks_redis_new ("redis://127.0.0.1", 100, -1, &err));
    cr_assert (strstr (err.msg, "timeout"), "message: %s", err.msg);
}


//  --------------------------------------------------------------------------
//  redis: against a server

Test (redis, set_and_get_are_binary_safe)
{
    fks_redis_t *r = s_new ();
    fks_redis_err_t err;
    char key[64];
    snprintf (key, sizeof key, "fks:test:bin:%d", (int) getpid ());
    const char value[] = "a\0b\r\n*3\r\n\xff\x00z";
    size_t value_len = sizeof value - 1;
    const char *set[] = { "SET", key, value, "EX", "60" };
    size_t set_len[] = { 3, strlen (key), value_len, 2, 2 };
    redisReply *reply = fks_redis_command_argv (r, 5, set, set_len, &err);
    cr_assert (reply, "SET: %s", err.msg);
    cr_assert_eq (reply->type, REDIS_REPLY_STATUS);
    freeReplyObject (reply);

    reply = fks_redis_command (r, &err, "GET %b", key, strlen (key));
    cr_assert (reply, "GET: %s", err.msg);
    cr_assert_eq (reply->type, REDIS_REPLY_STRING);
    cr_assert_eq (reply->len, value_len);
    cr_assert_eq (memcmp (reply->str, value, value_len), 0);
    freeReplyObject (reply);

    reply = fks_redis_command (r, &err, "DEL %s", key);
    cr_assert (reply, "%s", err.msg);
    cr_assert_eq (reply->integer, 1);
    freeReplyObject (reply);
    fks_redis_destroy (&r);
}

//  A command sent now and read later: its reply arrives in order; one never read is dropped
//  by the next command (which gets its own reply) without costing the connection; reading
//  with nothing sent is an error.
Test (redis, sent_commands_are_read_later_or_dropped_by_the_next_one)
{
    fks_redis_t *r = s_new ();
    fks_redis_err_t err;
    long long id = s_client_id (r);
    const char *echo1[] = { "ECHO", "first" }, *echo2[] = { "ECHO", "second" };
    size_t len1[] = { 4, 5 }, len2[] = { 4, 6 };
    cr_assert_eq (fks_redis_send_argv (r, 2, echo1, len1, &err), 0, "%s", err.msg);
    cr_assert_eq (fks_redis_send_argv (r, 2, echo2, len2, &err), 0, "%s", err.msg);
    redisReply *reply = fks_redis_recv (r, &err);
    cr_assert (reply, "%s", err.msg);
    cr_assert_str_eq (reply->str, "first");
    freeReplyObject (reply);
    reply = fks_redis_recv (r, &err);
    cr_assert (reply, "%s", err.msg);
    cr_assert_str_eq (reply->str, "second");
    freeReplyObject (reply);
    cr_assert_null (fks_redis_recv (r, &err), "nothing was sent");

    //  Asked and never read: the next command still gets its own answer.
    cr_assert_eq (fks_redis_send_argv (r, 2, echo1, len1, &err), 0, "%s", err.msg);
    reply = fks_redis_command (r, &err, "ECHO %s", "third");
    cr_assert (reply, "%s", err.msg);
    cr_assert_str_eq (reply->str, "third");
    freeReplyObject (reply);
    cr_assert_null (fks_redis_recv (r, &err), "the unread reply was dropped");
    cr_assert_eq (s_client_id (r), id, "on the same connection");

    //  An error reply read later is an error, and the connection stays.
    const char *bad[] = { "INCRBY", "fks:test:x", "notanumber" };
    size_t bad_len[] = { 6, 10, 10 };
    cr_assert_eq (fks_redis_send_argv (r, 3, bad, bad_len, &err), 0, "%s", err.msg);
    cr_assert_null (fks_redis_recv (r, &err));
    cr_assert_not (err.conn_lost);
    cr_assert_eq (s_client_id (r), id);
    fks_redis_destroy (&r);
}

Test (redis, error_reply_is_an_error_and_keeps_the_connection)
{
    fks_redis_t *r = s_new ();
    fks_redis_err_t err;
    char key[64];
    snprintf (key, sizeof key, "fks:test:err:%d", (int) getpid ());
    redisReply *reply = fks_redis_command (r, &err, "SET %s notanumber EX 60", key);
    cr_assert (reply, "%s", err.msg);
    freeReplyObject (reply);
    long long id = s_client_id (r);

    reply = fks_redis_command (r, &err, "INCR %s", key);
    cr_assert_null (reply);
    cr_assert_eq (err.conn_lost, false);
    cr_assert (strstr (err.msg, "not an integer"), "message: %s", err.msg);

    cr_assert_eq (fks_redis_ping (r, &err), 0, "%s", err.msg);
    cr_assert_eq (s_client_id (r), id, "an error reply must not cost the connection");
    fks_redis_destroy (&r);
}

Test (redis, client_kill_of_own_connection_reconnects_on_next_call)
{
    fks_redis_t *r = s_new ();
    fks_redis_err_t err;
    long long id = s_client_id (r);
    //  SKIPME no: by default CLIENT KILL spares the connection that sends it.
    redisReply *reply = fks_redis_command (r, &err, "CLIENT KILL ID %lld SKIPME no", id);
    //  Redis may answer before closing, or close first: either way no crash.
    if (reply)
        freeReplyObject (reply);
    s_wait_client_gone (id);

    cr_assert_eq (fks_redis_ping (r, &err), 0, "next call must reconnect: %s", err.msg);
    cr_assert (fks_redis_connected (r));
    cr_assert_neq (s_client_id (r), id, "must be a new connection");
    fks_redis_destroy (&r);
}

Test (redis, killed_by_another_client_reconnects_on_next_call)
{
    fks_redis_t *r = s_new ();
    fks_redis_t *killer = s_new ();
    fks_redis_err_t err;
    long long id = s_client_id (r);
    redisReply *reply = fks_redis_command (killer, &err, "CLIENT KILL ID %lld", id);
    cr_assert (reply, "%s", err.msg);
    cr_assert_eq (reply->integer, 1);
    freeReplyObject (reply);
    s_wait_client_gone (id);

    cr_assert_eq (fks_redis_ping (r, &err), 0, "next call must reconnect: %s", err.msg);
    cr_assert_neq (s_client_id (r), id);
    fks_redis_destroy (&killer);
    fks_redis_destroy (&r);
}

Test (redis, select_uses_the_database_from_the_url)
{
    char url3[256], url0[256];
    s_url_with (url3, sizeof url3, NULL, 3);
    s_url_with (url0, sizeof url0, NULL, 0);
    fks_redis_t *r3 = s_new_url (url3, 2000, 2000);
    fks_redis_t *r0 = s_new_url (url0, 2000, 2000);
    fks_redis_err_t err;
    char key[64];
    snprintf (key, sizeof key, "fks:test:db:%d", (int) getpid ());
    redisReply *reply = fks_redis_command (r3, &err, "SET %s three EX 60", key);
    cr_assert (reply, "%s", err.msg);
    freeReplyObject (reply);

    reply = fks_redis_command (r0, &err, "EXISTS %s", key);
    cr_assert (reply, "%s", err.msg);
    cr_assert_eq (reply->integer, 0, "the key must not be in database 0");
    freeReplyObject (reply);

    //  After a reconnect the SELECT is redone.
    long long id = s_client_id (r3);
    reply = fks_redis_command (r0, &err, "CLIENT KILL ID %lld", id);
    cr_assert (reply, "%s", err.msg);
    freeReplyObject (reply);
    s_wait_client_gone (id);
    reply = fks_redis_command (r3, &err, "GET %s", key);
    cr_assert (reply, "%s", err.msg);
    cr_assert_str_eq (reply->str, "three");
    freeReplyObject (reply);
    fks_redis_destroy (&r0);
    fks_redis_destroy (&r3);
}

Test (redis, auth_from_the_url)
{
    char user[64], userinfo[128], url[256];
    snprintf (user, sizeof user, "fks_t_%d", (int) getpid ());
    s_acl_user (user, "pass word/@1");
    snprintf (userinfo, sizeof userinfo, "%s:pass%%20word%%2F%%401", user);
    s_url_with (url, sizeof url, userinfo, 0);
    fks_redis_t *r = s_new_url (url, 2000, 2000);
    fks_redis_err_t err;
    redisReply *reply = fks_redis_command (r, &err, "ACL WHOAMI");
    cr_assert (reply, "%s", err.msg);
    cr_assert_str_eq (reply->str, user);
    freeReplyObject (reply);
    fks_redis_destroy (&r);

    //  A wrong password: an error that does not echo it, and not a lost connection.
    snprintf (userinfo, sizeof userinfo, "%s:wrong-secret", user);
    s_url_with (url, sizeof url, userinfo, 0);
    r = s_new_url (url, 2000, 2000);
    cr_assert_eq (fks_redis_ping (r, &err), -1);
    cr_assert (strstr (err.msg, "AUTH"), "message: %s", err.msg);
    cr_assert_null (strstr (err.msg, "wrong-secret"), "leaked: %s", err.msg);
    cr_assert_eq (fks_redis_connected (r), false);
    fks_redis_destroy (&r);
    s_acl_deluser (user);
}

Test (redis, password_from_fks_redis_password_file)
{
    char user[64], url[256];
    snprintf (user, sizeof user, "fks_t_%d", (int) getpid ());
    s_acl_user (user, "from-a-file");
    char path[] = "/tmp/fks_test_redis_pw_XXXXXX";
    int fd = mkstemp (path);
    cr_assert (fd >= 0);
    cr_assert_eq (write (fd, "from-a-file\n", 12), 12);
    close (fd);
    unsetenv ("FKS_REDIS_PASSWORD");
    setenv ("FKS_REDIS_PASSWORD_FILE", path, 1);
    s_url_with (url, sizeof url, user, 0);      /* user name only: password from the file */
    fks_redis_err_t err;
    fks_redis_t *r = fks_redis_new (url, 2000, 2000, &err);
    unlink (path);
    cr_assert (r, "fks_redis_new: %s", err.msg);
    redisReply *reply = fks_redis_command (r, &err, "ACL WHOAMI");
    cr_assert (reply, "%s", err.msg);
    cr_assert_str_eq (reply->str, user);
    freeReplyObject (reply);
    fks_redis_destroy (&r);
    unsetenv ("FKS_REDIS_PASSWORD_FILE");
    s_acl_deluser (user);
}

//  Runs an admin command on a connection of its own (ACL rules, SCRIPT FLUSH).
static void
s_admin (const char *fmt, const char *arg)
{
    fks_redis_t *admin = s_new ();
    fks_redis_err_t err;
    redisReply *reply = fks_redis_command (admin, &err, fmt, arg);
    cr_assert (reply, "%s: %s", fmt, err.msg);
    freeReplyObject (reply);
    fks_redis_destroy (&admin);
}

//  A connection as a user of its own, whose commands the test can take away.
static fks_redis_t *
s_new_as (const char *user)
{
    char userinfo[128], url[256];
    s_acl_user (user, "scripts");
    snprintf (userinfo, sizeof userinfo, "%s:scripts", user);
    s_url_with (url, sizeof url, userinfo, 0);
    return s_new_url (url, 2000, 2000);
}

//  Evaluates the test's script (it returns its argument) and checks the answer.
static void
s_eval_ok (fks_redis_t *r, const char *script, const char *arg)
{
    fks_redis_err_t err;
    char key[64];
    snprintf (key, sizeof key, "fks:test:script:%d", (int) getpid ());
    const char *argv[2] = { key, arg };
    redisReply *reply = fks_redis_eval (r, script, 1, 2, argv, NULL, &err);
    cr_assert (reply, "eval: %s", err.msg);
    cr_assert_eq (reply->type, REDIS_REPLY_STRING);
    cr_assert_str_eq (reply->str, arg);
    freeReplyObject (reply);
}

//  The script's text travels once per connection: with EVAL taken away from the user after the
//  first call, the next ones still run (EVALSHA). When Redis loses its scripts, the text goes
//  again (here refused, which shows it was tried), and a new connection sends it again too.
Test (redis, a_script_travels_once_then_runs_by_its_sha)
{
    char user[64], script[128];
    snprintf (user, sizeof user, "fks_s_%d", (int) getpid ());
    snprintf (script, sizeof script, "-- test %d\nreturn ARGV[1]\n", (int) getpid ());
    fks_redis_t *r = s_new_as (user);
    s_eval_ok (r, script, "one");
    s_admin ("ACL SETUSER %s -eval", user);
    s_eval_ok (r, script, "two");
    s_eval_ok (r, script, "three");

    //  Scripts flushed: NOSCRIPT, then the text, which this user may no longer send.
    s_admin ("SCRIPT FLUSH%s", "");
    fks_redis_err_t err;
    const char *argv[2] = { "k", "four" };
    redisReply *reply = fks_redis_eval (r, script, 1, 2, argv, NULL, &err);
    cr_assert_null (reply);
    cr_assert (strstr (err.msg, "NOPERM") && strstr (err.msg, "eval"), "message: %s", err.msg);
    s_admin ("ACL SETUSER %s +eval", user);
    s_eval_ok (r, script, "five");

    //  A new connection (the server may be a restarted one): the text first, so a user who may
    //  not use EVALSHA still runs it.
    s_admin ("ACL SETUSER %s -evalsha", user);
    char id[32];
    snprintf (id, sizeof id, "%lld", s_client_id (r));
    s_admin ("CLIENT KILL ID %s", id);
    s_wait_client_gone (atoll (id));
    s_eval_ok (r, script, "six");
    fks_redis_destroy (&r);
    s_acl_deluser (user);
}

//  Sent without waiting: a NOSCRIPT read later is told apart, and the next send carries the
//  text. More scripts than a connection keeps by SHA-1 still run (by text).
Test (redis, a_sent_script_recovers_from_lost_scripts)
{
    char script[128];
    snprintf (script, sizeof script, "-- sent %d\nreturn ARGV[1]\n", (int) getpid ());
    fks_redis_t *r = s_new ();
    fks_redis_err_t err;
    const char *argv[2] = { "k", "a" };
    for (int i = 0; i < 2; i++) {
        cr_assert_eq (fks_redis_send_eval (r, script, 1, 2, argv, NULL, &err), 0, "%s", err.msg);
        redisReply *reply = fks_redis_recv (r, &err);
        cr_assert (reply, "%s", err.msg);
        cr_assert_str_eq (reply->str, "a");
        freeReplyObject (reply);
    }
    s_admin ("SCRIPT FLUSH%s", "");
    cr_assert_eq (fks_redis_send_eval (r, script, 1, 2, argv, NULL, &err), 0, "%s", err.msg);
    cr_assert_null (fks_redis_recv (r, &err));
    cr_assert (fks_redis_noscript (&err), "message: %s", err.msg);
    cr_assert_eq (fks_redis_send_eval (r, script, 1, 2, argv, NULL, &err), 0, "%s", err.msg);
    redisReply *reply = fks_redis_recv (r, &err);
    cr_assert (reply, "after NOSCRIPT the text goes: %s", err.msg);
    freeReplyObject (reply);

    static char many[40][64];
    for (int i = 0; i < 40; i++) {
        snprintf (many[i], sizeof many[i], "-- many %d %d\nreturn ARGV[1]\n", (int) getpid (), i);
        s_eval_ok (r, many[i], "m");
        s_eval_ok (r, many[i], "n");
    }
    fks_redis_destroy (&r);
}

Test (redis, refused_port_is_an_error_in_bounded_time)
{
    s_redis_url ();
    char url[64];
    snprintf (url, sizeof url, "redis://127.0.0.1:%d/0", s_free_port ());
    fks_redis_t *r = s_new_url (url, 1000, 1000);
    fks_redis_err_t err;
    double t0 = s_now ();
    cr_assert_eq (fks_redis_ping (r, &err), -1);
    double took = s_now () - t0;
    cr_assert (err.conn_lost);
    cr_assert (strstr (err.msg, "connect"), "message: %s", err.msg);
    cr_assert (took < 3.0, "took %.1f s with a 1 s connect timeout", took);
    cr_assert_eq (fks_redis_connected (r), false);
    fks_redis_destroy (&r);
}

Test (redis, silent_server_times_out_in_bounded_time)
{
    s_redis_url ();
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    cr_assert (bind (fd, (struct sockaddr *) &a, sizeof a) == 0);
    cr_assert (listen (fd, 8) == 0);
    cr_assert (getsockname (fd, (struct sockaddr *) &a, &len) == 0);
    char url[64];
    snprintf (url, sizeof url, "redis://127.0.0.1:%d/0", ntohs (a.sin_port));
    fks_redis_t *r = s_new_url (url, 1000, 300);
    fks_redis_err_t err;
    double t0 = s_now ();
    cr_assert_eq (fks_redis_ping (r, &err), -1);
    double took = s_now () - t0;
    cr_assert (err.conn_lost);
    cr_assert (strstr (err.msg, "timed out"), "message: %s", err.msg);
    cr_assert (took < 3.0, "took %.1f s with a 300 ms command timeout", took);
    cr_assert_eq (fks_redis_connected (r), false, "the context is dropped after a timeout");
    fks_redis_destroy (&r);
    close (fd);
}
