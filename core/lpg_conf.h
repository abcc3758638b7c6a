/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_conf.h: lpgate's configuration, driven by one key table.
 *
 * Each key has a type, a default, a range, a reloadable flag and a line of
 * documentation; the same table serves the libconfig file, the command line
 * (as text values) and the check that etc/lpgate.conf documents every key.
 * Loading never changes a live configuration: callers parse into a fresh
 * lpg_conf_t and swap it in only on success.
 */

#ifndef LPG_CONF_H
#define LPG_CONF_H


#include "lpg_core.h"


#define LPG_CONF_ERRLEN 512


typedef enum {
    LPG_CONF_INT,
    LPG_CONF_SIZE,
    LPG_CONF_BOOL,
    LPG_CONF_STR,
    LPG_CONF_LEVEL
} lpg_conf_type_e;


typedef struct {
    const char     *name;
    lpg_conf_type_e type;
    size_t          offset;
    const char     *def;
    int64_t         min;
    int64_t         max;
    bool            reloadable;
    const char     *doc;
} lpg_conf_key_t;


/* strings are owned by the lpg_conf_t and freed by lpg_conf_free() */
typedef struct {
    int     workers;
    int     db_maxconn;
    int     max_cron_threads;
    char   *database;
    int     odoo_version;
    char   *dbfilter;
    int     demo;
    int     max_header_size;
    int64_t max_body_size;
    int     max_channels_per_poll;
    int64_t max_answer_size;
    int     client_header_timeout;
    int     client_body_timeout;
    int     send_timeout;
    int     keepalive_timeout;
    int     allow_send;
    char   *send_channels;
    int     send_max_bytes;
    char   *admin_interface;
    int     admin_port;
    char   *trusted_proxies;
    char   *interface;
    int     port;
    char   *db_host;
    int     db_port;
    char   *db_user;
    char   *db_password;
    char   *listen_dsn;
    char   *node_name;
    char   *listen_channel;
    char   *longpolling_path;
    int     timeout;
    int     shutdown_timeout;
    int     drain_delay;
    int     log_level;
    char   *logfile;
    char   *pidfile;
    int64_t ring_size;
    char   *odoo_url;
    int     odoo_timeout;
    int     odoo_maxconn;
    char   *odoo_cafile;
    int     session_ttl;
    int     session_retry;
    int     max_sessions;
    int     presence_interval;
    int     websocket_same_origin;
    int     websocket_keep_alive;
    int     websocket_ping_interval;
    int     websocket_pong_timeout;
    int     socketio_ping_interval;
    int     socketio_ping_timeout;
    int64_t socketio_max_payload;
    char   *socketio_namespaces;
    int     sse_retry;
    int     sse_heartbeat;
} lpg_conf_t;


/* what a command line said: the file to read and the keys it overrides;
 * the strings are borrowed from argv for the life of the process */
#define LPG_CONF_MAX_ARGS 64

typedef struct {
    const char  *path;
    char *const *argv; /* the command line, for a binary upgrade */
    const char  *exe;  /* absolute path of the binary at start */
    int          n;
    const char  *keys[LPG_CONF_MAX_ARGS];
    const char  *values[LPG_CONF_MAX_ARGS];
} lpg_conf_args_t;


const lpg_conf_key_t *lpg_conf_keys(size_t *n);
const lpg_conf_key_t *lpg_conf_find(const char *name);

/* sets every key to its default; strings are fresh copies */
int  lpg_conf_init(lpg_conf_t *conf) LPG_MUSTCHECK;
void lpg_conf_free(lpg_conf_t *conf);
int  lpg_conf_copy(lpg_conf_t *dst, const lpg_conf_t *src) LPG_MUSTCHECK;

/* "key" may be spelt with '-' or '_'; value is text as on a command line */
int lpg_conf_set(lpg_conf_t *conf, const char *key, const char *value,
                 char *err, size_t errlen) LPG_MUSTCHECK;

/* reads a libconfig file; on error, err names the file, the line and key */
int lpg_conf_load(lpg_conf_t *conf, const char *path, char *err,
                  size_t errlen) LPG_MUSTCHECK;

/* cross-key checks and derived values (workers = 0 means CPUs) */
int lpg_conf_finish(lpg_conf_t *conf, char *err, size_t errlen) LPG_MUSTCHECK;

/* defaults, then the file, then the command line wins; then finish */
int lpg_conf_build(lpg_conf_t *conf, const lpg_conf_args_t *args, char *err,
                   size_t errlen) LPG_MUSTCHECK;

/* http[s]://HOST[:PORT][/PATH] split; no userinfo or query */
typedef struct {
    char host[256];
    int  port;        /* 80 or 443 unless given */
    char prefix[256]; /* without a trailing '/'; "" for none */
    bool tls;         /* https */
} lpg_conf_url_t;

int lpg_conf_parse_url(const char *url, lpg_conf_url_t *u) LPG_MUSTCHECK;

bool lpg_conf_equal(const lpg_conf_t *a, const lpg_conf_t *b,
                    const lpg_conf_key_t *key);


#endif /* LPG_CONF_H */
