/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>

#include "hv_internal.h"
#include "log.h"

const char *rvm_log_level_name(enum rvm_log_level level)
{
    switch (level) {
    case RVM_LOG_ERROR:
        return "error";
    case RVM_LOG_WARN:
        return "warn";
    case RVM_LOG_INFO:
        return "info";
    case RVM_LOG_DEBUG:
        return "debug";
    }
    return "?";
}

int rvm_log_enabled(const struct rvm_hv *hv, enum rvm_log_level level)
{
    return hv && hv->log && level <= hv->log_level;
}

void rvm_logf(const struct rvm_hv *hv, enum rvm_log_level level, const char *fmt, ...)
{
    char line[512];
    va_list ap;

    if (!rvm_log_enabled(hv, level))
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    hv->log(hv->log_opaque, level, line);
}
