//! Signal names and numbers as runc accepts them ("KILL", "SIGKILL", "9").

use crate::error::{Error, Result};
use nix::sys::signal::Signal;
use std::str::FromStr;

/// Parse a signal given by name (with or without SIG, any case) or number.
pub fn parse(s: &str) -> Result<Signal> {
    let bad = || {
        Error::Invalid(format!(
            "unknown signal {s:?}: use a name such as TERM, SIGKILL or a number such as 9"
        ))
    };
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    Signal::from_str(&name).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("KILL").expect("ok"), Signal::SIGKILL);
        assert_eq!(parse("sigterm").expect("ok"), Signal::SIGTERM);
        assert_eq!(parse("9").expect("ok"), Signal::SIGKILL);
        assert_eq!(parse("SIGUSR1").expect("ok"), Signal::SIGUSR1);
        assert!(parse("SIGNOPE").is_err());
        assert!(parse("999").is_err());
    }
}
