/* SPDX-License-Identifier: MIT */
/*
 * Crash reports, the x86 part: the registers of a vCPU that ended its VM
 * by a crash, the instruction at CS:RIP (read through the guest's page
 * tables with KVM_TRANSLATE when KVM did not hand the bytes over), and the
 * report written out for a person.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include <ringvm/mem.h>
#include <ringvm/vcpu.h>
#include <ringvm/vm.h>

#include "../../core/vm_internal.h"
#include "arch.h"

#define PAGE 4096ULL

/* Up to len bytes at linear address la, stopping where a page is not mapped. */
static uint8_t fetch(struct rvm_vcpu *v, uint64_t la, uint8_t *out, uint8_t len)
{
    uint8_t got = 0;

    while (got < len) {
        struct kvm_translation t = {.linear_address = la + got};
        uint64_t room = PAGE - ((la + got) & (PAGE - 1)), want = (uint64_t)(len - got);
        uint64_t n = want < room ? want : room;

        if (ioctl(v->fd, KVM_TRANSLATE, &t) < 0 || !t.valid ||
            rvm_mem_read(v->vm->mem, t.physical_address, out + got, n) < 0)
            break;
        got = (uint8_t)(got + n);
    }
    return got;
}

void arch_vcpu_crash(struct rvm_vcpu *v, struct rvm_crash *c)
{
    if (rvm_vcpu_get_regs(v, &c->regs) < 0 || rvm_vcpu_get_sregs(v, &c->sregs) < 0)
        return;
    c->have_regs = true;
    /* Protected and long mode: the CS selector's RPL is the CPL (as KVM keeps it). */
    c->cpl = (c->sregs.cr0 & 1) ? (uint8_t)(c->sregs.cs.selector & 3) : 0;
    if (!c->insn_len) {
        uint64_t la = c->regs.rip;
        /* Outside 64-bit code the segment base counts and addresses wrap at 4 GiB. */
        if (!(c->sregs.efer & 0x400) || !c->sregs.cs.l)
            la = (c->sregs.cs.base + la) & 0xffffffffULL;
        c->insn_len = fetch(v, la, c->insn, sizeof(c->insn));
    }
}

struct out {
    char *p;
    size_t len, need;
};

static void say(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct out *o, const char *fmt, ...)
{
    va_list ap;
    size_t room = o->need < o->len ? o->len - o->need : 0;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(o->p ? o->p + (o->need < o->len ? o->need : o->len) : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->need += (size_t)n;
}

static const char *why(const struct rvm_crash *c)
{
    switch (c->kvm_reason) {
    case KVM_EXIT_SHUTDOWN:
        return "triple fault";
    case KVM_EXIT_INTERNAL_ERROR:
        return c->suberror == KVM_INTERNAL_ERROR_EMULATION     ? "emulation failure"
               : c->suberror == KVM_INTERNAL_ERROR_SIMUL_EX    ? "exception while delivering one"
               : c->suberror == KVM_INTERNAL_ERROR_DELIVERY_EV ? "event delivery failed"
                                                               : "KVM internal error";
    case KVM_EXIT_FAIL_ENTRY:
        return "VM entry failed";
    default:
        return "unexpected exit";
    }
}

/* KVM's exit reasons by name, for the ones a guest's last exits are likely to show. */
static const char *kvm_exit_name(uint32_t r)
{
    switch (r) {
    case KVM_EXIT_HLT:
        return "hlt";
    case KVM_EXIT_SHUTDOWN:
        return "shutdown";
    case KVM_EXIT_FAIL_ENTRY:
        return "fail-entry";
    case KVM_EXIT_INTR:
        return "intr";
    case KVM_EXIT_INTERNAL_ERROR:
        return "internal-error";
    case KVM_EXIT_SYSTEM_EVENT:
        return "system-event";
    case KVM_EXIT_DIRTY_RING_FULL:
        return "dirty-ring-full";
    default:
        return NULL;
    }
}

static void segment(struct out *o, const char *name, const struct kvm_segment *s)
{
    say(o, "  %-3s %04x base %016llx limit %08x type %x dpl %u %s%s%s%s\n", name, s->selector,
        (unsigned long long)s->base, s->limit, s->type, s->dpl, s->present ? "P" : "-",
        s->l ? " L" : "", s->db ? " D" : "", s->unusable ? " unusable" : "");
}

int rvm_crash_format(const struct rvm_crash *c, char *buf, size_t len)
{
    struct out o = {.p = buf, .len = len};
    const struct kvm_regs *r = &c->regs;
    const struct kvm_sregs *s = &c->sregs;

    if (buf && len)
        buf[0] = '\0';
    if (!c)
        return 0;
    say(&o, "vCPU %u: %s (KVM exit %u", c->vcpu, why(c), c->kvm_reason);
    if (c->kvm_reason == KVM_EXIT_INTERNAL_ERROR)
        say(&o, ", suberror %u", c->suberror);
    if (c->kvm_reason == KVM_EXIT_FAIL_ENTRY)
        say(&o, ", hardware reason 0x%llx", (unsigned long long)c->hw_reason);
    say(&o, ")");
    if (c->have_regs)
        say(&o, " at CPL %u, RIP %016llx", c->cpl, (unsigned long long)r->rip);
    say(&o, "\n");
    if (c->ndata) {
        say(&o, "  KVM data:");
        for (uint32_t i = 0; i < c->ndata; i++)
            say(&o, " %llx", (unsigned long long)c->data[i]);
        say(&o, "\n");
    }
    if (c->have_regs) {
        say(&o, "  RAX %016llx RBX %016llx RCX %016llx RDX %016llx\n", (unsigned long long)r->rax,
            (unsigned long long)r->rbx, (unsigned long long)r->rcx, (unsigned long long)r->rdx);
        say(&o, "  RSI %016llx RDI %016llx RBP %016llx RSP %016llx\n", (unsigned long long)r->rsi,
            (unsigned long long)r->rdi, (unsigned long long)r->rbp, (unsigned long long)r->rsp);
        say(&o, "  R8  %016llx R9  %016llx R10 %016llx R11 %016llx\n", (unsigned long long)r->r8,
            (unsigned long long)r->r9, (unsigned long long)r->r10, (unsigned long long)r->r11);
        say(&o, "  R12 %016llx R13 %016llx R14 %016llx R15 %016llx\n", (unsigned long long)r->r12,
            (unsigned long long)r->r13, (unsigned long long)r->r14, (unsigned long long)r->r15);
        say(&o, "  RFLAGS %08llx\n", (unsigned long long)r->rflags);
        segment(&o, "CS", &s->cs);
        segment(&o, "SS", &s->ss);
        segment(&o, "DS", &s->ds);
        segment(&o, "ES", &s->es);
        segment(&o, "FS", &s->fs);
        segment(&o, "GS", &s->gs);
        segment(&o, "TR", &s->tr);
        segment(&o, "LDT", &s->ldt);
        say(&o, "  GDT %016llx/%04x IDT %016llx/%04x\n", (unsigned long long)s->gdt.base,
            s->gdt.limit, (unsigned long long)s->idt.base, s->idt.limit);
        say(&o, "  CR0 %08llx CR2 %016llx CR3 %016llx CR4 %08llx CR8 %llx\n",
            (unsigned long long)s->cr0, (unsigned long long)s->cr2, (unsigned long long)s->cr3,
            (unsigned long long)s->cr4, (unsigned long long)s->cr8);
        say(&o, "  EFER %llx APIC base %llx\n", (unsigned long long)s->efer,
            (unsigned long long)s->apic_base);
    }
    if (c->insn_len) {
        say(&o, "  code at RIP (%u bytes, %s):", c->insn_len,
            c->insn_from_kvm ? "from KVM" : "from guest memory");
        for (unsigned i = 0; i < c->insn_len; i++)
            say(&o, " %02x", c->insn[i]);
        say(&o, "\n");
    } else if (c->have_regs) {
        say(&o, "  code at RIP: not mapped\n");
    }
    if (c->nexits) {
        say(&o, "  last exits, oldest first:");
        for (uint32_t i = 0; i < c->nexits; i++) {
            const struct rvm_exit_trace *t = &c->exits[i];
            if (t->kvm_reason == KVM_EXIT_IO)
                say(&o, " %s 0x%llx/%u", t->write ? "out" : "in", (unsigned long long)t->addr,
                    t->size);
            else if (t->kvm_reason == KVM_EXIT_MMIO)
                say(&o, " mmio-%s 0x%llx/%u", t->write ? "write" : "read",
                    (unsigned long long)t->addr, t->size);
            else if (kvm_exit_name(t->kvm_reason))
                say(&o, " %s", kvm_exit_name(t->kvm_reason));
            else
                say(&o, " exit-%u", t->kvm_reason);
        }
        say(&o, "\n");
    }
    return (int)o.need;
}
