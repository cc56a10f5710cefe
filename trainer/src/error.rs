//! Errors that reach the user: one message, and the exit status the CLI returns.
use std::fmt;

/// A failure of a `keel` command.
#[derive(Debug)]
pub struct KeelError {
    /// 2 for bad input (arguments, files, configs), 1 for internal failures.
    pub status: i32,
    pub message: String,
}

impl KeelError {
    /// Bad input from the user: exit status 2.
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            status: 2,
            message: message.into(),
        }
    }

    /// Something failed that is not the user's input: exit status 1.
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: 1,
            message: message.into(),
        }
    }
}

impl fmt::Display for KeelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for KeelError {}
