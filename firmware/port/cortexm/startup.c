//! Reset, vector table, SysTick time base and semihosting exit shared by every
//! Cortex-M board. Chip families add only their UART and clock code.
#include <stdint.h>
#include <string.h>

#include "aiot/port.h"
#include "aiot/rxring.h"  // aiot_port_uart_rx_isr: the family's receive handler (AIOT_UART_RX_IRQ)

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
extern int main(void);
void aiot_family_init(void);  // per chip family: clocks and console UART

#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)
#define SCB_VTOR (*(volatile uint32_t *)0xE000ED08u)
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SYST_RELOAD 0x00FFFFFFu

static volatile uint32_t systick_wraps;

void Reset_Handler(void);
void Default_Handler(void);
void HardFault_Handler(void);
void SysTick_Handler(void);

typedef void (*vector_t)(void);
extern const vector_t aiot_vectors[];

void Reset_Handler(void) {
#if defined(__ARM_ARCH_7M__) || defined(__ARM_ARCH_7EM__) || defined(__ARM_ARCH_8M_MAIN__)
    // Interrupts go to this image's table even when a bootloader (MCUboot) started it
    // from a slot: the table is not at address 0 then (aiot build --signed).
    SCB_VTOR = (uint32_t)(uintptr_t)aiot_vectors;
#endif
#if defined(__ARM_FP)
    // The FPU must be on before any float instruction, or the core faults (and QEMU hangs).
    SCB_CPACR |= (0xFu << 20);
    __asm volatile("dsb\n isb");
#endif
    uint32_t *src = &_sidata;
    for (uint32_t *dst = &_sdata; dst < &_edata;) *dst++ = *src++;
    for (uint32_t *dst = &_sbss; dst < &_ebss;) *dst++ = 0;
    aiot_port_init();
    aiot_port_exit(main());
}

void Default_Handler(void) { aiot_port_exit(0x7E); }
void HardFault_Handler(void) {
    aiot_port_log("aiot: hard fault\n");
    aiot_port_exit(0x7F);
}

void SysTick_Handler(void) { systick_wraps++; }

//! 16 system exceptions, then external interrupts 0..AIOT_MAX_IRQ-1 (toolkit/ports.py MAX_IRQ).
//! Only the console's receive interrupt is ever enabled; the other entries stay 0.
#define AIOT_MAX_IRQ 64
__attribute__((section(".vectors"), used)) const vector_t aiot_vectors[16 + AIOT_MAX_IRQ] = {
    (vector_t)(uintptr_t)&_estack,
    Reset_Handler,
    Default_Handler,  // NMI
    HardFault_Handler,
    HardFault_Handler,  // MemManage
    HardFault_Handler,  // BusFault
    HardFault_Handler,  // UsageFault
    0, 0, 0, 0,
    Default_Handler,  // SVC
    Default_Handler,  // DebugMon
    0,
    Default_Handler,  // PendSV
    SysTick_Handler,
#ifdef AIOT_UART_RX_IRQ
    [16 + AIOT_UART_RX_IRQ] = aiot_port_uart_rx_isr,
#endif
};

void aiot_port_init(void) {
    SYST_RVR = SYST_RELOAD;
    SYST_CVR = 0;
    SYST_CSR = 0x7u;  // processor clock, interrupt on wrap, enable
    aiot_family_init();
}

uint64_t aiot_port_ticks(void) {
    // Read wraps and the down-counter consistently: retry if a wrap happened in between.
    uint32_t wraps, cvr;
    do {
        wraps = systick_wraps;
        cvr = SYST_CVR;
    } while (wraps != systick_wraps);
    return (uint64_t)wraps * (SYST_RELOAD + 1u) + (SYST_RELOAD - cvr);
}

uint32_t aiot_port_tick_hz(void) { return AIOT_CPU_HZ; }

#if AIOT_SEMIHOSTING
static int semihost_call(int op, void *arg) {
    register int r0 __asm__("r0") = op;
    register void *r1 __asm__("r1") = arg;
    __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}
#endif

void aiot_port_exit(int code) {
#if AIOT_SEMIHOSTING
    // SYS_EXIT_EXTENDED with ADP_Stopped_ApplicationExit carries the exit code to QEMU.
    uint32_t block[2] = {0x20026u, (uint32_t)code};
    semihost_call(0x20, block);
#else
    (void)code;
#endif
    for (;;) {
        __asm volatile("wfi");
    }
}

void aiot_port_reset(void) {
    // SCB->AIRCR = VECTKEY | SYSRESETREQ (ARMv6-M/v7-M ARM B3.2.6): a system reset.
    __asm volatile("dsb" ::: "memory");
    *(volatile uint32_t *)0xE000ED0Cu = 0x05FA0004u;
    __asm volatile("dsb" ::: "memory");
    for (;;) {
    }
}

void aiot_port_log(const char *text) {
#if AIOT_SEMIHOSTING
    semihost_call(0x04, (void *)text);  // SYS_WRITE0: goes to QEMU's stderr
#else
    (void)text;
#endif
}
