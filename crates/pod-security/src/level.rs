//! The three Pod Security Standards levels and the policy versions they are pinned
//! to, as the `pod-security.kubernetes.io/<mode>` and `<mode>-version` labels spell
//! them.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// A Pod Security Standards level, from most to least permissive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Level {
    /// Unrestricted: every pod is allowed. Kubernetes' default for every mode.
    #[default]
    Privileged,
    /// Prevents known privilege escalations; allows the default pod.
    Baseline,
    /// Hardened pod practice; includes every baseline check.
    Restricted,
}

impl Level {
    /// The label value: `privileged`, `baseline` or `restricted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Kubernetes' detail for a level label it cannot parse.
pub(crate) const INVALID_LEVEL_DETAIL: &str = "must be one of privileged, baseline, restricted";
/// Kubernetes' detail for a version label it cannot parse.
pub(crate) const INVALID_VERSION_DETAIL: &str = r#"must be "latest" or "v1.x""#;

impl FromStr for Level {
    type Err = Error;

    /// Parses a label value exactly (case-sensitive), as Kubernetes does.
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "privileged" => Ok(Level::Privileged),
            "baseline" => Ok(Level::Baseline),
            "restricted" => Ok(Level::Restricted),
            _ => Err(Error::InvalidLevel {
                value: s.to_owned(),
            }),
        }
    }
}

/// The policy version a level is evaluated at: `latest` or `v1.N`.
///
/// Ordered by age: `V1(0) < V1(1) < … < Latest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Version {
    /// The policy of the Kubernetes minor version `1.N`.
    V1(u32),
    /// The newest policy the evaluator knows.
    #[default]
    Latest,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::Latest => f.write_str("latest"),
            Version::V1(minor) => write!(f, "v1.{minor}"),
        }
    }
}

impl FromStr for Version {
    type Err = Error;

    /// Accepts `latest` or `v1.N` (no leading zeros, no patch part), as Kubernetes'
    /// `^v1\.([0-9]|[1-9][0-9]*)$` does.
    fn from_str(s: &str) -> Result<Self, Error> {
        if s == "latest" {
            return Ok(Version::Latest);
        }
        let invalid = || Error::InvalidVersion {
            value: s.to_owned(),
        };
        let digits = s.strip_prefix("v1.").ok_or_else(invalid)?;
        let well_formed = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'));
        if !well_formed {
            return Err(invalid());
        }
        digits
            .parse::<u32>()
            .map(Version::V1)
            .map_err(|_| invalid())
    }
}

/// A level pinned to a version, printed `level:version` (`restricted:latest`) as it
/// appears in PodSecurity messages and audit annotations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LevelVersion {
    /// The level.
    pub level: Level,
    /// The version of the level's policy.
    pub version: Version,
}

impl LevelVersion {
    /// `level` at `version`.
    pub fn new(level: Level, version: Version) -> Self {
        Self { level, version }
    }

    /// Whether the two evaluate every pod alike: both privileged (at any version), or
    /// the same level at the same version.
    pub fn equivalent(&self, other: &LevelVersion) -> bool {
        (self.level == Level::Privileged && other.level == Level::Privileged) || self == other
    }
}

impl fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.level, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_only_their_exact_lowercase_names() {
        assert_eq!("baseline".parse::<Level>().ok(), Some(Level::Baseline));
        assert_eq!("restricted".parse::<Level>().ok(), Some(Level::Restricted));
        assert_eq!("privileged".parse::<Level>().ok(), Some(Level::Privileged));
        for bad in ["Baseline", "", " restricted", "strict"] {
            assert!(bad.parse::<Level>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn versions_parse_latest_and_v1_minor_without_leading_zeros() {
        assert_eq!("latest".parse::<Version>().ok(), Some(Version::Latest));
        assert_eq!("v1.0".parse::<Version>().ok(), Some(Version::V1(0)));
        assert_eq!("v1.33".parse::<Version>().ok(), Some(Version::V1(33)));
        for bad in [
            "v1.01", "1.33", "v1", "v1.", "v2.0", "v1.33.0", "Latest", "v1.-1", "v1.3a", "",
        ] {
            assert!(bad.parse::<Version>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn level_versions_print_as_kubernetes_quotes_them() {
        let lv = LevelVersion::new(Level::Restricted, Version::Latest);
        assert_eq!(lv.to_string(), "restricted:latest");
        let lv = LevelVersion::new(Level::Baseline, Version::V1(24));
        assert_eq!(lv.to_string(), "baseline:v1.24");
    }

    #[test]
    fn privileged_is_equivalent_at_any_version_other_levels_only_at_the_same() {
        let p1 = LevelVersion::new(Level::Privileged, Version::V1(20));
        let p2 = LevelVersion::new(Level::Privileged, Version::Latest);
        assert!(p1.equivalent(&p2));
        let b1 = LevelVersion::new(Level::Baseline, Version::V1(20));
        let b2 = LevelVersion::new(Level::Baseline, Version::Latest);
        assert!(!b1.equivalent(&b2));
        assert!(b2.equivalent(&b2));
    }

    #[test]
    fn latest_is_newer_than_every_minor() {
        assert!(Version::V1(1000) < Version::Latest);
        assert!(Version::V1(9) < Version::V1(10));
    }
}
