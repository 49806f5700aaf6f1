/*
 * SwiftNBD migration test guest: a 512-byte real-mode boot sector (SeaBIOS loads it at
 * 0000:7c00 and jumps there with DL = boot drive). It needs no OS and writes to its own disk
 * forever, so a live migration always has a guest dirtying blocks.
 *
 * Loop: fill a 32 KiB buffer with 64 tagged sectors, write them with INT 13h AH=43h (extended
 * write, LBA disk address packet) at the next 32 KiB of the region [1 MiB, 17 MiB) =
 * LBA [2048, 34816), pause about 2 ms (INT 15h AH=86h), and print '.' to the debugcon port
 * 0x402 each time the region wraps around. "BMIG\n" is printed once at start.
 *
 * Tag at the start of every sector written (little-endian):
 *   0  "BMIG"
 *   4  counter   (uint32; +1 per sector written; lives in guest RAM so it migrates)
 *   8  LBA       (uint64; the sector's own address)
 *   16 ~counter  (uint32; bitwise complement, to catch torn or misplaced sectors)
 * The rest of the sector is zero.
 *
 * Built with GNU as + objcopy only (scripts/build-boot-sector.sh): no linker, so the code
 * runs with CS = DS = 0x07c0 and every label is an offset from the start of the sector
 * (i386 REL relocations keep that offset in place in the unlinked object).
 */
    .code16
    .text
    .globl _start
_start:
    ljmp    $0x07c0, $start

start:
    cli
    movw    %cs, %ax
    movw    %ax, %ds
    movw    %ax, %ss
    movw    $0x7000, %sp            /* stack below the sector, inside segment 0x07c0 */
    sti
    movb    %dl, drive
    movw    $0x402, %dx
    movw    $banner, %si
print:
    lodsb
    testb   %al, %al
    jz      chunk
    outb    %al, %dx
    jmp     print

chunk:
    /* Fill 64 sectors at 1000:0000 with their tags. */
    movw    $0x1000, %ax
    movw    %ax, %es
    xorw    %di, %di
    movl    dap_lba, %ebx
    movw    $64, %cx
tag:
    movl    $0x47494d42, %es:(%di)  /* "BMIG" */
    incl    counter
    movl    counter, %eax
    movl    %eax, %es:4(%di)
    movl    %ebx, %es:8(%di)
    movl    $0, %es:12(%di)
    notl    %eax
    movl    %eax, %es:16(%di)
    incl    %ebx
    addw    $512, %di
    loop    tag

    /* Extended write of the chunk. On failure print 'E' and carry on. */
    movw    $dap, %si
    movb    $0x43, %ah
    movb    $0x00, %al
    movb    drive, %dl
    int     $0x13
    jnc     advance
    movw    $0x402, %dx
    movb    $'E', %al
    outb    %al, %dx

advance:
    addl    $64, dap_lba
    cmpl    $34816, dap_lba
    jb      pause
    movl    $2048, dap_lba
    movw    $0x402, %dx
    movb    $'.', %al
    outb    %al, %dx

pause:
    /* INT 15h AH=86h: wait CX:DX microseconds (2000). */
    movb    $0x86, %ah
    xorw    %cx, %cx
    movw    $2000, %dx
    int     $0x15
    jmp     chunk

banner:
    .asciz  "BMIG\n"
drive:
    .byte   0x80
    .balign 4
counter:
    .long   0
dap:                                /* disk address packet for INT 13h AH=43h */
    .byte   16, 0                   /* size, reserved */
    .word   64                      /* sectors */
    .word   0x0000, 0x1000          /* buffer offset, segment */
dap_lba:
    .long   2048, 0                 /* first LBA (64-bit) */

    .org    510
    .byte   0x55, 0xaa
