//! The statuses the store keeps, each with one string form. A string the store does not
//! know is corruption ([`StoreError::Corrupt`]), never read as some status by default:
//! an unknown job read as `failed` would silently run again.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::StoreError;

/// A status string that names no status of its kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} status `{value}`; expected one of {}", expected.join(", "))]
pub struct UnknownStatus {
    pub kind: &'static str,
    pub value: String,
    pub expected: &'static [&'static str],
}

macro_rules! statuses {
    ($(#[$doc:meta])* $name:ident, $kind:literal { $($variant:ident => $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($variant,)+
        }

        impl $name {
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];
            const NAMES: &'static [&'static str] = &[$($text,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }

            /// Reads a stored value of column `table.status`; an unknown one is corrupt.
            pub(crate) fn from_column(table: &'static str, value: &str) -> Result<Self, StoreError> {
                value.parse().map_err(|_| StoreError::Corrupt {
                    table,
                    value: value.to_owned(),
                })
            }
        }

        impl FromStr for $name {
            type Err = UnknownStatus;
            fn from_str(s: &str) -> Result<Self, UnknownStatus> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err(UnknownStatus {
                        kind: $kind,
                        value: other.to_owned(),
                        expected: Self::NAMES,
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
    };
}

statuses! {
    /// Job states, as stored.
    Status, "job" {
        Pending => "pending",
        Running => "running",
        Deferred => "deferred",
        Done => "done",
        Failed => "failed",
        Interrupted => "interrupted",
    }
}

statuses! {
    /// How a stage of a job stands.
    StageStatus, "stage" {
        Running => "running",
        Done => "done",
        Cached => "cached",
        Failed => "failed",
        Interrupted => "interrupted",
        Deferred => "deferred",
        Unconfirmed => "unconfirmed",
    }
}

statuses! {
    /// A side effect in the ledger: `started` (legacy) or `intent` before the call,
    /// `done` or `unknown` (the call may have taken effect) or `failed` after it,
    /// `expired` once retention removed what it made.
    EffectStatus, "effect" {
        Started => "started",
        Intent => "intent",
        Done => "done",
        Unknown => "unknown",
        Failed => "failed",
        Expired => "expired",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_its_one_string() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>(), Ok(*s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for s in StageStatus::ALL {
            assert_eq!(s.as_str().parse::<StageStatus>(), Ok(*s));
            assert_eq!(format!("{s:<12}|"), format!("{:<12}|", s.as_str()));
        }
        for s in EffectStatus::ALL {
            assert_eq!(s.as_str().parse::<EffectStatus>(), Ok(*s));
        }
    }

    #[test]
    fn an_unknown_status_is_an_error_naming_the_choices() {
        let err = "Done".parse::<Status>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown job status `Done`; expected one of pending, running, deferred, done, failed, interrupted"
        );
        assert!(matches!(
            StageStatus::from_column("stages", "finished"),
            Err(StoreError::Corrupt { table: "stages", ref value }) if value == "finished"
        ));
    }
}
