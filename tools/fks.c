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
#include "gateway/apikeys.h"
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
static int s_cmd_keys (int argc, char **argv);
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
    { "keys", s_cmd_keys, "create, revoke and list REST API keys",
      "usage: fks keys create NAME [--scopes read,trade,admin]\n"
      "       fks keys revoke NAME|PREFIX\n"
      "       fks keys list\n"
      "\n"
      "create makes a key for /api/v1 with the given scopes (default: read) and prints it\n"
      "once on stdout: only its SHA-256 is stored, so it cannot be shown again. read allows\n"
      "the GET endpoints and the stream, trade manual orders and cancels, admin everything\n"
      "(the circuit breaker reset). One active key per name. revoke stops one key at once:\n"
      "the key called NAME, else the key whose prefix it is; it prints the key's name and\n"
      "prefix. list shows every key (name, prefix, scopes, created, revoked), never a key\n"
      "itself.\n"
      "\n"
      "environment:\n"
      "  FKS_PG_URL          PostgreSQL URL (or FKS_PG_URL_FILE); required\n"
      "\n"
      "exit status: 0 on success, 1 otherwise.\n" },
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
//  Settings

//  Reads FKS_PG_URL (or FKS_PG_URL_FILE) for `command`. Returns the URL (caller frees), or
//  prints why there is none and returns NULL: the config error (a file that cannot be read,
//  both variables set) as it is, else that the URL is not set or empty.
static char *
s_pg_url (const char *command)
{
    fks_config_err_t cerr;
    char *url = NULL;
    if (fks_config_str ("FKS_PG_URL", NULL, &url, &cerr) < 0) {
        fprintf (stderr, "fks %s: %s\n", command, cerr.msg);
        return NULL;
    }
    if (!url || !*url) {
        const char *what = !url ? "FKS_PG_URL is not set"
                         : getenv ("FKS_PG_URL") ? "FKS_PG_URL is empty"
                         : "FKS_PG_URL_FILE names an empty file";
        fprintf (stderr, "fks %s: %s; set FKS_PG_URL (or FKS_PG_URL_FILE) to the PostgreSQL "
                 "URL, e.g. postgresql://fks@127.0.0.1:5432/fks\n", command, what);
        free (url);
        return NULL;
    }
    return url;
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
    char *url = s_pg_url ("migrate");
    if (!url)
        return 1;
    fks_config_err_t cerr;
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
//  fks keys

static void
s_print_key_row (void *arg, const char *name, const char *prefix, const char *scopes,
                 const char *created_at, const char *revoked_at)
{
    (void) arg;
    printf ("%-24s %-14s %-18s %-21s %s\n", name, prefix, scopes, created_at,
            *revoked_at ? revoked_at : "-");
}

static int
s_cmd_keys (int argc, char **argv)
{
    const char *usage = s_lookup ("keys")->usage;
    if (argc < 2 || s_is_help_flag (argv [1])) {
        fputs (usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    const char *sub = argv [1];
    const char *name = NULL;
    unsigned scopes = FKS_SCOPE_READ;
    if (strcmp (sub, "create") == 0) {
        for (int i = 2; i < argc; i++) {
            if (strcmp (argv [i], "--scopes") == 0 && i + 1 < argc) {
                if (fks_apikey_scopes_parse (argv [++i], &scopes) != 0) {
                    fprintf (stderr, "fks keys: --scopes takes read, trade, admin separated "
                             "by commas, e.g. read,trade\n");
                    return 1;
                }
            }
            else if (!name && argv [i][0] != '-')
                name = argv [i];
            else {
                fprintf (stderr, "fks keys: unexpected argument '%.64s'\n%s", argv [i], usage);
                return 1;
            }
        }
    }
    else if (strcmp (sub, "revoke") == 0 && argc == 3)
        name = argv [2];
    else if (strcmp (sub, "list") != 0 || argc != 2) {
        fprintf (stderr, "fks keys: unknown or incomplete command\n%s", usage);
        return 1;
    }
    if (strcmp (sub, "list") != 0 && !name) {
        fprintf (stderr, "fks keys: give the key's name\n%s", usage);
        return 1;
    }
    char *url = s_pg_url ("keys");
    if (!url)
        return 1;
    fks_pg_err_t perr;
    fks_pg_t *pg = fks_pg_new (url, fks_apikey_stmts, fks_apikey_stmts_n, &perr);
    free (url);
    if (!pg) {
        fprintf (stderr, "fks keys: FKS_PG_URL: %s\n", perr.msg);
        return 1;
    }
    char err [256] = "";
    int rc;
    if (strcmp (sub, "create") == 0) {
        char key [FKS_APIKEY_LEN + 1];
        rc = fks_apikey_create (pg, name, scopes, key, err, sizeof err);
        if (rc == 0) {
            char sc [32];
            fks_apikey_scopes_format (scopes, sc, sizeof sc);
            printf ("%s\n", key);
            fprintf (stderr, "created key '%s' (%s). It is shown only this once: store it now.\n",
                     name, sc);
            memset (key, 0, sizeof key);
        }
    }
    else if (strcmp (sub, "revoke") == 0) {
        //  Says which key went: NAME|PREFIX is one or the other, never both.
        fks_apikey_info_t gone;
        rc = fks_apikey_revoke (pg, name, &gone, err, sizeof err);
        if (rc == 0)
            printf ("revoked '%s' (prefix %s)\n", gone.name, gone.prefix);
    }
    else {
        printf ("%-24s %-14s %-18s %-21s %s\n", "NAME", "PREFIX", "SCOPES", "CREATED", "REVOKED");
        rc = fks_apikey_list (pg, s_print_key_row, NULL, err, sizeof err);
    }
    fks_pg_destroy (&pg);
    if (rc != 0) {
        fprintf (stderr, "fks keys: %s\n", err);
        return 1;
    }
    return 0;
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
