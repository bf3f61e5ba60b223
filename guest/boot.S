/* SPDX-License-Identifier: MIT */
/*
 * Bench guest CPL0 code: PVH entry, switch to long mode, drop to CPL3, plus
 * the interrupt/exception entry points.
 *
 * Everything here that runs at CPL0 may be emulated one instruction at a time
 * by the host, so it is kept short: page tables, GDT and TSS are static data
 * (only the TSS base in its descriptor is patched at run time), and the IDT
 * contents are written later by the C code at CPL3 (all memory is user
 * writable). Only lidt/ltr have to happen here.
 */
#include "bg.h"

#define CR0_PE 0x1
#define CR0_ET 0x10
#define CR0_PG 0x80000000
#define CR4_PAE 0x20
#define MSR_EFER 0xc0000080
#define EFER_LME 0x100
#define PTE_P 0x1
#define PTE_W 0x2
#define PTE_U 0x4
#define PTE_PWT 0x8
#define PTE_PCD 0x10
#define PTE_PS 0x80
#define PTE_TABLE (PTE_P | PTE_W | PTE_U)

/* PVH entry note: QEMU and ringvm read the 32-bit entry point from here. */
    .section .note.Xen, "a", @note
    .balign 4
    .long 4                         /* namesz: "Xen\0" */
    .long 4                         /* descsz */
    .long BG_PVH_NOTE_PHYS32_ENTRY  /* type */
    .asciz "Xen"
    .balign 4
    .long pvh_entry                 /* desc: guest-physical entry address */

/*
 * PVH entry: 32-bit flat protected mode, paging off, %ebx = hvm_start_info.
 * No stack is used until we have our own.
 */
    .section .text.boot, "ax"
    .code32
    .globl pvh_entry
pvh_entry:
    /* The TSS base is split across the descriptor; the linker can't do that. */
    mov $tss, %eax
    mov %ax, gdt_tss + 2
    shr $16, %eax
    mov %al, gdt_tss + 4
    mov %ah, gdt_tss + 7
    lgdt gdt_ptr

    mov $CR4_PAE, %eax
    mov %eax, %cr4
    mov $pml4, %eax
    mov %eax, %cr3
    mov $MSR_EFER, %ecx
    mov $EFER_LME, %eax
    xor %edx, %edx
    wrmsr
    mov $(CR0_PG | CR0_ET | CR0_PE), %eax
    mov %eax, %cr0
    ljmp $SEL_KCODE, $long_entry

    .code64
long_entry:
    mov $SEL_KDATA, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov $kstack_top, %esp
    mov $SEL_TSS, %eax
    ltr %ax
    lidt idt_ptr(%rip)

    /* Upper halves of GPRs are undefined after the mode switch: mov zero-extends. */
    mov %ebx, %edi
    /* iretq to bg_main(start_info) at CPL3 with IOPL=3, IF=0. */
    push $(SEL_UDATA | 3)
    push $(ustack_top - 8)          /* as if bg_main had been called */
    push $USER_RFLAGS
    push $(SEL_UCODE | 3)
    push $bg_main
    iretq

    .text
/*
 * Exception entry points, ISR_ENTRY_SIZE bytes apart so C can compute their addresses.
 * Each pushes a dummy error code where the CPU does not, then the vector.
 */
    .macro isr_entry vec
    .balign ISR_ENTRY_SIZE
    .if !((\vec == 8) || (\vec >= 10 && \vec <= 14) || (\vec == 17) || (\vec == 21) || \
          (\vec == 29) || (\vec == 30))
    push $0
    .endif
    push $\vec
    jmp isr_common
    .endm

    .balign ISR_ENTRY_SIZE
    .globl isr_entries
isr_entries:
    .irp v, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, \
            16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31
    isr_entry \v
    .endr

isr_common:
    pop %rdi                        /* vector */
    pop %rsi                        /* error code */
    mov (%rsp), %rdx                /* faulting rip */
    and $-16, %rsp
    call bg_exception               /* does not return */

/*
 * CPL3 -> CPL0 calls. On software-nested KVM (kvm_pvm) INT n from CPL3 raises
 * #UD even through a DPL3 gate, and SYSCALL does not reach CPL0, while
 * exceptions are delivered through our IDT everywhere. So a call is a ud2 at
 * a known address, recognised by the #UD handler.
 *
 * uint64_t bg_cpl0_call(uint64_t (*fn)(uint64_t), uint64_t n): CPL3 only;
 * runs fn(n) at CPL0 with IF=0 and returns its result.
 */
    .globl bg_cpl0_call
bg_cpl0_call:
    ud2                             /* ud_isr calls fn and skips this */
    ret

    .globl ud_isr
ud_isr:
    cmpq $bg_cpl0_call, (%rsp)
    jne isr_entries + 6 * ISR_ENTRY_SIZE   /* a real #UD */
    addq $2, (%rsp)                 /* resume after the ud2 */
    mov %rdi, %rax
    mov %rsi, %rdi
    sub $8, %rsp                    /* 5-word frame: realign for the call */
    call *%rax
    add $8, %rsp
    iretq

/*
 * uint64_t bg_hlt_loop(uint64_t n): CPL0 only (via bg_cpl0_call). Runs n
 * local APIC timer halt/wake round trips and returns their TSC cycles.
 */
    .globl bg_hlt_loop
bg_hlt_loop:
    mov $APIC_BASE, %r8d
    movl $(APIC_SVR_ENABLE | VEC_SPURIOUS), APIC_SVR(%r8)
    movl $APIC_DIV_BY_1, APIC_TIMER_DIV(%r8)
    movl $VEC_TIMER, APIC_LVT_TIMER(%r8)    /* one-shot, unmasked */
    xor %r9d, %r9d
    rdtsc
    shl $32, %rdx
    or %rax, %rdx
    mov %rdx, %r10
    test %rdi, %rdi
    jz 2f
1:  movl $HLT_TIMER_COUNT, APIC_TIMER_INIT(%r8)  /* arm */
    sti                             /* the sti shadow makes sti;hlt atomic */
    hlt
    cli
    cmp %rdi, %r9                   /* re-arm on a wake-up that wasn't ours */
    jb 1b
2:  rdtsc
    shl $32, %rdx
    or %rdx, %rax
    sub %r10, %rax
    movl $(APIC_LVT_MASKED | VEC_TIMER), APIC_LVT_TIMER(%r8)
    ret

/*
 * Timer interrupt. IF is only ever set inside bg_hlt_loop's sti;hlt window, so
 * this can rely on %r8 = APIC base and use %r9 as the wake-up counter.
 */
    .globl timer_isr
timer_isr:
    inc %r9
    movl $0, APIC_EOI(%r8)
    iretq

/*
 * uint64_t bg_set_user_if(uint64_t on): CPL0 only, via bg_cpl0_call. Sets or
 * clears IF in the RFLAGS that ud_isr's iretq will restore, so the CPL3 caller
 * continues with interrupts enabled or disabled (CPL3 can't sti: IOPL may be 0).
 * Stack here: our return address, ud_isr's 8-byte pad, then the iretq frame
 * (rip, cs, rflags, ...), so RFLAGS is at 32(%rsp).
 */
    .globl bg_set_user_if
bg_set_user_if:
    andq $~RFLAGS_IF, 32(%rsp)
    test %rdi, %rdi
    jz 1f
    orq $RFLAGS_IF, 32(%rsp)
1:  xor %eax, %eax
    ret

/*
 * virtio-blk completion interrupt (test=blk-* irq=1), taken at CPL3 only:
 * acknowledge the device's InterruptStatus bits, EOI the local APIC, count.
 * The CPL3 loop watches blk_isr_count and reaps the used ring itself.
 */
    .globl blk_isr
blk_isr:
    push %rax
    push %rdx
    mov blk_isr_mmio(%rip), %rdx
    mov VIRTIO_MMIO_INTERRUPT_STATUS(%rdx), %eax
    mov %eax, VIRTIO_MMIO_INTERRUPT_ACK(%rdx)
    mov $APIC_BASE, %edx
    movl $0, APIC_EOI(%rdx)
    incq blk_isr_count(%rip)
    pop %rdx
    pop %rax
    iretq

/* Spurious APIC interrupts need no EOI. */
    .globl spurious_isr
spurious_isr:
    iretq

    .data
    .balign 16
gdt:
    .quad 0
    .quad 0x00af9a000000ffff        /* SEL_KCODE: 64-bit code, DPL0 */
    .quad 0x00cf92000000ffff        /* SEL_KDATA: data, DPL0 */
    .quad 0x00cff2000000ffff        /* SEL_UDATA: data, DPL3 */
    .quad 0x00affa000000ffff        /* SEL_UCODE: 64-bit code, DPL3 */
gdt_tss:                            /* SEL_TSS: available 64-bit TSS, base patched */
    .word tss_end - tss - 1, 0      /* limit 15:0, base 15:0 */
    .byte 0, 0x89, 0, 0             /* base 23:16, P|type 9, limit 19:16, base 31:24 */
    .quad 0                         /* base 63:32, reserved */
gdt_end:

gdt_ptr:
    .word gdt_end - gdt - 1
    .long gdt

    .balign 8
idt_ptr:
    .word 256 * 16 - 1
    .quad bg_idt

    .balign 16
tss:
    .long 0
    .quad kstack_top                /* rsp0: stack for interrupts from CPL3 */
    .fill 88, 1, 0                  /* rsp1, rsp2, ist1-7, reserved */
    .word 0
    .word iobm - tss                /* I/O permission bitmap offset */
/*
 * I/O permission bitmap (a clear bit allows the port at CPL3), needed where
 * the host does not honour IOPL=3. Opens 0xf4 (debug-exit), COM1
 * 0x3f8-0x3ff and 0x600-0x607 (BG_PIO_PORT, BG_IOEVENTFD_PIO_PORT).
 */
    .if (BG_COM1_BASE % 8) || (BG_PIO_PORT % 8) || (BG_IOEVENTFD_PIO_PORT != BG_PIO_PORT + 4) || \
        (BG_DEBUG_EXIT_PORT / 8 >= BG_COM1_BASE / 8) || (BG_COM1_BASE >= BG_PIO_PORT)
    .error "I/O bitmap layout assumes 0xf4 < COM1 < BG_PIO_PORT, 8-aligned groups"
    .endif
iobm:
    .fill BG_DEBUG_EXIT_PORT / 8, 1, 0xff
    .byte ~(1 << (BG_DEBUG_EXIT_PORT % 8)) & 0xff
    .fill BG_COM1_BASE / 8 - BG_DEBUG_EXIT_PORT / 8 - 1, 1, 0xff
    .byte 0
    .fill BG_PIO_PORT / 8 - BG_COM1_BASE / 8 - 1, 1, 0xff
    .byte 0
    .byte 0xff                      /* the CPU may read one byte past the last port */
tss_end:

/*
 * Identity map of 0..4 GiB with 2 MiB pages, every level User + Writable.
 * The top GiB (MMIO: bench regions, LAPIC) is mapped uncached.
 */
    .balign 4096
pml4:
    .quad pdpt + PTE_TABLE
    .fill 511, 8, 0
pdpt:
    .quad pd + 0x0000 + PTE_TABLE, pd + 0x1000 + PTE_TABLE
    .quad pd + 0x2000 + PTE_TABLE, pd + 0x3000 + PTE_TABLE
    .fill 508, 8, 0
pd:
    .set pa, 0
    .rept 1536
    .quad pa + (PTE_TABLE | PTE_PS)
    .set pa, pa + 0x200000
    .endr
    .rept 512
    .quad pa + (PTE_TABLE | PTE_PS | PTE_PCD | PTE_PWT)
    .set pa, pa + 0x200000
    .endr

    .bss
    .balign 16
    .skip 8192
kstack_top:
    .skip 16384
ustack_top:

    .section .note.GNU-stack, "", @progbits
