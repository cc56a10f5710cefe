//! Plant dynamics in `no_std` code, shared by the trainer's environments and the firmware's
//! on-device closed-loop simulations, so both run one implementation.
//!
//! Only the deterministic physics lives here (state, step, observation); episode bookkeeping,
//! random resets and time limits belong to the trainer's `Env` wrappers.
pub mod cartpole;
pub mod mountaincar;
pub mod pendulum;
