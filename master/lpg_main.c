/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_main.c: the lpgate command: options, checks, then the master.
 *
 * Options are Odoo's where Odoo has one (--workers, --db-maxconn,
 * --max-cron-threads, -d, -i, -p, -c, --db_host...); every option maps to a
 * key of the config table and wins over the file.  Before the master starts
 * this file checks the connection budget against the server (exit 2 when it
 * does not hold), raises the fd limit and writes the pidfile.  --check runs
 * lpg_check.c's checks instead of the master.
 */

#include "lpg_core.h"
#include "lpg_budget.h"
#include "lpg_check.h"
#include "lpg_conf.h"
#include "lpg_master.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>


enum { LPG_OPT_CHECK = 1000, LPG_OPT_SIZING, LPG_OPT_VERSION, LPG_OPT_KEY };


typedef struct {
    const char *name;
    int         short_name;
    const char *key;
    const char *arg;
    const char *help;
} lpg_main_opt_t;


static void lpg_main_usage(FILE *out);
static int  lpg_main_pidfile(const char *path);
static void lpg_main_unlink_pidfile(const char *path);


/* one row per option; aliases share a key */
static const lpg_main_opt_t lpg_main_opts[] = {
    { "workers", 0, "workers", "N", "worker processes (default: CPUs)" },
    { "db-maxconn", 0, "db_maxconn", "N",
      "database connections per process (default 8)" },
    { "db_maxconn", 0, "db_maxconn", "N", NULL },
    { "max-cron-threads", 0, "max_cron_threads", "N",
      "cron slots counted in the budget (default 1)" },
    { "max_cron_threads", 0, "max_cron_threads", "N", NULL },
    { "database", 'd', "database", "DB[,DB]", "databases served" },
    { "db-filter", 0, "dbfilter", "REGEX",
      "choose the database by Host (%h, %d), as Odoo's dbfilter" },
    { "interface", 'i', "interface", "ADDR",
      "HTTP listen address (default 127.0.0.1)" },
    { "http-interface", 0, "interface", "ADDR", NULL },
    { "port", 'p', "port", "PORT", "HTTP listen port (default 8072)" },
    { "longpolling-port", 0, "port", "PORT", NULL },
    { "admin-port", 0, "admin_port", "PORT",
      "admin listener for /metrics on admin_interface (default 9072, 0 off)" },
    { "config", 'c', NULL, "FILE", "libconfig file (etc/lpgate.conf)" },
    { "db_host", 0, "db_host", "HOST", "database host (PGHOST)" },
    { "db-host", 0, "db_host", "HOST", NULL },
    { "db_port", 0, "db_port", "PORT", "database port (PGPORT)" },
    { "db-port", 0, "db_port", "PORT", NULL },
    { "db_user", 0, "db_user", "USER", "database user (PGUSER)" },
    { "db-user", 0, "db_user", "USER", NULL },
    { "db_password", 0, "db_password", "PASS",
      "database password (PGPASSWORD)" },
    { "db-password", 0, "db_password", "PASS", NULL },
    { "listen-dsn", 0, "listen_dsn", "DSN",
      "DSN of the LISTEN connection (direct, not via PgBouncer)" },
    { "node-name", 0, "node_name", "NAME",
      "this node's name in its connection claim (default HOST:PORT)" },
    { "longpolling-path", 0, "longpolling_path", "PATH",
      "URL prefix (default /longpolling)" },
    { "timeout", 0, "timeout", "SECONDS", "poll timeout (default 50)" },
    { "drain-delay", 0, "drain_delay", "SECONDS",
      "after SIGQUIT, /health says draining this long first (default 1)" },
    { "odoo-url", 0, "odoo_url", "URL",
      "Odoo asked who a session is (default http://127.0.0.1:8069; \"\" off)" },
    { "session-ttl", 0, "session_ttl", "SECONDS",
      "how long Odoo's word on a session is cached (default 30)" },
    { "presence-interval", 0, "presence_interval", "SECONDS",
      "bus_presence write interval per worker (default 20, 0 off)" },
    { "log-level", 0, "log_level", "LEVEL", "emerg..debug (default notice)" },
    { "logfile", 0, "logfile", "FILE", "log file (default stderr)" },
    { "pidfile", 0, "pidfile", "FILE", "write the master's pid here" },
    { "demo", 0, "demo", NULL, "serve the demo chat page at <path>/demo" },
    { "check-config", 0, NULL, NULL, "check the configuration and exit" },
    { "check", 0, NULL, NULL,
      "try the databases, odoo_url, budget and LISTEN; exit 0 or 2" },
    { "sizing", 0, NULL, NULL,
      "print the connection budget and capacity, then exit" },
    { "version", 'V', NULL, NULL, "print the version and exit" },
    { "help", 'h', NULL, NULL, "print this help and exit" },
};


int
main(int argc, char **argv)
{
    int                    i, c, idx, rc;
    bool                   check_only, check, sizing, check_budget;
    char                   err[LPG_CONF_ERRLEN], why[512], msg[2048];
    struct option          longopts[LPG_NELEMS(lpg_main_opts) + 1];
    lpg_budget_t           b;
    lpg_conf_t             conf;
    struct rlimit          rl;
    static lpg_conf_args_t args;

    lpg_log_set_role("master", -1);

    for (i = 0; i < (int) LPG_NELEMS(lpg_main_opts); i++) {
        longopts[i].name = lpg_main_opts[i].name;
        longopts[i].has_arg =
            lpg_main_opts[i].arg ? required_argument : no_argument;
        longopts[i].flag = NULL;
        longopts[i].val = LPG_OPT_KEY + i;
    }

    memset(&longopts[i], 0, sizeof(longopts[i]));

    check_only = false;
    check = false;
    sizing = false;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":d:i:p:c:Vh", longopts, &idx)) != -1) {
        const lpg_main_opt_t *o = NULL;

        if (c >= LPG_OPT_KEY) {
            o = &lpg_main_opts[c - LPG_OPT_KEY];

        } else {
            for (i = 0; i < (int) LPG_NELEMS(lpg_main_opts); i++) {
                if (lpg_main_opts[i].short_name == c) {
                    o = &lpg_main_opts[i];
                    break;
                }
            }
        }

        if (c == '?' || c == ':' || o == NULL) {
            fprintf(stderr, "lpgate: %s option \"%s\"; see lpgate --help\n",
                    c == ':' ? "missing value for" : "unknown",
                    argv[optind - 1]);
            return LPG_EXIT_FATAL;
        }

        if (strcmp(o->name, "help") == 0) {
            lpg_main_usage(stdout);
            return LPG_EXIT_OK;
        }

        if (strcmp(o->name, "version") == 0) {
            printf("lpgate %s\n", PACKAGE_VERSION);
            return LPG_EXIT_OK;
        }

        if (strcmp(o->name, "check-config") == 0) {
            check_only = true;

        } else if (strcmp(o->name, "check") == 0) {
            check = true;

        } else if (strcmp(o->name, "sizing") == 0) {
            sizing = true;

        } else if (strcmp(o->name, "config") == 0) {
            args.path = optarg;

        } else if (args.n < LPG_CONF_MAX_ARGS) {
            /* a flag with a key (--demo) sets it true */
            args.keys[args.n] = o->key;
            args.values[args.n] = o->arg ? optarg : "true";
            args.n++;

        } else {
            fprintf(stderr, "lpgate: too many options\n");
            return LPG_EXIT_FATAL;
        }
    }

    if (optind < argc) {
        fprintf(stderr,
                "lpgate: unexpected argument \"%s\"; see lpgate "
                "--help\n",
                argv[optind]);
        return LPG_EXIT_FATAL;
    }

    /* for SIGUSR2: the path of this binary now, so that a new file
     * installed at the same path is what gets executed */
    {
        static char exe[4096];
        ssize_t     n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

        exe[n > 0 ? n : 0] = '\0';
        args.exe = exe;
        args.argv = argv;
    }

    if (lpg_conf_build(&conf, &args, err, sizeof(err)) != LPG_OK) {
        fprintf(stderr, "lpgate: %s\n", err);
        return LPG_EXIT_FATAL;
    }

    if (check_only) {
        printf("lpgate: configuration %s%s%sis valid\n",
               args.path ? "file \"" : "", args.path ? args.path : "",
               args.path ? "\" " : "");
        lpg_conf_free(&conf);
        return LPG_EXIT_OK;
    }

    /* as many descriptors as the hard limit allows: each poll is one */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void) setrlimit(RLIMIT_NOFILE, &rl);
    }

    lpg_log_level = conf.log_level;

    if (check) {
        rc = lpg_check_run(&conf, stdout);
        lpg_conf_free(&conf);
        return rc;
    }

    if (sizing) {
        rc = lpg_check_budget(&conf, &b, why, sizeof(why));
        lpg_budget_report(&b, rc == LPG_OK ? NULL : why, stdout);
        lpg_conf_free(&conf);
        return LPG_EXIT_OK;
    }

    rc = lpg_check_budget(&conf, &b, why, sizeof(why));
    check_budget = false;

    if (rc == LPG_OK && !lpg_budget_fits(&b)) {
        lpg_budget_explain(&b, msg, sizeof(msg));
        fprintf(stderr, "lpgate: %s\n", msg);
        if (conf.logfile[0] != '\0' && lpg_log_open(conf.logfile) == LPG_OK) {
            lpg_log(LPG_LOG_EMERG, 0, "%s", msg);
        }

        lpg_conf_free(&conf);
        return LPG_EXIT_FATAL;
    }

    if (lpg_log_open(conf.logfile) != LPG_OK) {
        fprintf(stderr, "lpgate: cannot open the log file \"%s\": %s\n",
                conf.logfile, strerror(errno));
        lpg_conf_free(&conf);
        return LPG_EXIT_FATAL;
    }

    if (rc != LPG_OK) {
        lpg_log(LPG_LOG_WARN, 0,
                "could not check the connection budget now (%s); it is "
                "checked when the database answers",
                why);
        check_budget = true;

    } else {
        lpg_log(LPG_LOG_NOTICE, 0,
                "connection budget: (1 + %d + %d) * %d = %d < %d - %d; "
                "node \"%s\", %d other node(s) claim %d",
                b.workers, b.max_cron_threads, b.db_maxconn,
                lpg_budget_need(&b), b.max_connections, b.reserved, b.node_name,
                b.nothers, b.others);
    }

    signal(SIGPIPE, SIG_IGN);

    if (conf.pidfile[0] != '\0' && lpg_main_pidfile(conf.pidfile) != LPG_OK) {
        lpg_conf_free(&conf);
        return LPG_EXIT_FATAL;
    }

    {
        char *pidfile = strdup(conf.pidfile);

        /* the master owns conf from here on */
        rc = lpg_master_run(&conf, &args, check_budget);

        if (pidfile != NULL && pidfile[0] != '\0') {
            lpg_main_unlink_pidfile(pidfile);
        }

        free(pidfile);
    }

    return rc;
}


static void
lpg_main_usage(FILE *out)
{
    size_t                i;
    char                  left[64];
    const lpg_main_opt_t *o;

    fprintf(out,
            "Usage: lpgate [OPTIONS]\n"
            "Long-polling gateway for PostgreSQL-backed applications "
            "(Odoo's /longpolling).\n\n");

    for (i = 0; i < LPG_NELEMS(lpg_main_opts); i++) {
        o = &lpg_main_opts[i];
        if (o->help == NULL) {
            continue;
        }

        if (o->short_name) {
            snprintf(left, sizeof(left), "-%c, --%s%s%s", o->short_name,
                     o->name, o->arg ? " " : "", o->arg ? o->arg : "");

        } else {
            snprintf(left, sizeof(left), "    --%s%s%s", o->name,
                     o->arg ? "=" : "", o->arg ? o->arg : "");
        }

        fprintf(out, "  %-30s %s\n", left, o->help);
    }

    fprintf(out,
            "\nAliases: --db-host --db-port --db-user --db-password "
            "--db_maxconn --max_cron_threads\n"
            "         --http-interface --longpolling-port\n"
            "\nSignals: TERM/INT stop now, QUIT stops gracefully, HUP "
            "reloads, USR1 reopens the log.\n"
            "Exit status 2: fatal configuration or budget error.\n");
}


static int
lpg_main_pidfile(const char *path)
{
    int     fd, n;
    char    buf[32];
    ssize_t r;

    /* refuse to start over a live lpgate */
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd != -1) {
        r = read(fd, buf, sizeof(buf) - 1);
        close(fd);

        if (r > 0) {
            buf[r] = '\0';
            n = atoi(buf);
            if (n > 0 && n != getpid() && kill(n, 0) == 0) {
                lpg_log(LPG_LOG_EMERG, 0,
                        "pidfile \"%s\" names a running process %d: is "
                        "lpgate already running?",
                        path, n);
                return LPG_ERROR;
            }
        }
    }

    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd == -1) {
        lpg_log(LPG_LOG_EMERG, errno, "open(\"%s\") failed", path);
        return LPG_ERROR;
    }

    n = snprintf(buf, sizeof(buf), "%d\n", (int) getpid());
    if (write(fd, buf, n) != n) {
        lpg_log(LPG_LOG_EMERG, errno, "write(\"%s\") failed", path);
        close(fd);
        return LPG_ERROR;
    }

    close(fd);

    return LPG_OK;
}


/* removes path, or path.oldbin after a binary upgrade, when it still names
 * this process: the new master's pidfile is not ours to remove */
static void
lpg_main_unlink_pidfile(const char *path)
{
    int     fd, k;
    char    buf[32], name[4096];
    ssize_t r;

    for (k = 0; k < 2; k++) {
        snprintf(name, sizeof(name), "%s%s", path, k ? ".oldbin" : "");

        fd = open(name, O_RDONLY | O_CLOEXEC);
        if (fd == -1) {
            continue;
        }

        r = read(fd, buf, sizeof(buf) - 1);
        close(fd);

        if (r > 0) {
            buf[r] = '\0';
            if (atoi(buf) == (int) getpid()) {
                unlink(name);
            }
        }
    }
}
