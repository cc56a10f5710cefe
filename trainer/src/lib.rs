//! Keel's trainer (std). The module order follows the data flow:
//! plant (`env`) -> replay buffer -> dynamics model -> model rollouts -> SAC + Lipschitz critic
//! -> export (`.keel`, through keel-runtime's encoder) -> runtime.
pub mod env;
pub mod nn;
