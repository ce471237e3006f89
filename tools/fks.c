/*  fks.c - the `fks` command: operator tasks on an FKS installation.
 *
 *  One binary with subcommands, like git: `fks migrate` applies the database migrations,
 *  `fks help [command]` explains. Each subcommand is one entry in s_commands (name, handler,
 *  one-line summary, usage text), so a new one (keys create/revoke, tail) is a handler and a
 *  row. Handlers read their settings through common/config.h, like every FKS program, print
 *  results on stdout and errors on stderr as "fks <command>: <message>", and return the exit
 *  code: 0 on success, 1 on any failure.
 */
#include "common/config.h"
#include "common/log.h"
#include "common/pg.h"
#include "tools/migrate.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FKS_SOURCE_DIR
#   error "FKS_SOURCE_DIR must be defined by the build (tools/meson.build)"
#endif

typedef struct {
    const char *name;
    int (*run) (int argc, char **argv);
    const char *summary;
    const char *usage;
} s_command_t;

static int s_cmd_migrate (int argc, char **argv);
static int s_cmd_help (int argc, char **argv);

static const s_command_t s_commands [] = {
    { "migrate", s_cmd_migrate, "apply the database migrations that are not applied yet",
      "usage: fks migrate\n"
      "\n"
      "Applies the SQL migrations (NNNN_name.sql) that the database has not recorded in\n"
      "schema_migrations, in order, each in its own transaction. Safe to run from several\n"
      "places at once; running it again does nothing and says \"up to date\". Refuses to run\n"
      "when an applied migration's file has changed.\n"
      "\n"
      "environment:\n"
      "  FKS_PG_URL          PostgreSQL URL (or FKS_PG_URL_FILE, a file holding it); required\n"
      "  FKS_MIGRATIONS_DIR  folder of migration files (default: the source tree's\n"
      "                      schemas/migrations)\n"
      "\n"
      "exit status: 0 when the database is up to date, 1 otherwise.\n" },
    { "help", s_cmd_help, "show the commands, or one command's usage",
      "usage: fks help [COMMAND]\n" },
};

#define S_N_COMMANDS (sizeof s_commands / sizeof s_commands [0])

static const s_command_t *
s_lookup (const char *name)
{
    for (size_t i = 0; i < S_N_COMMANDS; i++)
        if (strcmp (s_commands [i].name, name) == 0)
            return &s_commands [i];
    return NULL;
}

static void
s_print_overview (FILE *out)
{
    fprintf (out, "usage: fks COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < S_N_COMMANDS; i++)
        fprintf (out, "  %-10s %s\n", s_commands [i].name, s_commands [i].summary);
    fprintf (out, "\nRun 'fks help COMMAND' for a command's options and environment.\n");
}

static bool
s_is_help_flag (const char *arg)
{
    return strcmp (arg, "-h") == 0 || strcmp (arg, "--help") == 0;
}

static int
s_cmd_help (int argc, char **argv)
{
    if (argc <= 1) {
        s_print_overview (stdout);
        return 0;
    }
    const s_command_t *cmd = s_lookup (argv [1]);
    if (!cmd) {
        fprintf (stderr, "fks help: no command '%.64s'\n", argv [1]);
        s_print_overview (stderr);
        return 1;
    }
    fputs (cmd->usage, stdout);
    return 0;
}


//  --------------------------------------------------------------------------
//  fks migrate

static int
s_cmd_migrate (int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (s_is_help_flag (argv [i])) {
            fputs (s_lookup ("migrate")->usage, stdout);
            return 0;
        }
        fprintf (stderr, "fks migrate: unexpected argument '%.64s'\n%s", argv [i],
                 s_lookup ("migrate")->usage);
        return 1;
    }
    fks_config_err_t cerr;
    char *url = NULL;
    int rc = fks_config_str ("FKS_PG_URL", NULL, &url, &cerr);
    if (rc < 0) {
        fprintf (stderr, "fks migrate: %s\n", cerr.msg);
        return 1;
    }
    if (!url || !*url) {
        fprintf (stderr, "fks migrate: FKS_PG_URL is %s; set FKS_PG_URL (or FKS_PG_URL_FILE) "
                 "to the PostgreSQL URL, e.g. postgresql://fks@127.0.0.1:5432/fks\n",
                 url ? "empty" : "not set");
        free (url);
        return 1;
    }
    char *dir = NULL;
    if (fks_config_str ("FKS_MIGRATIONS_DIR", FKS_SOURCE_DIR "/schemas/migrations",
                        &dir, &cerr) < 0) {
        fprintf (stderr, "fks migrate: %s\n", cerr.msg);
        free (url);
        return 1;
    }
    int status = 1;
    fks_migrate_t *migrations = NULL;
    fks_pg_t *pg = NULL;
    fks_migrate_err_t merr;
    fks_pg_err_t perr;
    char *shown = fks_pg_url_redacted (url);
    printf ("migrating %s with %s\n", shown ? shown : "(database)", dir);
    fflush (stdout);
    free (shown);

    migrations = fks_migrate_load (dir, stdout, &merr);
    if (!migrations) {
        fprintf (stderr, "fks migrate: %s\n", merr.msg);
        goto done;
    }
    if (fks_migrate_size (migrations) == 0) {
        fprintf (stderr, "fks migrate: no migrations (NNNN_name.sql) in %s; "
                 "set FKS_MIGRATIONS_DIR to the folder that holds them\n", dir);
        goto done;
    }
    pg = fks_pg_new (url, NULL, 0, &perr);
    if (!pg) {
        fprintf (stderr, "fks migrate: FKS_PG_URL: %s\n", perr.msg);
        goto done;
    }
    if (fks_migrate_apply (migrations, pg, stdout, NULL, &merr) != 0) {
        fprintf (stderr, "fks migrate: %s\n", merr.msg);
        goto done;
    }
    status = 0;
done:
    fks_pg_destroy (&pg);
    fks_migrate_destroy (&migrations);
    free (dir);
    free (url);
    return status;
}


//  --------------------------------------------------------------------------

int
main (int argc, char **argv)
{
    //  A bad FKS_LOG_LEVEL is reported by fks_log_init itself and is no reason to refuse an
    //  operator command.
    fks_log_init ("fks");
    if (argc < 2) {
        s_print_overview (stderr);
        return 1;
    }
    if (s_is_help_flag (argv [1]))
        return s_cmd_help (1, argv);
    const s_command_t *cmd = s_lookup (argv [1]);
    if (!cmd) {
        fprintf (stderr, "fks: no command '%.64s'\n\n", argv [1]);
        s_print_overview (stderr);
        return 1;
    }
    return cmd->run (argc - 1, argv + 1);
}
