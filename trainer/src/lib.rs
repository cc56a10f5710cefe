//! Keel's trainer (std). The module order follows the data flow:
//! plant (`env`) -> replay buffer (`replay`) -> dynamics model (`model`) -> model rollouts and
//! MBPO (`mbpo`) -> SAC with the Lipschitz critic (`sac`, on `nn`) -> training loop (`train`) ->
//! export (`.keel`, through keel-runtime's encoder) -> evaluation with keel-runtime itself.
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod env;
pub mod error;
pub mod eval;
pub mod inspect;
pub mod io;
pub mod mbpo;
pub mod metrics;
pub mod model;
pub mod nn;
pub mod policy_choice;
pub mod replay;
pub mod sac;
pub mod train;
