//! A controller that always produces a finite, in-bounds command.
use crate::error::{ActError, FormatError};
use crate::policy::{Policy, Scratch};

/// Why [`SafeController::act`] used the fallback action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Reason {
    /// The policy blob was rejected at load time.
    Load(FormatError),
    /// The policy refused this observation.
    Act(ActError),
}

/// What [`SafeController::act`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Outcome {
    /// The policy's action.
    Policy,
    /// The fallback action, and why.
    Fallback(Reason),
}

impl core::fmt::Display for Reason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Load(e) => write!(f, "policy rejected at load: {e}"),
            Self::Act(e) => write!(f, "policy could not act: {e}"),
        }
    }
}

/// Wraps a policy (or the reason it failed to load) with a fixed fallback action, e.g. "motor
/// off" or "no harvest".
#[derive(Clone, Debug)]
pub struct SafeController<'a, const W: usize = 64> {
    policy: Result<Policy<'a, W>, FormatError>,
    fallback: &'a [f32],
}

impl<'a, const W: usize> SafeController<'a, W> {
    /// Validates `blob`; a rejected blob is remembered and reported on every `act`.
    pub fn new(blob: &'a [u8], fallback: &'a [f32]) -> Self {
        Self {
            policy: Policy::from_bytes(blob),
            fallback,
        }
    }

    /// Wraps an already-loaded policy (or load error).
    pub fn from_policy(policy: Result<Policy<'a, W>, FormatError>, fallback: &'a [f32]) -> Self {
        Self { policy, fallback }
    }

    /// The loaded policy, or why it was rejected.
    pub fn policy(&self) -> Result<&Policy<'a, W>, FormatError> {
        self.policy.as_ref().map_err(|e| *e)
    }

    /// Writes the policy's action, or the fallback action (as much of it as fits) and the reason.
    pub fn act(&self, obs: &[f32], action: &mut [f32]) -> Outcome {
        self.act_with(obs, action, &mut Scratch::new())
    }

    /// [`SafeController::act`] with the caller's working memory (see [`Policy::act_with`]).
    pub fn act_with(&self, obs: &[f32], action: &mut [f32], scratch: &mut Scratch<W>) -> Outcome {
        let reason = match &self.policy {
            Ok(p) => match p.act_with(obs, action, scratch) {
                Ok(()) => return Outcome::Policy,
                Err(e) => Reason::Act(e),
            },
            Err(e) => Reason::Load(*e),
        };
        action.iter_mut().for_each(|a| *a = 0.0);
        action
            .iter_mut()
            .zip(self.fallback)
            .for_each(|(a, f)| *a = *f);
        Outcome::Fallback(reason)
    }
}
