/* SPDX-License-Identifier: MIT */
/*
 * Disks whose backend fails the host.
 *
 * One that stops answering, as a hard NFS mount or a dying disk does: the
 * file lives on a FUSE filesystem served by this test, which can hold every
 * read and write it is sent without answering (direct I/O, so the page cache
 * answers nothing either). io_uring's cancel does not reach such a request
 * (the kernel waits for the server killably), which is the case a VMM must
 * bound. A guest's reset, a snapshot and a pause must each return while it
 * hangs; when the backend answers again the reset completes. The server's
 * watchdog answers what it holds after WATCHDOG_S, so that a VMM that waits
 * without bound fails the test instead of hanging.
 *
 * One that fills up, under the error policy that pauses the VM until the
 * host has made room. And a disk whose rate limit holds the guest back.
 */
#define FUSE_USE_VERSION 35
#include <errno.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/virtio_mmio.h>

#include "../guest/abi.h"
#include "common/testutil.h"

#define DISK_BYTES (8u << 20)
#define HELD_MAX   256
#define WATCHDOG_S 30
#define INO_DISK   2

/* ---- the filesystem: one file, "disk", that can stop answering ---- */

/*
 * The server runs in a child process, so that this process failing or dying
 * never leaves its own I/O waiting on a server that died with it. Commands
 * go down a pipe ('S' stall, 'U' answer again; the pipe's end: answer
 * everything, unmount, exit); what the server has held is counted in a page
 * both share.
 */
struct shared {
    int stalled, nheld, watchdog_fired;
};

struct stallfs {
    char dir[64];
    pid_t pid;
    int cmd;
    struct shared *sh;
};

struct held {
    fuse_req_t req;
    bool is_write;
    size_t size;
    off_t off;
    void *data; /* a write's bytes */
};

/* The child's. */
static struct {
    struct fuse_session *se;
    pthread_mutex_t lock;
    struct held held[HELD_MAX];
    struct shared *sh;
    uint8_t *data;
    time_t stalled_at;
} srv = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void fs_attr(fuse_ino_t ino, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = ino;
    if (ino == FUSE_ROOT_ID) {
        st->st_mode = S_IFDIR | 0700;
        st->st_nlink = 2;
    } else {
        st->st_mode = S_IFREG | 0600;
        st->st_nlink = 1;
        st->st_size = DISK_BYTES;
    }
}

static void fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fuse_entry_param e = {.ino = INO_DISK};

    if (parent != FUSE_ROOT_ID || strcmp(name, "disk") != 0) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    fs_attr(INO_DISK, &e.attr);
    fuse_reply_entry(req, &e);
}

static void fs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct stat st;

    (void)fi;
    if (ino != FUSE_ROOT_ID && ino != INO_DISK) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    fs_attr(ino, &st);
    fuse_reply_attr(req, &st, 0);
}

static void fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    if (ino != INO_DISK) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    fi->direct_io = 1; /* every read and write comes here */
    fuse_reply_open(req, fi);
}

/* Answers one request from the file's bytes. */
static void fs_answer(const struct held *h)
{
    size_t n = h->off >= (off_t)DISK_BYTES ? 0 : DISK_BYTES - (size_t)h->off;

    if (n > h->size)
        n = h->size;
    if (h->is_write) {
        memcpy(srv.data + h->off, h->data, n);
        fuse_reply_write(h->req, n);
    } else {
        fuse_reply_buf(h->req, (const char *)srv.data + h->off, n);
    }
}

/* A request answered now, or held while the filesystem is stalled. */
static void fs_io(fuse_req_t req, bool is_write, const char *buf, size_t size, off_t off)
{
    struct held h = {.req = req, .is_write = is_write, .size = size, .off = off};

    pthread_mutex_lock(&srv.lock);
    if (srv.sh->stalled && srv.sh->nheld < HELD_MAX) {
        if (is_write) {
            h.data = malloc(size);
            memcpy(h.data, buf, size);
        }
        srv.held[srv.sh->nheld] = h;
        __atomic_store_n(&srv.sh->nheld, srv.sh->nheld + 1, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&srv.lock);
        return;
    }
    h.data = (void *)buf;
    fs_answer(&h);
    pthread_mutex_unlock(&srv.lock);
}

static void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    (void)ino, (void)fi;
    fs_io(req, false, NULL, size, off);
}

static void fs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    (void)ino, (void)fi;
    fs_io(req, true, buf, size, off);
}

static void fs_ok(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino, (void)fi;
    fuse_reply_err(req, 0);
}

static void fs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    (void)datasync;
    fs_ok(req, ino, fi);
}

static const struct fuse_lowlevel_ops fs_ops = {
    .lookup = fs_lookup,
    .getattr = fs_getattr,
    .open = fs_open,
    .read = fs_read,
    .write = fs_write,
    .flush = fs_ok,
    .release = fs_ok,
    .fsync = fs_fsync,
};

/* In the server: holds from now on (true), or answers what it held and goes on answering. */
static void srv_stall(bool stall)
{
    pthread_mutex_lock(&srv.lock);
    __atomic_store_n(&srv.sh->stalled, stall, __ATOMIC_RELEASE);
    srv.stalled_at = time(NULL);
    if (!stall) {
        for (int i = 0; i < srv.sh->nheld; i++) {
            fs_answer(&srv.held[i]);
            if (srv.held[i].is_write)
                free(srv.held[i].data);
        }
        __atomic_store_n(&srv.sh->nheld, 0, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&srv.lock);
}

/* Answers what is held once it has been held WATCHDOG_S: a VMM that waits for it fails. */
static void *srv_watchdog(void *arg)
{
    (void)arg;
    for (;;) {
        sleep_ms(100);
        pthread_mutex_lock(&srv.lock);
        bool fire = srv.sh->stalled && time(NULL) - srv.stalled_at >= WATCHDOG_S;
        if (fire)
            __atomic_store_n(&srv.sh->watchdog_fired, 1, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&srv.lock);
        if (fire)
            srv_stall(false);
    }
    return NULL;
}

/* Commands from the test; at the pipe's end, everything answered and the filesystem gone. */
static void *srv_commands(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char c;

    while (read(fd, &c, 1) == 1)
        srv_stall(c == 'S');
    srv_stall(false);
    fuse_session_exit(srv.se);
    fuse_session_unmount(srv.se); /* the loop's read of /dev/fuse ends */
    return NULL;
}

static void srv_main(const char *dir, struct shared *sh, int cmd, int ready)
{
    char *argv[] = {"stallfs", NULL};
    struct fuse_args args = FUSE_ARGS_INIT(1, argv);
    pthread_t a, b;
    char ok = 1;

    srv.sh = sh;
    srv.data = calloc(1, DISK_BYTES);
    srv.se = srv.data ? fuse_session_new(&args, &fs_ops, sizeof(fs_ops), NULL) : NULL;
    if (!srv.se || fuse_session_mount(srv.se, dir) != 0)
        _exit(1); /* the test sees the ready pipe end without a byte */
    if (write(ready, &ok, 1) != 1)
        _exit(1);
    pthread_create(&a, NULL, srv_commands, (void *)(intptr_t)cmd);
    pthread_create(&b, NULL, srv_watchdog, NULL);
    fuse_session_loop(srv.se);
    pthread_join(a, NULL);
    _exit(0);
}

/* Mounted and served by a child: 0, or -1 when this host cannot mount FUSE. */
static int stallfs_start(struct stallfs *fs)
{
    int cmd[2], ready[2];
    char ok = 0;

    memset(fs, 0, sizeof(*fs));
    snprintf(fs->dir, sizeof(fs->dir), "/tmp/ringvm-stallfs-XXXXXX");
    fs->sh = mmap(NULL, sizeof(*fs->sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (fs->sh == MAP_FAILED || !mkdtemp(fs->dir) || pipe2(cmd, O_CLOEXEC) < 0 ||
        pipe2(ready, O_CLOEXEC) < 0)
        return -1;
    fs->pid = fork();
    if (fs->pid == 0) {
        close(cmd[1]);
        close(ready[0]);
        srv_main(fs->dir, fs->sh, cmd[0], ready[1]);
    }
    close(cmd[0]);
    close(ready[1]);
    fs->cmd = cmd[1];
    if (fs->pid < 0 || read(ready[0], &ok, 1) != 1) {
        close(ready[0]);
        close(fs->cmd);
        if (fs->pid > 0)
            waitpid(fs->pid, NULL, 0);
        rmdir(fs->dir);
        return -1;
    }
    close(ready[0]);
    return 0;
}

static void stallfs_stall(struct stallfs *fs, bool stall)
{
    char c = stall ? 'S' : 'U';

    assert_int_equal(write(fs->cmd, &c, 1), 1);
    /* Applied once the server's flag says so. */
    for (int i = 0; i < 10000 && __atomic_load_n(&fs->sh->stalled, __ATOMIC_ACQUIRE) != stall; i++)
        sleep_ms(1);
}

static int stallfs_held(struct stallfs *fs)
{
    return __atomic_load_n(&fs->sh->nheld, __ATOMIC_ACQUIRE);
}

static bool watchdog_fired(struct stallfs *fs)
{
    return __atomic_load_n(&fs->sh->watchdog_fired, __ATOMIC_ACQUIRE);
}

/* Everything answered, unmounted, the server gone. */
static void stallfs_stop(struct stallfs *fs)
{
    close(fs->cmd);
    waitpid(fs->pid, NULL, 0);
    rmdir(fs->dir);
    munmap(fs->sh, sizeof(*fs->sh));
}

/* ---- the VM ---- */

static uint64_t blk_done(struct rvm_vm *vm)
{
    return *(volatile uint64_t *)rvm_mem_hva(rvm_vm_mem(vm), BG_BLK_DONE, 8);
}

/* The bench guest running args on the disk at path, on a VM of its own. */
static void disk_vm_start(struct tvm *t, const struct rvm_blk_config *bc, const char *args,
                          uint64_t *base)
{
    struct rvm_vm_config c;
    char word[96], cmd[256];
    unsigned long long b;

    rvm_vm_config_init(&c);
    c.mem.size = 64 << 20;
    struct rvm_hv_config hc = {.log = log_to_buf, .log_opaque = &t->log, .log_level = RVM_LOG_WARN};
    struct rvm_uart_config uc = {.out = console_out, .out_opaque = &t->con};
    memset(t, 0, sizeof(*t));
    assert_int_equal(rvm_hv_open(&hc, &t->hv), 0);
    assert_int_equal(rvm_vm_create(t->hv, &c, &t->vm), 0);
    assert_int_equal(rvm_uart_attach(t->vm, &uc, NULL), 0);
    assert_int_equal(rvm_debug_exit_attach(t->vm, 0), 0);
    assert_int_equal(rvm_vm_add_virtio_blk(t->vm, bc, word, sizeof(word)), 0);
    assert_int_equal(sscanf(word, "virtio_mmio.device=%*[^@]@%llx", &b), 1);
    *base = b;
    snprintf(cmd, sizeof(cmd), "%s %s", args, word);
    struct rvm_pvh_params pp = {.cmdline = cmd};
    assert_int_equal(rvm_vm_load_pvh_file(t->vm, guest_path(), &pp, NULL), 0);
    assert_int_equal(rvm_vm_start(t->vm), 0);
}

/* Waits (up to 30 s) for the guest's I/O to hang on the stalled filesystem. */
static void wait_stuck(struct stallfs *fs, struct rvm_vm *vm)
{
    uint64_t last = blk_done(vm);
    int still = 0;

    for (int i = 0; i < 30000 && still < 200; i++) {
        sleep_ms(1);
        uint64_t now = blk_done(vm);
        still = now == last && stallfs_held(fs) > 0 ? still + 1 : 0;
        last = now;
    }
    assert_true(still >= 200);
}

/*
 * What a test holds, torn down in the order that lets every request finish
 * even when an assertion fails midway: the backend answers, the VM goes
 * (its worker waits for its I/O), then the filesystem.
 */
struct fx {
    struct stallfs fs;
    struct tvm t;
    bool mounted, vm;
};

static int setup(void **state)
{
    static struct fx f;

    memset(&f, 0, sizeof(f));
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    if (!f->mounted)
        return 0;
    stallfs_stall(&f->fs, false);
    if (f->vm)
        tvm_destroy(&f->t);
    stallfs_stop(&f->fs);
    return 0;
}

static void test_reset_and_snapshot_with_stuck_disk(void **state)
{
    struct fx *f = *state;
    struct stallfs *fs = &f->fs;
    char disk[96], snap[96];
    uint64_t base, status = 0;

    SKIP_WITHOUT_KVM();
    if (stallfs_start(fs) < 0) {
        print_message("SKIP: this host cannot mount a FUSE filesystem (/dev/fuse, root)\n");
        skip();
    }
    f->mounted = true;
    snprintf(disk, sizeof(disk), "%s/disk", fs->dir);
    snprintf(snap, sizeof(snap), "%s-snap", fs->dir);
    struct rvm_blk_config bc = {.path = disk};
    disk_vm_start(&f->t, &bc, "test=blk-read n=1000000000 qd=8", &base); /* reads, no end */
    f->vm = true;
    struct rvm_vm *vm = f->t.vm;
    for (int i = 0; i < 30000 && blk_done(vm) < 500; i++)
        sleep_ms(1);
    assert_true(blk_done(vm) >= 500); /* the disk works */

    stallfs_stall(fs, true);
    wait_stuck(fs, vm);

    /* The vCPUs stop: a pause does not wait for the disk. */
    assert_int_equal(rvm_vm_pause(vm), 0);
    /* A snapshot fails within its bound and leaves the VM as it was. */
    assert_int_equal(rvm_vm_snapshot(vm, snap, RVM_SNAPSHOT_FULL, NULL), -ETIMEDOUT);
    assert_false(watchdog_fired(fs));
    assert_int_equal(access(snap, F_OK), -1);
    assert_int_equal(rvm_vm_state(vm), RVM_VM_PAUSED);
    /* The guest's reset returns (as this vCPU-like thread's access), still pending. */
    mmio_wr32(vm, base + VIRTIO_MMIO_STATUS, 0);
    assert_false(watchdog_fired(fs));
    assert_int_not_equal(mmio_rd32(vm, base + VIRTIO_MMIO_STATUS), 0);
    mmio_wr32(vm, base + VIRTIO_MMIO_STATUS, 1); /* a driver that did not wait: dropped */
    assert_int_equal(rvm_vm_snapshot(vm, snap, RVM_SNAPSHOT_FULL, NULL), -EBUSY);
    assert_false(watchdog_fired(fs));

    /* The backend answers again: the reset completes on a later access. */
    stallfs_stall(fs, false);
    for (int i = 0; i < 10000; i++) {
        status = mmio_rd32(vm, base + VIRTIO_MMIO_STATUS);
        if (status == 0)
            break;
        sleep_ms(1);
    }
    assert_int_equal(status, 0);
    assert_false(watchdog_fired(fs));
}

/*
 * A disk whose filesystem fills up, with the error policy that stops: the
 * guest's writes that fail with ENOSPC are held, the VM pauses and says why;
 * a snapshot is refused (the held requests are in no ring); the host grows
 * the filesystem and resumes, and the guest reads back every sector as it
 * wrote it, with no error ever seen. tmpfs stands for the filesystem (it
 * refuses O_DIRECT, so this is the buffered path; a direct write that fills
 * a disk fails the same way, with ENOSPC).
 */
static void test_enospc_pauses_until_resumed(void **state)
{
    char dir[] = "/tmp/ringvm-enospc-XXXXXX", disk[64], snap[80];
    struct rvm_device_stop ds;
    struct rvm_vm_result res;
    struct tvm t;
    uint64_t base, v;
    int fd;
    (void)state;

    SKIP_WITHOUT_KVM();
    assert_non_null(mkdtemp(dir));
    if (mount("none", dir, "tmpfs", 0, "size=2m") < 0) {
        rmdir(dir);
        print_message("SKIP: cannot mount a small tmpfs (needs root)\n");
        skip();
    }
    snprintf(disk, sizeof(disk), "%s/disk", dir);
    snprintf(snap, sizeof(snap), "%s-snap", dir);
    fd = open(disk, O_CREAT | O_RDWR, 0600);
    assert_true(fd >= 0 && ftruncate(fd, 16 << 20) == 0); /* sparse: 16 MiB on 2 MiB of room */
    close(fd);
    struct rvm_blk_config bc = {.path = disk, .on_error = RVM_BLK_ERROR_STOP_ENOSPC};
    /* 8 MiB written, then read back and checked. */
    disk_vm_start(&t, &bc, "test=blk-verify n=2048 bs=4096 qd=4 pattern=seq", &base);

    int r = -ENOENT;
    for (int i = 0; i < 60000 && (r = rvm_vm_device_stop(t.vm, &ds)) < 0; i++)
        sleep_ms(1);
    assert_int_equal(r, 0);
    assert_int_equal(ds.error, -ENOSPC);
    assert_non_null(strstr(ds.device, "virtio-blk"));
    assert_int_equal(rvm_vm_state(t.vm), RVM_VM_PAUSED);
    assert_null(strstr(t.con.buf, "RESULT")); /* mid-run */
    uint64_t at = blk_done(t.vm);
    assert_true(at < 2048); /* still writing */
    assert_int_equal(rvm_vm_snapshot(t.vm, snap, RVM_SNAPSHOT_FULL, NULL), -EBUSY);
    assert_int_equal(access(snap, F_OK), -1);
    sleep_ms(100);
    assert_int_equal(blk_done(t.vm), at); /* nothing moves while it waits */

    assert_int_equal(mount("none", dir, "tmpfs", MS_REMOUNT, "size=64m"), 0);
    assert_int_equal(rvm_vm_resume(t.vm), 0);
    assert_int_equal(rvm_vm_device_stop(t.vm, &ds), -ENOENT);
    assert_int_equal(rvm_vm_wait(t.vm, 120000, &res), 0);
    if (res.end != RVM_END_DEBUG_EXIT || res.value != 0)
        print_message("guest said: %s\n", t.con.buf);
    assert_int_equal(res.end, RVM_END_DEBUG_EXIT);
    assert_int_equal(res.value, 0);
    assert_int_equal(bg_result_value(t.con.buf, "errors", &v), 0);
    assert_int_equal(v, 0); /* the guest never saw the disk fill */
    assert_int_equal(bg_result_value(t.con.buf, "mismatches", &v), 0);
    assert_int_equal(v, 0);
    tvm_destroy(&t);
    umount2(dir, MNT_DETACH);
    rmdir(dir);
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * A guest's requests to a rate-limited disk take at least as long as the
 * limit allows (requests beyond the burst, at the rate), whatever this host's
 * speed: a lower bound, which a slow host only exceeds more. Then for bytes.
 * Every request completes without error.
 */
static void limited_run(const struct rvm_rate_limit *lim, const char *args, double at_least)
{
    char path[] = "/var/tmp/ringvm-limit-XXXXXX";
    struct rvm_vm_result res;
    struct tvm t;
    uint64_t base, v;
    int fd = mkstemp(path);

    assert_true(fd >= 0 && ftruncate(fd, 32 << 20) == 0);
    close(fd);
    struct rvm_blk_config bc = {.path = path, .limit = *lim};
    double t0 = now_s();
    disk_vm_start(&t, &bc, args, &base);
    assert_int_equal(rvm_vm_wait(t.vm, 120000, &res), 0);
    double took = now_s() - t0;
    if (res.end != RVM_END_DEBUG_EXIT || res.value != 0)
        print_message("guest said: %s\n", t.con.buf);
    assert_int_equal(res.end, RVM_END_DEBUG_EXIT);
    assert_int_equal(res.value, 0);
    assert_int_equal(bg_result_value(t.con.buf, "errors", &v), 0);
    assert_int_equal(v, 0);
    print_message("    %s: %.2f s (the limit allows no less than %.2f s)\n", args, took, at_least);
    assert_true(took >= at_least);
    tvm_destroy(&t);
    unlink(path);
}

static void test_rate_limit_holds(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    /* 1000 requests at 500 a second, 10 at once: 990 / 500 s. */
    struct rvm_rate_limit ops = {.ops_per_s = 500, .ops_burst = 10};
    limited_run(&ops, "test=blk-read n=1000 qd=8 bs=4096", 990.0 / 500);
    /* 256 x 64 KiB at 16 MiB a second, 256 KiB at once: (16 MiB - 256 KiB) / 16 MiB s. */
    struct rvm_rate_limit bytes = {.bytes_per_s = 16 << 20, .bytes_burst = 256 << 10};
    limited_run(&bytes, "test=blk-read n=256 qd=8 bs=65536", (16.0 - 0.25) / 16);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reset_and_snapshot_with_stuck_disk, setup, teardown),
        cmocka_unit_test(test_enospc_pauses_until_resumed),
        cmocka_unit_test(test_rate_limit_holds),
    };
    return cmocka_run_group_tests_name("blk_backend", tests, NULL, NULL);
}
