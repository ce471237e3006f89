/*  bus_consumer.c - bus-test-consumer, a replica of a consumer group for the broker's
 *  integration tests, written the way a real FKS worker is.
 *
 *  For each delivery, in one PostgreSQL transaction: take an advisory lock on the message id
 *  (failing to get it means another replica is processing the same message right now: that is
 *  recorded in t_violations), insert `consumed (grp, msg_id)` (a conflict means the effect is
 *  already done: recorded in t_dups, and the delivery is acked), insert the effect into
 *  t_effects (primary key msg_id), optionally sleep --delay-ms, commit, then ack. With --fail it
 *  records the attempt in t_attempts and rejects every delivery (retry). SIGTERM makes it
 *  finish the message in hand, leave the group gracefully and exit 0.
 *
 *  Usage: bus-test-consumer --url URL --pg CONNINFO --name NAME --group G --prefix P
 *                           [--window N] [--delay-ms MS] [--fail] [--heartbeat-ms MS]
 */
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bus/client.h"
#include "common/log.h"

static volatile sig_atomic_t s_stop;

static void
s_on_term (int sig)
{
    (void) sig;
    s_stop = 1;
}

static bool
s_exec (PGconn *pg, const char *sql, int n, const char *const *values, bool *row)
{
    PGresult *res = PQexecParams (pg, sql, n, NULL, values, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus (res);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        fprintf (stderr, "bus-test-consumer: %s: %s", sql, PQerrorMessage (pg));
    if (row)
        *row = ok && st == PGRES_TUPLES_OK && PQntuples (res) > 0
            && strcmp (PQgetvalue (res, 0, 0), "t") == 0;
    PQclear (res);
    return ok;
}

int
main (int argc, char **argv)
{
    const char *url = NULL, *pg_url = NULL, *name = "consumer", *group = NULL, *prefix = NULL;
    int window = 10, delay_ms = 0, heartbeat_ms = 200;
    bool fail = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp (a, "--fail") == 0) {
            fail = true;
            continue;
        }
        if (!v) {
            fprintf (stderr, "bus-test-consumer: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (strcmp (a, "--url") == 0) url = v;
        else if (strcmp (a, "--pg") == 0) pg_url = v;
        else if (strcmp (a, "--name") == 0) name = v;
        else if (strcmp (a, "--group") == 0) group = v;
        else if (strcmp (a, "--prefix") == 0) prefix = v;
        else if (strcmp (a, "--window") == 0) window = atoi (v);
        else if (strcmp (a, "--delay-ms") == 0) delay_ms = atoi (v);
        else if (strcmp (a, "--heartbeat-ms") == 0) heartbeat_ms = atoi (v);
        else {
            fprintf (stderr, "bus-test-consumer: unknown option %s\n", a);
            return 2;
        }
    }
    if (!url || !pg_url || !group || !prefix || window <= 0 || delay_ms < 0) {
        fprintf (stderr, "usage: bus-test-consumer --url URL --pg CONNINFO --group G --prefix P "
                 "[--name N] [--window N] [--delay-ms MS] [--fail]\n");
        return 2;
    }
    fks_log_init ("bus-test-consumer");
    struct sigaction sa;
    memset (&sa, 0, sizeof sa);
    sa.sa_handler = s_on_term;
    sigaction (SIGTERM, &sa, NULL);
    signal (SIGPIPE, SIG_IGN);

    PGconn *pg = PQconnectdb (pg_url);
    if (PQstatus (pg) != CONNECTION_OK) {
        fprintf (stderr, "bus-test-consumer: %s", PQerrorMessage (pg));
        return 1;
    }
    //  Durability across an OS crash is not what these tests are about; speed is welcome.
    PQclear (PQexec (pg, "SET synchronous_commit = off"));

    fks_bus_client_opts_t opts = { .url = url, .name = name, .heartbeat_ms = heartbeat_ms };
    fks_bus_client_t *bus = fks_bus_client_new (&opts);
    const char *prefixes[1] = { prefix };
    if (!bus || fks_bus_join (bus, group, prefixes, 1, (unsigned) window) != 0) {
        fprintf (stderr, "bus-test-consumer: cannot join\n");
        return 1;
    }
    long processed = 0;
    while (!s_stop) {
        fks_bus_msg_t *msg = fks_bus_recv (bus, 100);
        if (!msg)
            continue;
        char id[FKS_ID_STR_SIZE], attempt[16];
        fks_id_format (fks_bus_msg_id (msg), id);
        snprintf (attempt, sizeof attempt, "%u", fks_bus_msg_attempt (msg));
        if (fail) {
            const char *v[3] = { id, name, attempt };
            s_exec (pg, "INSERT INTO t_attempts (msg_id, replica, attempt) VALUES ($1, $2, $3)",
                    3, v, NULL);
            fks_bus_reject (bus, &msg, FKS_BUS_RETRY, "this consumer always fails");
            continue;
        }
        const char *v1[1] = { id };
        const char *v2[2] = { group, id };
        const char *v3[3] = { id, name, attempt };
        const char *vn[2] = { id, name };
        bool locked = false, fresh = false;
        if (!s_exec (pg, "BEGIN", 0, NULL, NULL)
            || !s_exec (pg, "SELECT pg_try_advisory_xact_lock (hashtextextended ($1, 0))", 1, v1,
                        &locked)) {
            s_exec (pg, "ROLLBACK", 0, NULL, NULL);
            fks_bus_msg_destroy (&msg);
            continue;
        }
        if (!locked) {
            s_exec (pg, "ROLLBACK", 0, NULL, NULL);
            s_exec (pg, "INSERT INTO t_violations (msg_id, replica) VALUES ($1, $2)", 2, vn,
                    NULL);
            fks_bus_msg_destroy (&msg);
            continue;
        }
        if (!s_exec (pg, "INSERT INTO consumed (grp, msg_id) VALUES ($1, $2::uuid) "
                         "ON CONFLICT DO NOTHING RETURNING true", 2, v2, &fresh)) {
            s_exec (pg, "ROLLBACK", 0, NULL, NULL);
            fks_bus_msg_destroy (&msg);
            continue;
        }
        if (!fresh) {
            //  Done before (a redelivery after a crash or a deadline): ack, do nothing.
            s_exec (pg, "ROLLBACK", 0, NULL, NULL);
            s_exec (pg, "INSERT INTO t_dups (msg_id, replica) VALUES ($1, $2)", 2, vn, NULL);
            fks_bus_ack (bus, &msg);
            continue;
        }
        bool ok = s_exec (pg, "INSERT INTO t_effects (msg_id, replica, attempt) "
                              "VALUES ($1, $2, $3)", 3, v3, NULL);
        if (ok && delay_ms > 0) {
            struct timespec ts = { delay_ms / 1000, (long) (delay_ms % 1000) * 1000000L };
            nanosleep (&ts, NULL);
        }
        if (!ok || !s_exec (pg, "COMMIT", 0, NULL, NULL)) {
            s_exec (pg, "ROLLBACK", 0, NULL, NULL);
            fks_bus_msg_destroy (&msg);     /* not acked: the broker delivers it again */
            continue;
        }
        fks_bus_ack (bus, &msg);
        processed++;
    }
    fks_bus_client_destroy (&bus);
    PQfinish (pg);
    fprintf (stderr, "bus-test-consumer %s: processed %ld, left the group\n", name, processed);
    return 0;
}
