//! How the proxy runs programs: directly on the host, or behind a command prefix
//! such as `ip netns exec NS` so a test can program its own network namespace.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use crate::Error;

/// Runs a program to completion. The real one is [`Commands`]; tests record calls.
pub trait Exec: Send + Sync {
    /// Runs `program` with `args`, feeding `stdin` when given, and returns its
    /// output whatever the exit status. Fails only when it cannot be run at all.
    fn run(&self, program: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<Output, Error>;
}

/// Runs programs as child processes, behind an optional command prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commands {
    prefix: Vec<String>,
}

impl Commands {
    /// Programs run directly, in the caller's network namespace.
    pub fn host() -> Self {
        Self::default()
    }

    /// Programs run behind `prefix`, e.g. `["ip", "netns", "exec", "ns1"]`.
    pub fn with_prefix(prefix: Vec<String>) -> Self {
        Self { prefix }
    }

    /// Programs run inside the named network namespace (`ip netns exec NAME ...`).
    pub fn in_netns(name: &str) -> Self {
        Self::with_prefix(vec![
            "/usr/sbin/ip".into(),
            "netns".into(),
            "exec".into(),
            name.into(),
        ])
    }
}

impl Exec for Commands {
    fn run(&self, program: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<Output, Error> {
        let mut command = match self.prefix.split_first() {
            Some((first, rest)) => {
                let mut command = Command::new(first);
                command.args(rest).arg(program);
                command
            }
            None => Command::new(program),
        };
        command
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawn_failed = |source| Error::SpawnFailed {
            program: self
                .prefix
                .iter()
                .map(String::as_str)
                .chain(std::iter::once(program))
                .collect::<Vec<_>>()
                .join(" "),
            source,
        };
        let mut child = command.spawn().map_err(spawn_failed)?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A program that exits early closes the pipe; its status tells why.
            let _ = pipe.write_all(input);
        }
        child.wait_with_output().map_err(spawn_failed)
    }
}

/// Runs a program and fails unless it exits 0; returns its stdout.
pub(crate) fn checked(exec: &dyn Exec, program: &str, args: &[&str]) -> Result<String, Error> {
    let output = exec.run(program, args, None)?;
    if !output.status.success() {
        return Err(Error::CommandFailed {
            command: std::iter::once(program)
                .chain(args.iter().copied().take(6))
                .collect::<Vec<_>>()
                .join(" "),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs a program; whether it exited 0.
pub(crate) fn succeeds(exec: &dyn Exec, program: &str, args: &[&str]) -> bool {
    exec.run(program, args, None)
        .is_ok_and(|o| o.status.success())
}

#[cfg(test)]
pub(crate) mod fake {
    //! A recording [`Exec`] for unit tests: answers from a script, remembers calls.

    use std::os::unix::process::ExitStatusExt as _;
    use std::process::{ExitStatus, Output};
    use std::sync::Mutex;

    use super::Exec;
    use crate::Error;

    /// One recorded call: the command line and the stdin it was given.
    #[derive(Debug, Clone)]
    pub(crate) struct Call {
        pub(crate) line: String,
        pub(crate) stdin: String,
    }

    type Responder = Box<dyn Fn(&str) -> Option<(i32, String)> + Send + Sync>;

    /// Answers each call with the first responder that knows it, else success and
    /// empty output.
    #[derive(Default)]
    pub(crate) struct Recorder {
        pub(crate) calls: Mutex<Vec<Call>>,
        responders: Vec<Responder>,
    }

    impl Recorder {
        pub(crate) fn respond(
            mut self,
            f: impl Fn(&str) -> Option<(i32, String)> + Send + Sync + 'static,
        ) -> Self {
            self.responders.push(Box::new(f));
            self
        }

        pub(crate) fn lines(&self) -> Vec<String> {
            self.calls
                .lock()
                .unwrap()
                .iter()
                .map(|c| c.line.clone())
                .collect()
        }

        pub(crate) fn stdins(&self) -> Vec<String> {
            self.calls
                .lock()
                .unwrap()
                .iter()
                .filter(|c| !c.stdin.is_empty())
                .map(|c| c.stdin.clone())
                .collect()
        }

        pub(crate) fn clear(&self) {
            self.calls.lock().unwrap().clear();
        }
    }

    impl Exec for std::sync::Arc<Recorder> {
        fn run(&self, program: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<Output, Error> {
            self.as_ref().run(program, args, stdin)
        }
    }

    impl Exec for Recorder {
        fn run(&self, program: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<Output, Error> {
            let line = std::iter::once(program)
                .chain(args.iter().copied())
                .collect::<Vec<_>>()
                .join(" ");
            self.calls.lock().unwrap().push(Call {
                line: line.clone(),
                stdin: stdin
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .unwrap_or_default(),
            });
            let (code, stdout) = self
                .responders
                .iter()
                .find_map(|r| r(&line))
                .unwrap_or((0, String::new()));
            Ok(Output {
                status: ExitStatus::from_raw(code << 8),
                stdout: stdout.into_bytes(),
                stderr: Vec::new(),
            })
        }
    }
}
