/* SPDX-License-Identifier: MIT */
/*
 * The shared library exports exactly the functions the public headers
 * declare: no internal helper becomes ABI by accident (its name happening
 * to start with rvm_), and no declared function is missing.
 */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/guestproc.h"
#include "common/testutil.h"

#define MAX_NAMES 512

struct names {
    char *v[MAX_NAMES];
    int n;
};

static void add(struct names *s, const char *name, size_t len)
{
    for (int i = 0; i < s->n; i++)
        if (strlen(s->v[i]) == len && strncmp(s->v[i], name, len) == 0)
            return;
    assert_true(s->n < MAX_NAMES);
    s->v[s->n++] = strndup(name, len);
}

static bool has(const struct names *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->v[i], name) == 0)
            return true;
    return false;
}

/* Comments and preprocessor lines blanked: what is left is declarations. */
static void strip(char *t)
{
    for (char *p = t; *p; p++) {
        if (p[0] == '/' && p[1] == '*') {
            char *e = strstr(p + 2, "*/");
            char *end = e ? e + 2 : p + strlen(p);
            memset(p, ' ', (size_t)(end - p));
            p = end - 1;
        } else if (p[0] == '/' && p[1] == '/') {
            while (*p && *p != '\n')
                *p++ = ' ';
        } else if (*p == '#' && (p == t || p[-1] == '\n')) {
            /* a directive, with its continuation lines */
            while (*p && !(*p == '\n' && p[-1] != '\\'))
                *p++ = ' ';
        }
        if (!*p)
            break;
    }
}

/* Every `rvm_name (` in the header text: a function it declares. */
static void declared_in(const char *path, struct names *s)
{
    FILE *f = fopen(path, "r");
    char *t = calloc(1, 1 << 20);
    size_t n;

    assert_non_null(f);
    assert_non_null(t);
    n = fread(t, 1, (1 << 20) - 1, f);
    fclose(f);
    t[n] = 0;
    strip(t);
    for (char *p = t; (p = strstr(p, "rvm_"));) {
        bool start = p == t || !(p[-1] == '_' || (p[-1] >= 'a' && p[-1] <= 'z') ||
                                 (p[-1] >= 'A' && p[-1] <= 'Z') || (p[-1] >= '0' && p[-1] <= '9'));
        size_t len = strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789_");
        const char *q = p + len;

        while (*q == ' ' || *q == '\t' || *q == '\n')
            q++;
        if (start && *q == '(')
            add(s, p, len);
        p += len;
    }
    free(t);
}

static void test_exports_are_the_headers(void **state)
{
    char build[PATH_MAX - 64], cmd[PATH_MAX + 64], line[512], hdr[PATH_MAX];
    const char *dir = "include/ringvm";
    struct names decl = {.n = 0}, exp = {.n = 0};
    int bad = 0;
    (void)state;

    DIR *d = opendir(dir);
    if (!d)
        d = opendir(dir = "../include/ringvm");
    assert_non_null(d); /* run from the source tree (make test) */
    for (struct dirent *e; (e = readdir(d));) {
        size_t l = strlen(e->d_name);
        if (l > 2 && strcmp(e->d_name + l - 2, ".h") == 0) {
            snprintf(hdr, sizeof(hdr), "%s/%s", dir, e->d_name);
            declared_in(hdr, &decl);
        }
    }
    closedir(d);
    assert_true(decl.n > 50);

    assert_int_equal(gp_build_dir(build, sizeof(build)), 0);
    snprintf(cmd, sizeof(cmd), "nm -D --defined-only '%s/libringvm.so'", build);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    while (fgets(line, sizeof(line), p)) {
        char type, name[256];
        if (sscanf(line, "%*s %c %255s", &type, name) != 2 || type == 'A')
            continue; /* the version node itself */
        char *at = strchr(name, '@');
        add(&exp, name, at ? (size_t)(at - name) : strlen(name));
    }
    assert_int_equal(pclose(p), 0);

    for (int i = 0; i < exp.n; i++)
        if (!has(&decl, exp.v[i])) {
            print_message("    exported, not declared in include/ringvm/: %s\n", exp.v[i]);
            bad++;
        }
    for (int i = 0; i < decl.n; i++)
        if (!has(&exp, decl.v[i])) {
            print_message("    declared, not exported: %s\n", decl.v[i]);
            bad++;
        }
    print_message("    %d functions declared, %d exported\n", decl.n, exp.n);
    assert_int_equal(bad, 0);
    for (int i = 0; i < decl.n; i++)
        free(decl.v[i]);
    for (int i = 0; i < exp.n; i++)
        free(exp.v[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exports_are_the_headers),
    };
    return cmocka_run_group_tests_name("abi", tests, NULL, NULL);
}
