/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_conf.c: the config's life: defaults set from the key table
 * (lpg_conf_keys.c), values from text or the libconfig reader, the
 * checks across keys, copies and comparisons (a reload).
 *
 * Values arrive as text (command line, defaults) or as libconfig settings
 * (file); both go through one range check per key.  Errors are written into
 * the caller's buffer, never logged here: the caller decides whether a bad
 * value is fatal (start) or ignored with the old config kept (reload).
 */

#include "lpg_conf_int.h"
#include "lpg_budget.h"

#include <errno.h>
#include <libconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


static int         lpg_conf_set_int(lpg_conf_t *conf, const lpg_conf_key_t *key,
                                    int64_t v, char *err, size_t errlen);
static int         lpg_conf_set_str(lpg_conf_t *conf, const lpg_conf_key_t *key,
                                    const char *v, char *err, size_t errlen);
static int         lpg_conf_parse_size(const char *text, int64_t *out);
static const char *lpg_conf_type_name(lpg_conf_type_e type);


int
lpg_conf_init(lpg_conf_t *conf)
{
    size_t i;
    char   err[LPG_CONF_ERRLEN];

    memset(conf, 0, sizeof(*conf));

    for (i = 0; i < lpg_conf_nkeys; i++) {
        if (lpg_conf_set(conf, lpg_conf_table[i].name, lpg_conf_table[i].def,
                         err, sizeof(err))
            != LPG_OK)
        {
            lpg_conf_free(conf);
            return LPG_ERROR;
        }
    }

    return LPG_OK;
}


void
lpg_conf_free(lpg_conf_t *conf)
{
    size_t i;

    for (i = 0; i < lpg_conf_nkeys; i++) {
        if (lpg_conf_table[i].type == LPG_CONF_STR) {
            char **p = (char **) ((char *) conf + lpg_conf_table[i].offset);

            free(*p);
            *p = NULL;
        }
    }
}


int
lpg_conf_copy(lpg_conf_t *dst, const lpg_conf_t *src)
{
    size_t i;

    memcpy(dst, src, sizeof(*dst));

    for (i = 0; i < lpg_conf_nkeys; i++) {
        if (lpg_conf_table[i].type == LPG_CONF_STR) {
            char **p = (char **) ((char *) dst + lpg_conf_table[i].offset);

            *p = strdup(*p);
            if (*p == NULL) {
                for (; i < lpg_conf_nkeys; i++) {
                    if (lpg_conf_table[i].type == LPG_CONF_STR) {
                        *(char **) ((char *) dst + lpg_conf_table[i].offset) =
                            NULL;
                    }
                }

                lpg_conf_free(dst);
                return LPG_ERROR;
            }
        }
    }

    return LPG_OK;
}


int
lpg_conf_set(lpg_conf_t *conf, const char *name, const char *value, char *err,
             size_t errlen)
{
    int                   level;
    char                 *end;
    int64_t               v;
    const lpg_conf_key_t *key;

    key = lpg_conf_find(name);
    if (key == NULL) {
        snprintf(err, errlen, "unknown option \"%s\"", name);
        return LPG_ERROR;
    }

    switch (key->type) {

    case LPG_CONF_INT:
        errno = 0;
        v = strtoll(value, &end, 10);
        if (errno != 0 || end == value || *end != '\0') {
            snprintf(err, errlen, "%s: \"%s\" is not an integer", key->name,
                     value);
            return LPG_ERROR;
        }

        return lpg_conf_set_int(conf, key, v, err, errlen);

    case LPG_CONF_SIZE:
        if (lpg_conf_parse_size(value, &v) != LPG_OK) {
            snprintf(err, errlen,
                     "%s: \"%s\" is not a size (a number with an optional "
                     "k, M or G)",
                     key->name, value);
            return LPG_ERROR;
        }

        return lpg_conf_set_int(conf, key, v, err, errlen);

    case LPG_CONF_BOOL:
        if (strcmp(value, "true") == 0 || strcmp(value, "1") == 0
            || strcmp(value, "on") == 0 || strcmp(value, "yes") == 0)
        {
            return lpg_conf_set_int(conf, key, 1, err, errlen);
        }

        if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0
            || strcmp(value, "off") == 0 || strcmp(value, "no") == 0)
        {
            return lpg_conf_set_int(conf, key, 0, err, errlen);
        }

        snprintf(err, errlen, "%s: \"%s\" is not a boolean", key->name, value);
        return LPG_ERROR;

    case LPG_CONF_LEVEL:
        level = lpg_log_level_parse(value);
        if (level < 0) {
            snprintf(err, errlen,
                     "%s: \"%s\" is not one of emerg, alert, error, warn, "
                     "notice, info, debug",
                     key->name, value);
            return LPG_ERROR;
        }

        *(int *) ((char *) conf + key->offset) = level;
        return LPG_OK;

    case LPG_CONF_STR:
        return lpg_conf_set_str(conf, key, value, err, errlen);
    }

    return LPG_ERROR;
}


int
lpg_conf_load(lpg_conf_t *conf, const char *path, char *err, size_t errlen)
{
    int                   i, n, rc, line;
    char                  buf[32];
    int64_t               v;
    config_t              cfg;
    const char           *s, *file;
    config_setting_t     *root, *st;
    const lpg_conf_key_t *key;

    config_init(&cfg);

    if (config_read_file(&cfg, path) != CONFIG_TRUE) {
        if (config_error_type(&cfg) == CONFIG_ERR_FILE_IO) {
            snprintf(err, errlen, "%s: cannot read the file (%s)", path,
                     strerror(errno));

        } else {
            snprintf(err, errlen, "%s:%d: %s",
                     config_error_file(&cfg) ? config_error_file(&cfg) : path,
                     config_error_line(&cfg), config_error_text(&cfg));
        }

        config_destroy(&cfg);
        return LPG_ERROR;
    }

    root = config_root_setting(&cfg);
    n = config_setting_length(root);
    rc = LPG_OK;

    for (i = 0; i < n && rc == LPG_OK; i++) {
        char kerr[LPG_CONF_ERRLEN];

        st = config_setting_get_elem(root, i);
        line = config_setting_source_line(st);
        file = config_setting_source_file(st);
        if (file == NULL) {
            file = path;
        }

        key = lpg_conf_find(config_setting_name(st));
        if (key == NULL || strchr(config_setting_name(st), '-') != NULL) {
            snprintf(err, errlen, "%s:%d: unknown key \"%s\"", file, line,
                     config_setting_name(st));
            rc = LPG_ERROR;
            break;
        }

        switch (config_setting_type(st)) {

        case CONFIG_TYPE_INT:
        case CONFIG_TYPE_INT64:
            if (key->type != LPG_CONF_INT && key->type != LPG_CONF_SIZE) {
                goto wrong_type;
            }

            v = config_setting_get_int64(st);
            rc = lpg_conf_set_int(conf, key, v, kerr, sizeof(kerr));
            break;

        case CONFIG_TYPE_BOOL:
            if (key->type != LPG_CONF_BOOL) {
                goto wrong_type;
            }

            rc = lpg_conf_set_int(conf, key, config_setting_get_bool(st), kerr,
                                  sizeof(kerr));
            break;

        case CONFIG_TYPE_STRING:
            if (key->type == LPG_CONF_INT || key->type == LPG_CONF_BOOL) {
                goto wrong_type;
            }

            s = config_setting_get_string(st);
            rc = lpg_conf_set(conf, key->name, s, kerr, sizeof(kerr));
            break;

        default:
            goto wrong_type;
        }

        if (rc != LPG_OK) {
            snprintf(err, errlen, "%s:%d: key %s", file, line, kerr);
        }

        continue;

    wrong_type:

        switch (config_setting_type(st)) {
        case CONFIG_TYPE_INT:
        case CONFIG_TYPE_INT64:
            s = "an integer";
            break;
        case CONFIG_TYPE_FLOAT:
            s = "a float";
            break;
        case CONFIG_TYPE_STRING:
            s = "a string";
            break;
        case CONFIG_TYPE_BOOL:
            s = "a boolean";
            break;
        default:
            snprintf(buf, sizeof(buf), "a group or list");
            s = buf;
            break;
        }

        snprintf(err, errlen, "%s:%d: key %s: expected %s, got %s", file, line,
                 key->name, lpg_conf_type_name(key->type), s);
        rc = LPG_ERROR;
    }

    config_destroy(&cfg);

    return rc;
}


int
lpg_conf_finish(lpg_conf_t *conf, char *err, size_t errlen)
{
    long   ncpu;
    size_t len;
    char  *p;

    if (conf->workers == 0) {
        ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        conf->workers = ncpu < 1
            ? 1
            : (ncpu > LPG_MAX_WORKERS ? LPG_MAX_WORKERS : (int) ncpu);
    }

    p = conf->longpolling_path;
    if (p[0] != '/') {
        snprintf(err, errlen, "longpolling_path: \"%s\" must start with \"/\"",
                 p);
        return LPG_ERROR;
    }

    /* "/longpolling/" and "/longpolling" are the same prefix; "/" is none */
    len = strlen(p);
    while (len > 0 && p[len - 1] == '/') {
        p[--len] = '\0';
    }

    if (strpbrk(p, " ?#\t") != NULL) {
        snprintf(err, errlen,
                 "longpolling_path: \"%s\" must not hold spaces, '?' or '#'",
                 p);
        return LPG_ERROR;
    }

    if (conf->interface[0] == '\0') {
        snprintf(err, errlen, "interface: must not be empty");
        return LPG_ERROR;
    }

    if (conf->node_name[0] == '\0') {
        char host[256], name[LPG_BUDGET_NODE_MAX + 1], *dot;
        int  n;

        /* the short host name, cut so that ":<port>" always fits */
        if (gethostname(host, sizeof(host)) != 0) {
            snprintf(host, sizeof(host), "lpgate");
        }

        host[sizeof(host) - 1] = '\0';
        dot = strchr(host, '.');
        if (dot != NULL && dot != host) {
            *dot = '\0';
        }

        n = LPG_BUDGET_NODE_MAX - 6;
        snprintf(name, sizeof(name), "%.*s:%d", n, host, conf->port);

        for (p = name; *p != '\0'; p++) {
            if (strchr("._:-", *p) == NULL
                && !((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                     || (*p >= '0' && *p <= '9')))
            {
                *p = '-';
            }
        }

        free(conf->node_name);
        conf->node_name = strdup(name);
        if (conf->node_name == NULL) {
            snprintf(err, errlen, "out of memory");
            return LPG_ERROR;
        }
    }

    if (!lpg_budget_node_valid(conf->node_name)) {
        snprintf(err, errlen,
                 "node_name: \"%s\" must be 1 to %d characters of A-Z, a-z, "
                 "0-9, '.', '_', ':' and '-'",
                 conf->node_name, LPG_BUDGET_NODE_MAX);
        return LPG_ERROR;
    }

    if (conf->listen_channel[0] == '\0') {
        snprintf(err, errlen, "listen_channel: must not be empty");
        return LPG_ERROR;
    }

    if (conf->odoo_url[0] != '\0') {
        lpg_conf_url_t u;

        if (lpg_conf_parse_url(conf->odoo_url, &u) != LPG_OK) {
            snprintf(err, errlen,
                     "odoo_url: \"%s\" is not http[s]://HOST[:PORT][/PATH]",
                     conf->odoo_url);
            return LPG_ERROR;
        }
    }

    if (conf->odoo_cafile[0] != '\0' && access(conf->odoo_cafile, R_OK) != 0) {
        snprintf(err, errlen, "odoo_cafile: cannot read \"%s\" (%s)",
                 conf->odoo_cafile, strerror(errno));
        return LPG_ERROR;
    }

    return LPG_OK;
}


int
lpg_conf_parse_url(const char *url, lpg_conf_url_t *u)
{
    size_t      len;
    long        port;
    char       *end;
    const char *h, *p, *colon, *slash;

    memset(u, 0, sizeof(*u));

    if (strncmp(url, "https://", 8) == 0) {
        u->tls = true;
        h = url + 8;

    } else if (strncmp(url, "http://", 7) == 0) {
        h = url + 7;

    } else {
        return LPG_ERROR;
    }

    slash = strchr(h, '/');
    p = slash != NULL ? slash : h + strlen(h);

    if (h[0] == '[') {
        /* [v6]:port */
        colon = memchr(h, ']', p - h);
        if (colon == NULL) {
            return LPG_ERROR;
        }

        len = colon - h - 1;
        h++;
        colon = colon + 1 < p && colon[1] == ':' ? colon + 1 : NULL;

    } else {
        colon = memchr(h, ':', p - h);
        len = (colon != NULL ? colon : p) - h;
    }

    if (len == 0 || len >= sizeof(u->host) || memchr(h, '@', len) != NULL
        || strpbrk(url, " \t\r\n?#") != NULL)
    {
        return LPG_ERROR;
    }

    memcpy(u->host, h, len);
    u->port = u->tls ? 443 : 80;

    if (colon != NULL) {
        port = strtol(colon + 1, &end, 10);
        if (end != p || port < 1 || port > 65535) {
            return LPG_ERROR;
        }

        u->port = (int) port;
    }

    /* the path prefix without its trailing '/' */
    len = strlen(p);
    while (len > 0 && p[len - 1] == '/') {
        len--;
    }

    if (len >= sizeof(u->prefix)) {
        return LPG_ERROR;
    }

    memcpy(u->prefix, p, len);

    return LPG_OK;
}


int
lpg_conf_build(lpg_conf_t *conf, const lpg_conf_args_t *args, char *err,
               size_t errlen)
{
    int  i;
    char aerr[LPG_CONF_ERRLEN];

    if (lpg_conf_init(conf) != LPG_OK) {
        snprintf(err, errlen, "out of memory");
        return LPG_ERROR;
    }

    if (args->path != NULL
        && lpg_conf_load(conf, args->path, err, errlen) != LPG_OK)
    {
        goto failed;
    }

    for (i = 0; i < args->n; i++) {
        if (lpg_conf_set(conf, args->keys[i], args->values[i], aerr,
                         sizeof(aerr))
            != LPG_OK)
        {
            snprintf(err, errlen, "command line: %s", aerr);
            goto failed;
        }
    }

    if (lpg_conf_finish(conf, err, errlen) != LPG_OK) {
        goto failed;
    }

    return LPG_OK;

failed:

    lpg_conf_free(conf);

    return LPG_ERROR;
}


bool
lpg_conf_equal(const lpg_conf_t *a, const lpg_conf_t *b,
               const lpg_conf_key_t *key)
{
    const char *pa = (const char *) a + key->offset;
    const char *pb = (const char *) b + key->offset;

    switch (key->type) {
    case LPG_CONF_STR:
        return strcmp(*(char *const *) pa, *(char *const *) pb) == 0;
    case LPG_CONF_SIZE:
        return *(const int64_t *) pa == *(const int64_t *) pb;
    default:
        return *(const int *) pa == *(const int *) pb;
    }
}


static int
lpg_conf_set_int(lpg_conf_t *conf, const lpg_conf_key_t *key, int64_t v,
                 char *err, size_t errlen)
{
    char *p = (char *) conf + key->offset;

    if (key->type != LPG_CONF_BOOL && (v < key->min || v > key->max)) {
        snprintf(err, errlen, "%s: %lld is out of range (%lld to %lld)",
                 key->name, (long long) v, (long long) key->min,
                 (long long) key->max);
        return LPG_ERROR;
    }

    if (key->type == LPG_CONF_SIZE) {
        *(int64_t *) p = v;

    } else {
        *(int *) p = (int) v;
    }

    return LPG_OK;
}


static int
lpg_conf_set_str(lpg_conf_t *conf, const lpg_conf_key_t *key, const char *v,
                 char *err, size_t errlen)
{
    char **p = (char **) ((char *) conf + key->offset);
    char  *copy;

    copy = strdup(v);
    if (copy == NULL) {
        snprintf(err, errlen, "%s: out of memory", key->name);
        return LPG_ERROR;
    }

    free(*p);
    *p = copy;

    return LPG_OK;
}


static int
lpg_conf_parse_size(const char *text, int64_t *out)
{
    char   *end;
    int64_t v, mult;

    errno = 0;
    v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || v < 0) {
        return LPG_ERROR;
    }

    switch (*end) {
    case '\0':
        mult = 1;
        break;
    case 'k':
    case 'K':
        mult = 1024;
        end++;
        break;
    case 'm':
    case 'M':
        mult = 1024 * 1024;
        end++;
        break;
    case 'g':
    case 'G':
        mult = 1024 * 1024 * 1024;
        end++;
        break;
    default:
        return LPG_ERROR;
    }

    if (*end == 'B' || *end == 'b') {
        end++;
    }

    if (*end != '\0' || v > INT64_MAX / mult) {
        return LPG_ERROR;
    }

    *out = v * mult;

    return LPG_OK;
}


static const char *
lpg_conf_type_name(lpg_conf_type_e type)
{
    switch (type) {
    case LPG_CONF_INT:
        return "an integer";
    case LPG_CONF_SIZE:
        return "a size (integer or string like \"64M\")";
    case LPG_CONF_BOOL:
        return "a boolean";
    case LPG_CONF_LEVEL:
        return "a log level string";
    default:
        return "a string";
    }
}
