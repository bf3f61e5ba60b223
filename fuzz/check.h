/* SPDX-License-Identifier: MIT */
/* What the fuzz targets share: an invariant that must hold, or the run aborts (a finding). */
#ifndef RINGVM_FUZZ_CHECK_H
#define RINGVM_FUZZ_CHECK_H

#include <stdlib.h>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

#endif
