/* SPDX-License-Identifier: MIT */
#ifndef RINGVM_CORE_LOG_H
#define RINGVM_CORE_LOG_H

#include <ringvm/log.h>

struct rvm_hv;

/*
 * Formats one line and hands it to hv's log callback if level is enabled.
 * hv may be NULL (then nothing is logged). Safe from any thread; allocates
 * nothing (the line is cut at 512 bytes).
 */
__attribute__((format(printf, 3, 4))) void rvm_logf(const struct rvm_hv *hv,
                                                    enum rvm_log_level level, const char *fmt, ...);

/* True if a message at level would reach the callback (to skip costly formatting). */
int rvm_log_enabled(const struct rvm_hv *hv, enum rvm_log_level level);

#define rvm_err(hv, ...)  rvm_logf((hv), RVM_LOG_ERROR, __VA_ARGS__)
#define rvm_warn(hv, ...) rvm_logf((hv), RVM_LOG_WARN, __VA_ARGS__)
#define rvm_info(hv, ...) rvm_logf((hv), RVM_LOG_INFO, __VA_ARGS__)
#define rvm_dbg(hv, ...)  rvm_logf((hv), RVM_LOG_DEBUG, __VA_ARGS__)

#endif
