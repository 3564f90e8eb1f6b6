// aarch64 signal delivery under the sentry, without a libc (assembled by llvm-mc:
// tests/unit/test_sigframe.py holds the bytes and says how to make them again).
// Exit status: the number of failed checks (0: all passed). Writes "ok\n" at the end.
//  1. SIGUSR1 with SA_SIGINFO|SA_RESTORER sent by kill(2): the handler sees x0 = 10,
//     x1 = &siginfo (si_signo 10, si_code SI_USER), x2 = &ucontext whose saved x19
//     is ours; it clobbers x0-x29, q0-q31, NZCV and FPCR; after sigreturn every
//     register is as before the svc (x0 = kill's result 0).
//  2. SIGUSR2 without SA_RESTORER (glibc's way): the handler returns through the
//     sentry's trampoline.
//  3. read(2) on an empty pipe, interrupted by SIGALRM (setitimer) whose SA_RESTART
//     handler writes a byte: the restarted read (x0 = the fd again) returns 1.
//  4. nanosleep interrupted by a handler without SA_RESTART: -EINTR.
        .text
        .globl _start
_start:
        // --- 1. SIGUSR1, every register ---
        adr     x1, act1
        adr     x9, handler1
        str     x9, [x1]
        adr     x9, restorer
        str     x9, [x1, #16]
        mov     x0, #10
        mov     x2, #0
        mov     x3, #8
        mov     x8, #134                // rt_sigaction
        svc     #0
        mov     x8, #172                // getpid
        svc     #0
        adr     x30, gtable
        str     x0, [x30]               // x0 = pid for kill
        adr     x30, qtable
        ldp     q0, q1, [x30, #0]
        ldp     q2, q3, [x30, #32]
        ldp     q4, q5, [x30, #64]
        ldp     q6, q7, [x30, #96]
        ldp     q8, q9, [x30, #128]
        ldp     q10, q11, [x30, #160]
        ldp     q12, q13, [x30, #192]
        ldp     q14, q15, [x30, #224]
        ldp     q16, q17, [x30, #256]
        ldp     q18, q19, [x30, #288]
        ldp     q20, q21, [x30, #320]
        ldp     q22, q23, [x30, #352]
        ldp     q24, q25, [x30, #384]
        ldp     q26, q27, [x30, #416]
        ldp     q28, q29, [x30, #448]
        ldp     q30, q31, [x30, #480]
        mov     x9, #0x60000000         // Z and C
        msr     nzcv, x9
        adr     x30, gtable
        ldp     x0, x1, [x30, #0]
        ldp     x2, x3, [x30, #16]
        ldp     x4, x5, [x30, #32]
        ldp     x6, x7, [x30, #48]
        ldp     x8, x9, [x30, #64]
        ldp     x10, x11, [x30, #80]
        ldp     x12, x13, [x30, #96]
        ldp     x14, x15, [x30, #112]
        ldp     x16, x17, [x30, #128]
        ldp     x18, x19, [x30, #144]
        ldp     x20, x21, [x30, #160]
        ldp     x22, x23, [x30, #176]
        ldp     x24, x25, [x30, #192]
        ldp     x26, x27, [x30, #208]
        ldp     x28, x29, [x30, #224]
        ldr     x30, [x30, #240]
        svc     #0                      // kill(pid, SIGUSR1): x8 = 129, x1 = 10
        str     x30, [sp, #-16]!
        mrs     x30, nzcv
        str     x30, [sp, #8]
        adr     x30, gout
        stp     x0, x1, [x30, #0]
        stp     x2, x3, [x30, #16]
        stp     x4, x5, [x30, #32]
        stp     x6, x7, [x30, #48]
        stp     x8, x9, [x30, #64]
        stp     x10, x11, [x30, #80]
        stp     x12, x13, [x30, #96]
        stp     x14, x15, [x30, #112]
        stp     x16, x17, [x30, #128]
        stp     x18, x19, [x30, #144]
        stp     x20, x21, [x30, #160]
        stp     x22, x23, [x30, #176]
        stp     x24, x25, [x30, #192]
        stp     x26, x27, [x30, #208]
        stp     x28, x29, [x30, #224]
        ldr     x9, [sp]
        str     x9, [x30, #240]
        ldr     x9, [sp, #8]
        str     x9, [x30, #248]         // nzcv
        add     sp, sp, #16
        adr     x9, qout
        stp     q0, q1, [x9, #0]
        stp     q2, q3, [x9, #32]
        stp     q4, q5, [x9, #64]
        stp     q6, q7, [x9, #96]
        stp     q8, q9, [x9, #128]
        stp     q10, q11, [x9, #160]
        stp     q12, q13, [x9, #192]
        stp     q14, q15, [x9, #224]
        stp     q16, q17, [x9, #256]
        stp     q18, q19, [x9, #288]
        stp     q20, q21, [x9, #320]
        stp     q22, q23, [x9, #352]
        stp     q24, q25, [x9, #384]
        stp     q26, q27, [x9, #416]
        stp     q28, q29, [x9, #448]
        stp     q30, q31, [x9, #480]
        // compare: x0 must be 0, x1..x30 as loaded, nzcv 0x60000000, q0-q31 as loaded
        adr     x20, fails
        adr     x21, gout
        adr     x22, gtable
        ldr     x9, [x21]
        cbz     x9, 1f
        bl      fail
1:      mov     x23, #1
2:      ldr     x9, [x21, x23, lsl #3]
        ldr     x10, [x22, x23, lsl #3]
        cmp     x9, x10
        b.eq    3f
        bl      fail
3:      add     x23, x23, #1
        cmp     x23, #31
        b.ne    2b
        ldr     x9, [x21, #248]
        mov     x10, #0x60000000
        cmp     x9, x10
        b.eq    4f
        bl      fail
4:      adr     x21, qout
        adr     x22, qtable
        mov     x23, #0
5:      ldr     x9, [x21, x23, lsl #3]
        ldr     x10, [x22, x23, lsl #3]
        cmp     x9, x10
        b.eq    6f
        bl      fail
6:      add     x23, x23, #1
        cmp     x23, #64
        b.ne    5b
        adr     x9, h1seen
        ldr     x9, [x9]
        cmp     x9, #1
        b.eq    7f
        bl      fail
7:
        // --- 2. SIGUSR2 without SA_RESTORER ---
        adr     x1, act2
        adr     x9, handler2
        str     x9, [x1]
        mov     x0, #12
        mov     x2, #0
        mov     x3, #8
        mov     x8, #134
        svc     #0
        mov     x8, #172
        svc     #0
        mov     x1, #12
        mov     x8, #129                // kill(pid, SIGUSR2)
        svc     #0
        cbz     x0, 8f
        bl      fail
8:      adr     x9, h2seen
        ldr     x9, [x9]
        cmp     x9, #1
        b.eq    9f
        bl      fail
9:
        // --- 3. a read restarted after an SA_RESTART handler ---
        adr     x1, act3
        adr     x9, handler3
        str     x9, [x1]
        adr     x9, restorer
        str     x9, [x1, #16]
        mov     x0, #14                 // SIGALRM
        mov     x2, #0
        mov     x3, #8
        mov     x8, #134
        svc     #0
        adr     x0, pipefd
        mov     x1, #0
        mov     x8, #59                 // pipe2
        svc     #0
        mov     x0, #0                  // ITIMER_REAL
        adr     x1, itv
        mov     x2, #0
        mov     x8, #103                // setitimer
        svc     #0
        adr     x9, pipefd
        ldr     w0, [x9]
        adr     x1, rbuf
        mov     x2, #1
        mov     x8, #63                 // read: blocks until the handler writes
        svc     #0
        cmp     x0, #1
        b.eq    10f
        bl      fail
10:     adr     x9, rbuf
        ldrb    w9, [x9]
        cmp     w9, #'x'
        b.eq    11f
        bl      fail
11:
        // --- 4. nanosleep interrupted by a handler without SA_RESTART: EINTR ---
        adr     x1, act4
        adr     x9, handler3
        str     x9, [x1]
        adr     x9, restorer
        str     x9, [x1, #16]
        mov     x0, #14
        mov     x2, #0
        mov     x3, #8
        mov     x8, #134
        svc     #0
        mov     x0, #0
        adr     x1, itv
        mov     x2, #0
        mov     x8, #103
        svc     #0
        adr     x0, twosec
        mov     x1, #0
        mov     x8, #101                // nanosleep
        svc     #0
        cmn     x0, #4                  // -EINTR
        b.eq    12f
        bl      fail
12:
        mov     x0, #1
        adr     x1, okmsg
        mov     x2, #3
        mov     x8, #64                 // write
        svc     #0
        adr     x9, fails
        ldr     x0, [x9]
        mov     x8, #93                 // exit
        svc     #0

fail:   adr     x9, fails
        ldr     x10, [x9]
        add     x10, x10, #1
        str     x10, [x9]
        ret

handler1:
        // x0 = 10, x1 = siginfo, x2 = ucontext (uc_mcontext at 176: fault_address, regs[31])
        mov     x12, #0
        cmp     x0, #10
        b.ne    20f
        ldr     w9, [x1]                // si_signo
        cmp     w9, #10
        b.ne    20f
        ldr     w9, [x1, #8]            // si_code: SI_USER
        cbnz    w9, 20f
        ldr     x9, [x2, #(176 + 8 + 19 * 8)]
        adr     x10, gtable
        ldr     x10, [x10, #(19 * 8)]
        cmp     x9, x10
        b.ne    20f
        mov     x12, #1
20:     adr     x9, h1seen
        str     x12, [x9]
        // clobber (but keep x30, the way back, and sp)
        mov     x9, #-1
        mov     x0, x9
        mov     x1, x9
        mov     x2, x9
        mov     x3, x9
        mov     x4, x9
        mov     x5, x9
        mov     x6, x9
        mov     x7, x9
        mov     x8, x9
        mov     x10, x9
        mov     x11, x9
        mov     x12, x9
        mov     x13, x9
        mov     x14, x9
        mov     x15, x9
        mov     x16, x9
        mov     x17, x9
        mov     x18, x9
        mov     x19, x9
        mov     x20, x9
        mov     x21, x9
        mov     x22, x9
        mov     x23, x9
        mov     x24, x9
        mov     x25, x9
        mov     x26, x9
        mov     x27, x9
        mov     x28, x9
        mov     x29, x9
        movi    v0.2d, #0xffffffffffffffff
        mov     v1.16b, v0.16b
        mov     v2.16b, v0.16b
        mov     v3.16b, v0.16b
        mov     v4.16b, v0.16b
        mov     v5.16b, v0.16b
        mov     v6.16b, v0.16b
        mov     v7.16b, v0.16b
        mov     v8.16b, v0.16b
        mov     v9.16b, v0.16b
        mov     v10.16b, v0.16b
        mov     v11.16b, v0.16b
        mov     v12.16b, v0.16b
        mov     v13.16b, v0.16b
        mov     v14.16b, v0.16b
        mov     v15.16b, v0.16b
        mov     v16.16b, v0.16b
        mov     v17.16b, v0.16b
        mov     v18.16b, v0.16b
        mov     v19.16b, v0.16b
        mov     v20.16b, v0.16b
        mov     v21.16b, v0.16b
        mov     v22.16b, v0.16b
        mov     v23.16b, v0.16b
        mov     v24.16b, v0.16b
        mov     v25.16b, v0.16b
        mov     v26.16b, v0.16b
        mov     v27.16b, v0.16b
        mov     v28.16b, v0.16b
        mov     v29.16b, v0.16b
        mov     v30.16b, v0.16b
        mov     v31.16b, v0.16b
        msr     nzcv, xzr
        ret

handler2:
        adr     x9, h2seen
        mov     x10, #1
        str     x10, [x9]
        ret

handler3:                               // SIGALRM: a byte into the pipe
        adr     x9, pipefd
        ldr     w0, [x9, #4]
        adr     x1, wbyte
        mov     x2, #1
        mov     x8, #64
        svc     #0
        ret

restorer:
        mov     x8, #139                // rt_sigreturn
        svc     #0

        // data follows the code in the one RWX segment
        .balign 16
act1:   .quad   0, 0x04000004, 0, 0     // SA_SIGINFO | SA_RESTORER
act2:   .quad   0, 0, 0, 0              // no SA_RESTORER
act3:   .quad   0, 0x14000000, 0, 0     // SA_RESTART | SA_RESTORER
act4:   .quad   0, 0x04000000, 0, 0     // SA_RESTORER
itv:    .quad   0, 0, 0, 50000          // 50 ms, once
twosec: .quad   2, 0
gtable: .quad   0, 10, 0x2222, 0x3333, 0x4444, 0x5555, 0x6666, 0x7777
        .quad   129, 0x9999, 0xaaaa, 0xbbbb, 0xcccc, 0xdddd, 0xeeee, 0xffff
        .quad   0x1010101010101010, 0x1111111111111111, 0x1212121212121212, 0x1313131313131313
        .quad   0x1414141414141414, 0x1515151515151515, 0x1616161616161616, 0x1717171717171717
        .quad   0x1818181818181818, 0x1919191919191919, 0x2020202020202020, 0x2121212121212121
        .quad   0x2222222222222222, 0x2323232323232323, 0x3030303030303030, 0
        .balign 16
qtable: .rept 32
        .quad   0x0123456789abcdef + (. - qtable), 0xfedcba9876543210 - (. - qtable)
        .endr
gout:   .fill   32, 8, 0
        .balign 16
qout:   .fill   64, 8, 0
fails:  .quad   0
h1seen: .quad   0
h2seen: .quad   0
pipefd: .word   -1, -1
rbuf:   .byte   0
wbyte:  .byte   'x'
okmsg:  .ascii  "ok\n"
