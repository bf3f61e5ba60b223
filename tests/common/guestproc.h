/* SPDX-License-Identifier: MIT */
/*
 * A `ringvm` process that a slow-tier test runs: its console and stderr go
 * to files of its own, which the test reads while the guest boots.
 */
#ifndef RINGVM_TESTS_GUESTPROC_H
#define RINGVM_TESTS_GUESTPROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct guest_proc {
    const char *name; /* for messages */
    pid_t pid;
    int status; /* once reaped */
    bool reaped;
    char log[80], err[80]; /* the console file (ringvm --serial) and stderr */
};

/* The build directory the running test binary is in (BUILD, from BUILD/tests/x). 0 or -1. */
int gp_build_dir(char *out, size_t len);

/* Makes g's two files (empty). Asserts. */
void gp_files(struct guest_proc *g);

/* Starts argv[0] with argv, stderr into g->err; in a network namespace of its own if asked. */
void gp_spawn(struct guest_proc *g, char *const argv[], bool new_netns);

/* Whether g has ended, or never started (reaps it without waiting). */
bool gp_reap(struct guest_proc *g);

/* Kills and reaps g if it runs. */
void gp_stop(struct guest_proc *g);

/* gp_stop(), then removes g's files. */
void gp_remove(struct guest_proc *g);

/* A file's text (malloc'd), or NULL. */
char *gp_text(const char *path);

/*
 * Waits until file holds needle or g ends, polling; the file's text then
 * (malloc'd, never NULL: "" if it cannot be read).
 */
char *gp_wait_for(struct guest_proc *g, const char *file, const char *needle, int seconds);

/* gp_wait_for() for the first of several needles (a NULL-ended list). */
char *gp_wait_any(struct guest_proc *g, const char *file, const char *const *needles, int seconds);

/* Waits for g to end and returns its exit status; fails the test on a signal or a timeout. */
int gp_wait_exit(struct guest_proc *g, int seconds);

/* Fails the test, showing text, unless it holds (or, for gp_need_not, lacks) line. */
void gp_need(const char *text, const char *line, const char *who);
void gp_need_not(const char *text, const char *line, const char *who);

#endif
