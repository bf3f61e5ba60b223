/* SPDX-License-Identifier: MIT */
/*
 * The bench guest as a hostile driver (test=hostile, guest/hostile.c):
 * each of its cases breaks one rule of virtio against the VM's virtio-blk
 * device, its virtio-net device (on a socket pair) or their transport, and
 * checks from inside the guest that the device failed the request (or,
 * for a ring it cannot trust, set NEEDS_RESET), wrote nothing outside the
 * buffers it was given, and went on serving a sound ring. Here: every case
 * passes, the VMM stays up, and of the frames that reach the network only
 * the good ones the guest sent after each case come out.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/testutil.h"

#define MIN_CASES 60

static void test_hostile_driver(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    char disk[] = "/var/tmp/ringvm-hostile-XXXXXX", bword[96], nword[96], cmd[512];
    struct tvm t;
    struct rvm_vm_config c;
    struct rvm_vm_result res;
    int sv[2], fd = mkstemp(disk);

    assert_true(fd >= 0 && ftruncate(fd, 4 << 20) == 0);
    close(fd);
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    rvm_vm_config_init(&c);
    c.mem.size = 64 << 20;
    tvm_create(&t, "test=hostile", &c); /* loaded again below, with the devices named */
    struct rvm_blk_config bc = {.path = disk};
    struct rvm_net_config nc = {.fd = sv[0]};
    assert_int_equal(rvm_vm_add_virtio_blk(t.vm, &bc, bword, sizeof(bword)), 0);
    assert_int_equal(rvm_vm_add_virtio_net(t.vm, &nc, nword, sizeof(nword)), 0);
    snprintf(cmd, sizeof(cmd), "test=hostile %s %s", bword, nword);
    struct rvm_pvh_params pp = {.cmdline = cmd};
    assert_int_equal(rvm_vm_load_pvh_file(t.vm, guest_path(), &pp, NULL), 0);
    assert_int_equal(rvm_vm_start(t.vm), 0);
    int r = rvm_vm_wait(t.vm, 600000, &res);
    /* The failures and the result, line by line: cmocka cuts a message at 1 KiB. */
    static char out[sizeof(t.con.buf)];
    memcpy(out, t.con.buf, sizeof(out));
    out[sizeof(out) - 1] = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"))
        if (strncmp(line, "CASE ", 5) || strstr(line, " FAIL "))
            print_message("%s\n", line);
    assert_int_equal(r, 0);
    assert_int_equal(res.end, RVM_END_DEBUG_EXIT);
    assert_int_equal(res.value, 0);

    uint64_t cases = 0, failed = 1, sent = 0;
    assert_int_equal(bg_result_value(t.con.buf, "cases", &cases), 0);
    assert_int_equal(bg_result_value(t.con.buf, "failed", &failed), 0);
    assert_int_equal(bg_result_value(t.con.buf, "sent", &sent), 0);
    print_message("    %llu hostile cases, %llu failed\n", (unsigned long long)cases,
                  (unsigned long long)failed);
    assert_int_equal(failed, 0);
    assert_true(cases >= MIN_CASES);

    /* Only the good frames went out, one after each network case. */
    uint8_t f[2048];
    uint64_t good = 0;
    ssize_t n;
    while ((n = recv(sv[1], f, sizeof(f), MSG_DONTWAIT)) > 0) {
        assert_true(n >= 15 && f[12] == 0x88 && f[13] == 0xb5);
        assert_int_equal(f[14], 'G');
        good++;
    }
    assert_int_equal(good, sent);
    assert_true(sent > 0);
    tvm_destroy(&t);
    close(sv[1]);
    unlink(disk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostile_driver),
    };
    return cmocka_run_group_tests_name("hostile_guest", tests, NULL, NULL);
}
