/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guestproc.h"
#include "testutil.h"

int gp_build_dir(char *out, size_t len)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    char *slash;

    if (n < 0)
        return -1;
    exe[n] = '\0';
    for (int i = 0; i < 2; i++) { /* BUILD/tests/test_x -> BUILD */
        if (!(slash = strrchr(exe, '/')))
            return -1;
        *slash = '\0';
    }
    return snprintf(out, len, "%s", exe) < (int)len ? 0 : -1;
}

void gp_files(struct guest_proc *g)
{
    snprintf(g->log, sizeof(g->log), "/tmp/ringvm-gp-con-XXXXXX");
    snprintf(g->err, sizeof(g->err), "/tmp/ringvm-gp-err-XXXXXX");
    int lfd = mkstemp(g->log), efd = mkstemp(g->err);
    assert_true(lfd >= 0 && efd >= 0);
    close(lfd);
    close(efd);
}

void gp_spawn(struct guest_proc *g, char *const argv[], bool new_netns)
{
    g->reaped = false;
    g->pid = fork();
    assert_true(g->pid >= 0);
    if (g->pid == 0) {
        int efd = open(g->err, O_WRONLY | O_TRUNC | O_CLOEXEC);

        if (efd < 0 || dup2(efd, 2) < 0 || (new_netns && unshare(CLONE_NEWNET) < 0))
            _exit(126);
        execv(argv[0], argv);
        _exit(127);
    }
}

bool gp_reap(struct guest_proc *g)
{
    if (g->pid <= 0) /* never started (an earlier step failed): nothing to wait for */
        return true;
    if (!g->reaped && waitpid(g->pid, &g->status, WNOHANG) == g->pid)
        g->reaped = true;
    return g->reaped;
}

void gp_stop(struct guest_proc *g)
{
    if (g->pid > 0 && !g->reaped) {
        kill(g->pid, SIGKILL);
        waitpid(g->pid, &g->status, 0);
        g->reaped = true;
    }
}

void gp_remove(struct guest_proc *g)
{
    gp_stop(g);
    if (g->log[0])
        unlink(g->log);
    if (g->err[0])
        unlink(g->err);
}

char *gp_text(const char *path)
{
    void *buf;
    size_t len;

    return bg_read_file(path, &buf, &len) == 0 ? buf : NULL;
}

static bool holds_any(const char *text, const char *const *needles)
{
    for (; *needles; needles++)
        if (strstr(text, *needles))
            return true;
    return false;
}

char *gp_wait_for(struct guest_proc *g, const char *file, const char *needle, int seconds)
{
    return gp_wait_any(g, file, (const char *const[]){needle, NULL}, seconds);
}

char *gp_wait_any(struct guest_proc *g, const char *file, const char *const *needles, int seconds)
{
    for (int i = 0; i < seconds * 5; i++) {
        bool ended = gp_reap(g);
        char *text = gp_text(file);

        if (text && (holds_any(text, needles) || ended))
            return text;
        free(text);
        if (ended)
            break;
        sleep_ms(200);
    }
    char *text = gp_text(file);
    return text ? text : strdup("");
}

int gp_wait_exit(struct guest_proc *g, int seconds)
{
    if (g->pid <= 0)
        fail_msg("%s: never started", g->name);
    for (int i = 0; i < seconds * 5 && !gp_reap(g); i++)
        sleep_ms(200);
    if (!g->reaped)
        fail_msg("%s: still running after %d s", g->name, seconds);
    if (!WIFEXITED(g->status))
        fail_msg("%s: ended by signal %d", g->name, WTERMSIG(g->status));
    return WEXITSTATUS(g->status);
}

/* cmocka cuts a failure message at 1 KiB: the log goes out whole, before it. */
void gp_need(const char *text, const char *line, const char *who)
{
    if (!strstr(text, line)) {
        print_message("%s: the log searched:\n%s\n", who, text);
        fail_msg("%s: no \"%s\" in its log (printed above)", who, line);
    }
}

void gp_need_not(const char *text, const char *line, const char *who)
{
    if (strstr(text, line)) {
        print_message("%s: the log searched:\n%s\n", who, text);
        fail_msg("%s: \"%s\" should not be in its log (printed above)", who, line);
    }
}
