//! Keel on a NUCLEO-F411RE (STM32F411RE, Cortex-M4F at 100 MHz): swing up a real pendulum with a
//! policy read from flash sector 7.
//!
//! Every 50 ms (Pendulum-v1's step, the rate the policy was trained at) the firmware reads the
//! pendulum's angle from an AS5047P magnetic encoder over SPI, estimates the angular velocity,
//! asks the policy for a torque and drives a DC motor through an H-bridge with PWM and a
//! direction pin. Sensor and actuator are reached only through embedded-hal 1.0 traits
//! (`SpiDevice`, `SetDutyCycle`, `OutputPin`), so another board needs only new `main` wiring.
//! An invalid or missing policy, a refused observation or a sensor error all give the fallback
//! command, motor off, and say why over defmt (RTT). `act`'s cost is measured with the DWT cycle
//! counter and logged once a second. Wiring and flashing: see README.md.
#![no_std]
#![no_main]

use core::f32::consts::{PI, TAU};

use cortex_m::peripheral::DWT;
use cortex_m_rt::entry;
use defmt::{info, warn};
use defmt_rtt as _;
use embedded_hal::digital::{OutputPin, PinState};
use embedded_hal::pwm::SetDutyCycle;
use embedded_hal::spi::{SpiDevice, MODE_1};
use embedded_hal_bus::spi::ExclusiveDevice;
use keel_runtime::plants::pendulum::{F32Trig, Trig};
use keel_runtime::{FormatError, Outcome, Policy, Reason, SafeController, Scratch};
use panic_probe as _;
use stm32f4xx_hal::{pac, prelude::*, rcc::Config};

/// Control rate: Pendulum-v1 integrates with dt = 0.05 s, so the policy expects 20 Hz.
const CONTROL_HZ: u32 = 20;
const DT: f32 = 1.0 / CONTROL_HZ as f32;
/// The policy's torque bound (N m), mapped to full PWM duty. Scale for your motor and gearbox.
const MAX_TORQUE: f32 = 2.0;
/// Encoder reading (rad) with the pendulum upright, which the policy calls angle 0.
const UPRIGHT_OFFSET: f32 = 0.0;
/// Motor off: the command while there is no valid policy or no valid reading.
const FALLBACK: [f32; 1] = [0.0];
/// Widest layer this firmware accepts; sizes `act`'s two buffers (2 x 4 x W bytes).
const CAPACITY: usize = 64;
const SYSCLK_MHZ: u32 = 100;

#[entry]
fn main() -> ! {
    let (Some(dp), Some(mut cp)) = (pac::Peripherals::take(), cortex_m::Peripherals::take()) else {
        defmt::panic!("peripherals already taken");
    };
    // The NUCLEO's ST-LINK feeds an 8 MHz clock to HSE (bypass mode).
    let mut rcc = dp.RCC.freeze(
        Config::hse(8.MHz())
            .bypass_hse_oscillator()
            .sysclk(SYSCLK_MHZ.MHz()),
    );
    cp.DCB.enable_trace();
    cp.DWT.enable_cycle_counter();

    let controller = SafeController::from_policy(load(), &FALLBACK);

    let gpiob = dp.GPIOB.split(&mut rcc);
    // AS5047P on SPI2 (PB13 SCK, PB14 MISO, PB15 MOSI, PB12 chip select): SPI mode 1, <= 10 MHz.
    let bus = dp.SPI2.spi(
        (Some(gpiob.pb13), Some(gpiob.pb14), Some(gpiob.pb15)),
        MODE_1,
        1.MHz(),
        &mut rcc,
    );
    let Ok(spi) = ExclusiveDevice::new_no_delay(bus, gpiob.pb12.into_push_pull_output());
    let mut encoder = As5047p { spi };

    // H-bridge: PWM magnitude on TIM3 CH1 (PA6, Arduino D12) at 20 kHz, direction on PA7 (D11).
    let gpioa = dp.GPIOA.split(&mut rcc);
    let (_, (ch1, ..)) = dp.TIM3.pwm_hz(20.kHz(), &mut rcc);
    let mut pwm = ch1.with(gpioa.pa6);
    pwm.enable();
    let mut motor = Motor {
        pwm,
        dir: gpioa.pa7.into_push_pull_output(),
    };
    motor.command(FALLBACK[0]);

    let mut tick = dp.TIM2.counter_hz(&mut rcc);
    if tick.start(CONTROL_HZ.Hz()).is_err() {
        defmt::panic!("TIM2 cannot tick at {=u32} Hz", CONTROL_HZ);
    }

    let mut previous: Option<f32> = None;
    let mut stats = Stats::default();
    // The policy's working memory, kept across ticks (zeroed once, not on every `act`).
    let mut scratch = Scratch::<CAPACITY>::new();
    loop {
        // Polling the update flag keeps the example free of interrupts; the wait is the slack.
        let _ = nb::block!(tick.wait());
        let mut action = FALLBACK;
        let mut cycles = 0;
        match encoder.angle() {
            Ok(raw) => {
                let th = wrap(raw - UPRIGHT_OFFSET);
                // The first tick has no previous angle: report zero velocity.
                let thdot = previous.map_or(0.0, |p| wrap(th - p) / DT);
                previous = Some(th);
                let obs = [F32Trig::cos(th), F32Trig::sin(th), thdot];
                let start = DWT::cycle_count();
                let outcome = controller.act_with(&obs, &mut action, &mut scratch);
                cycles = DWT::cycle_count().wrapping_sub(start);
                if let Outcome::Fallback(Reason::Act(e)) = outcome {
                    warn!("policy refused {}: motor off", e);
                }
                stats.observe(th, thdot);
            }
            Err(e) => {
                previous = None;
                warn!("encoder: {}: motor off", e);
            }
        }
        motor.command(action[0]);
        stats.record(action[0], cycles);
    }
}

/// Finds and validates the policy in flash sector 7, and says what it found.
fn load() -> Result<Policy<'static, CAPACITY>, FormatError> {
    let loaded = keel_region::blob(policy_region()).and_then(Policy::from_bytes);
    match &loaded {
        Ok(p) => info!(
            "policy ok: {=str} for {=str}, {=usize} parameters, {=usize} bytes, aligned: {=bool}",
            p.metadata().name,
            p.metadata().env_id,
            p.param_count(),
            p.blob_len(),
            p.is_aligned()
        ),
        Err(e) => warn!("policy rejected: {}; motor stays off", e),
    }
    loaded
}

/// The policy sector reserved in `memory.x`.
fn policy_region() -> &'static [u8] {
    extern "C" {
        static __policy_start: u8;
        static __policy_end: u8;
    }
    // SAFETY: `memory.x` reserves [__policy_start, __policy_end) (flash sector 7) for the policy:
    // the linker puts nothing there and this firmware never erases or programs flash, so it is
    // readable and unchanging for the whole run. Only the symbols' addresses are used.
    unsafe {
        let start = core::ptr::addr_of!(__policy_start);
        let len = core::ptr::addr_of!(__policy_end) as usize - start as usize;
        core::slice::from_raw_parts(start, len)
    }
}

/// Wraps an angle to [-pi, pi).
fn wrap(x: f32) -> f32 {
    let y = (x + PI) % TAU;
    if y < 0.0 {
        y + TAU - PI
    } else {
        y - PI
    }
}

/// An AS5047P 14-bit magnetic angle sensor on any embedded-hal SPI device.
struct As5047p<S> {
    spi: S,
}

/// Why an angle could not be read.
#[derive(defmt::Format)]
enum EncoderError {
    Spi,
    /// Bad parity or the sensor's error flag: the frame cannot be trusted.
    Frame(u16),
}

impl<S: SpiDevice> As5047p<S> {
    /// Read ANGLECOM (0x3FFF) with the read bit and even parity set.
    const READ_ANGLE: [u8; 2] = [0xFF, 0xFF];
    /// Read NOP (0x0000), which clocks out the answer to the previous command.
    const NOP: [u8; 2] = [0xC0, 0x00];

    /// The current angle in radians, [0, 2 pi). The sensor answers a command in the next frame,
    /// so a read is two 16-bit transactions (chip select toggles between them).
    fn angle(&mut self) -> Result<f32, EncoderError> {
        let mut frame = Self::READ_ANGLE;
        self.spi
            .transfer_in_place(&mut frame)
            .map_err(|_| EncoderError::Spi)?;
        let mut frame = Self::NOP;
        self.spi
            .transfer_in_place(&mut frame)
            .map_err(|_| EncoderError::Spi)?;
        let word = u16::from_be_bytes(frame);
        if word.count_ones() % 2 != 0 || word & 0x4000 != 0 {
            return Err(EncoderError::Frame(word));
        }
        Ok(f32::from(word & 0x3FFF) * (TAU / 16384.0))
    }
}

/// A DC motor behind an H-bridge: PWM duty for the magnitude, a pin for the direction.
struct Motor<P, D> {
    pwm: P,
    dir: D,
}

impl<P: SetDutyCycle, D: OutputPin> Motor<P, D> {
    /// Applies torque `u` (N m), clamped to +-MAX_TORQUE. The runtime guarantees a finite `u`.
    fn command(&mut self, u: f32) {
        let duty = (u.abs() / MAX_TORQUE).min(1.0);
        // GPIO and PWM writes on this chip cannot fail (their error type is Infallible).
        let _ = self.dir.set_state(PinState::from(u >= 0.0));
        let _ = self
            .pwm
            .set_duty_cycle_fraction((duty * 10_000.0) as u16, 10_000);
    }
}

/// Once-a-second summary: the last state and action, and `act`'s cost in cycles.
#[derive(Default)]
struct Stats {
    ticks: u32,
    th: f32,
    thdot: f32,
    max_cycles: u32,
}

impl Stats {
    fn observe(&mut self, th: f32, thdot: f32) {
        (self.th, self.thdot) = (th, thdot);
    }

    fn record(&mut self, action: f32, cycles: u32) {
        self.ticks += 1;
        self.max_cycles = self.max_cycles.max(cycles);
        if self.ticks.is_multiple_of(CONTROL_HZ) {
            info!(
                "th {=f32} rad, thdot {=f32} rad/s, torque {=f32} N m; act {=u32} cycles ({=u32} us), worst {=u32}",
                self.th,
                self.thdot,
                action,
                cycles,
                cycles / SYSCLK_MHZ,
                self.max_cycles
            );
        }
    }
}
