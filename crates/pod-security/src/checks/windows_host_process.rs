//! Baseline `windowsHostProcess` (v1.0+): no Windows HostProcess containers, at pod
//! or container level.

use super::{Check, Pod, Versioned, containers_phrase};
use crate::level::Level;
use crate::violation::Violation;

pub(crate) const CHECK: Check = Check {
    id: "windowsHostProcess",
    level: Level::Baseline,
    versions: &[Versioned {
        since: 0,
        check: windows_host_process_1_0,
        overrides: &[],
    }],
};

fn windows_host_process_1_0(pod: &Pod<'_>) -> Option<Violation> {
    let bad: Vec<&str> = pod
        .containers()
        .filter(|c| {
            c.security_context
                .and_then(|sc| sc.windows_options.as_ref())
                .and_then(|w| w.host_process)
                == Some(true)
        })
        .map(|c| c.name)
        .collect();
    let pod_level = pod
        .security_context()
        .and_then(|sc| sc.windows_options.as_ref())
        .and_then(|w| w.host_process)
        == Some(true);
    let mut setters = Vec::new();
    if pod_level {
        setters.push("pod".to_owned());
    }
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    Some(Violation::new(
        CHECK.id,
        "hostProcess",
        format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            setters.join(" and ")
        ),
    ))
}
