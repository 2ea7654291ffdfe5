//! Exec probes: the command runs in the container through CRI ExecSync, bounded by
//! the probe's timeout; exit code 0 passes, and the output (stdout then stderr, at
//! most [`MAX_OUTPUT`] bytes) is what a failure event says.

use std::time::Duration;

use cri::v1;
use k8s_openapi::api::core::v1::{Container, ExecAction};

use super::{MAX_OUTPUT, Outcome, go_quote};

/// Slack on top of the probe's timeout for the runtime to answer.
const RPC_SLACK: Duration = Duration::from_secs(5);

/// The probe's command with `$(VAR)` references to the container's plain `env`
/// values expanded (the kubelet expands only those, not `valueFrom`).
pub(super) fn command(exec: &ExecAction, c: &Container) -> Vec<String> {
    let env: Vec<(String, String)> = c
        .env
        .iter()
        .flatten()
        .filter(|e| e.value_from.is_none())
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect();
    exec.command
        .iter()
        .flatten()
        .map(|arg| crate::env::expand(arg, &env))
        .collect()
}

/// Runs `command` in container `id`.
pub(super) async fn probe(
    runtime: &cri::Runtime,
    id: &str,
    command: Vec<String>,
    timeout: Duration,
) -> Outcome {
    let timed_out = || {
        Outcome::Failure(format!(
            "command {} timed out",
            go_quote(&command.join(" "))
        ))
    };
    let mut request = tonic::Request::new(v1::ExecSyncRequest {
        container_id: id.to_owned(),
        cmd: command.clone(),
        timeout: timeout.as_secs().max(1) as i64,
    });
    request.set_timeout(timeout + RPC_SLACK);
    let mut client = runtime.runtime();
    let call = client.exec_sync(request);
    let response = match tokio::time::timeout(timeout + RPC_SLACK, call).await {
        Err(_) => return timed_out(),
        Ok(Err(status)) if status.code() == tonic::Code::DeadlineExceeded => return timed_out(),
        Ok(Err(status)) => {
            return Outcome::Error(format!(
                "rpc error: code = {:?} desc = {}",
                status.code(),
                status.message()
            ));
        }
        Ok(Ok(response)) => response.into_inner(),
    };
    let mut output = response.stdout;
    output.extend_from_slice(&response.stderr);
    output.truncate(MAX_OUTPUT);
    let output = String::from_utf8_lossy(&output).into_owned();
    if response.exit_code == 0 {
        Outcome::Success
    } else {
        Outcome::Failure(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_expands_plain_env_values_only() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "env": [
                {"name": "FILE", "value": "/tmp/ready"},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            ],
        }))
        .expect("container");
        let exec = ExecAction {
            command: Some(vec!["cat".into(), "$(FILE)".into(), "$(POD)".into()]),
        };
        assert_eq!(command(&exec, &c), ["cat", "/tmp/ready", "$(POD)"]);
    }
}
