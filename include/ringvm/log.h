/* SPDX-License-Identifier: MIT */
#ifndef RINGVM_LOG_H
#define RINGVM_LOG_H

enum rvm_log_level {
    RVM_LOG_ERROR = 0,
    RVM_LOG_WARN = 1,
    RVM_LOG_INFO = 2,
    RVM_LOG_DEBUG = 3,
};

/*
 * Log sink. Called from any library thread (vCPU threads included), so it must
 * be thread-safe. msg is a complete line without a trailing newline, valid only
 * for the duration of the call. It may be called with library locks held: it
 * must not call back into ringvm (hand the line to a queue or a file instead).
 */
typedef void (*rvm_log_fn)(void *opaque, enum rvm_log_level level, const char *msg);

/* The short lower-case name of a level ("error", "warn", ...). */
const char *rvm_log_level_name(enum rvm_log_level level);

#endif
