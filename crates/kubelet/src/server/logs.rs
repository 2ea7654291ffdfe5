//! `GET /containerLogs/{namespace}/{pod}/{container}`: a container's log, read from
//! the CRI log file the runtime writes (`<RFC3339Nano> stdout|stderr F|P <message>`),
//! with the options of `kubectl logs` (follow, tailLines, sinceSeconds, sinceTime,
//! timestamps, previous, limitBytes). Partial records (`P`) are joined into one line.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use cri::v1;
use jiff::Timestamp;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::{Body, Failure, lookup};

/// How often a followed log file is checked for growth.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// How often a followed container's state is checked.
const STATE_POLL: Duration = Duration::from_secs(1);
/// How much of a log file is read at once.
const CHUNK: usize = 64 * 1024;

/// What `kubectl logs` asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LogOptions {
    pub follow: bool,
    pub tail_lines: Option<usize>,
    pub since: Option<Timestamp>,
    pub timestamps: bool,
    pub previous: bool,
    pub limit_bytes: Option<usize>,
}

impl LogOptions {
    /// Parses the query parameters of the kubelet's `containerLogs` endpoint.
    pub(crate) fn parse(query: &HashMap<String, Vec<String>>) -> Result<Self, Failure> {
        let one = |name: &str| query.get(name).and_then(|v| v.last()).map(String::as_str);
        let flag = |name: &str| matches!(one(name), Some("true" | "1"));
        let number = |name: &str| -> Result<Option<i64>, Failure> {
            one(name)
                .filter(|v| !v.is_empty())
                .map(|v| {
                    v.parse::<i64>()
                        .map_err(|_| Failure::bad_request(format!("invalid {name}: {v:?}")))
                })
                .transpose()
        };
        let mut options = LogOptions {
            follow: flag("follow"),
            timestamps: flag("timestamps"),
            previous: flag("previous"),
            ..Default::default()
        };
        if let Some(n) = number("tailLines")? {
            if n < 0 {
                return Err(Failure::bad_request("tailLines must be non-negative"));
            }
            options.tail_lines = Some(n as usize);
        }
        if let Some(n) = number("limitBytes")? {
            if n < 1 {
                return Err(Failure::bad_request("limitBytes must be a positive number"));
            }
            options.limit_bytes = Some(n as usize);
        }
        if let Some(secs) = number("sinceSeconds")? {
            if secs < 1 {
                return Err(Failure::bad_request(
                    "sinceSeconds must be a positive number",
                ));
            }
            let since = Timestamp::now()
                .checked_sub(jiff::SignedDuration::from_secs(secs))
                .unwrap_or(Timestamp::MIN);
            options.since = Some(since);
        }
        if let Some(t) = one("sinceTime").filter(|v| !v.is_empty()) {
            if options.since.is_some() {
                return Err(Failure::bad_request(
                    "at most one of sinceTime or sinceSeconds may be specified",
                ));
            }
            let since = t
                .parse::<Timestamp>()
                .map_err(|e| Failure::bad_request(format!("invalid sinceTime {t:?}: {e}")))?;
            options.since = Some(since);
        }
        Ok(options)
    }
}

/// Which output stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// One record of a CRI log file.
#[derive(Debug, PartialEq)]
struct Record<'a> {
    time: Timestamp,
    stream: Stream,
    partial: bool,
    message: &'a [u8],
}

/// Parses one line of a CRI log file (without its newline); `None` when malformed.
fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let mut fields = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
    let stream = match fields.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    // The tag is `F` or `P`, possibly followed by more `:`-separated flags.
    let tag = fields.next()?;
    let partial = tag.split(|b| *b == b':').next()? == b"P";
    let message = fields.next().unwrap_or_default();
    Some(Record {
        time,
        stream,
        partial,
        message,
    })
}

/// A complete log line: the time of its first record and its message.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    time: Timestamp,
    message: Vec<u8>,
}

/// Joins the partial records of each stream into whole lines.
#[derive(Debug, Default)]
struct Joiner {
    pending: [Option<Line>; 2],
}

impl Joiner {
    /// Takes one record; returns a line when the record completes one.
    fn push(&mut self, record: Record<'_>) -> Option<Line> {
        let slot = &mut self.pending[record.stream as usize];
        let line = slot.get_or_insert_with(|| Line {
            time: record.time,
            message: Vec::new(),
        });
        line.message.extend_from_slice(record.message);
        if record.partial { None } else { slot.take() }
    }
}

/// Renders a line as the kubelet writes it to the client.
fn render(line: &Line, timestamps: bool, out: &mut Vec<u8>) {
    if timestamps {
        out.extend_from_slice(line.time.to_string().as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(&line.message);
    out.push(b'\n');
}

/// Splits complete lines off `buffer` (keeping an unfinished last one) and turns them
/// into log lines.
fn drain_lines(buffer: &mut Vec<u8>, joiner: &mut Joiner) -> Vec<Line> {
    let Some(end) = buffer.iter().rposition(|b| *b == b'\n') else {
        return Vec::new();
    };
    let lines = buffer[..end]
        .split(|b| *b == b'\n')
        .filter_map(parse_record)
        .filter_map(|r| joiner.push(r))
        .collect();
    buffer.drain(..=end);
    lines
}

/// Serves a container's log: the lines asked for at once, then (with `follow`) new
/// lines as they are written until the container stops or the client goes away.
pub(crate) async fn serve(
    runtime: &cri::Runtime,
    namespace: &str,
    pod: &str,
    container: &str,
    options: LogOptions,
) -> Result<Body, Failure> {
    let instances = lookup::containers(runtime, namespace, pod, container).await?;
    let chosen = if options.previous {
        instances.get(1).ok_or_else(|| {
            Failure::bad_request(format!(
                "previous terminated container \"{container}\" in pod \"{pod}\" not found"
            ))
        })?
    } else {
        match instances.first() {
            Some(c) => c,
            None => {
                return Err(Failure::bad_request(format!(
                    "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
                )));
            }
        }
    };
    let status = lookup::status(runtime, &chosen.id).await?;
    let path = PathBuf::from(&status.log_path);
    let running = status.state == v1::ContainerState::ContainerRunning as i32;
    let follow = options.follow && running && !options.previous;

    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let reader = LogReader {
        runtime: runtime.clone(),
        container_id: chosen.id.clone(),
        path,
        options,
        follow,
        tx,
    };
    tokio::spawn(async move {
        if let Err(e) = reader.run().await {
            tracing::debug!(error = %e, "log stream ended");
        }
    });
    Ok(super::stream_body(rx))
}

/// Reads one container's log file into a channel.
struct LogReader {
    runtime: cri::Runtime,
    container_id: String,
    path: PathBuf,
    options: LogOptions,
    follow: bool,
    tx: mpsc::Sender<Bytes>,
}

/// Why a log stream stopped early.
#[derive(Debug, thiserror::Error)]
enum StreamEnd {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the client went away")]
    ClientGone,
    #[error("limitBytes reached")]
    Limit,
}

impl LogReader {
    async fn run(mut self) -> Result<(), StreamEnd> {
        let read_err = |path: &PathBuf| {
            let path = path.display().to_string();
            move |source| StreamEnd::Read { path, source }
        };
        let mut file = match tokio::fs::File::open(&self.path).await {
            Ok(f) => f,
            // A container that never wrote has no file yet.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !self.follow => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.wait_for_file().await?,
            Err(e) => return Err(read_err(&self.path)(e)),
        };
        let mut joiner = Joiner::default();
        let mut buffer = Vec::new();
        let mut offset = 0u64;
        // What is in the file now: filter, tail, then send.
        let mut chunk = vec![0u8; CHUNK];
        let mut lines = Vec::new();
        loop {
            let n = file.read(&mut chunk).await.map_err(read_err(&self.path))?;
            if n == 0 {
                break;
            }
            offset += n as u64;
            buffer.extend_from_slice(&chunk[..n]);
            let new = drain_lines(&mut buffer, &mut joiner);
            lines.extend(new.into_iter().filter(|l| self.wanted(l)));
            if let Some(tail) = self.options.tail_lines
                && lines.len() > 2 * tail + 1024
            {
                lines.drain(..lines.len() - tail);
            }
        }
        if let Some(tail) = self.options.tail_lines {
            let skip = lines.len().saturating_sub(tail);
            lines.drain(..skip);
        }
        self.send_lines(&lines).await?;
        if !self.follow {
            return Ok(());
        }
        // Then whatever is written next, until the container stops.
        let mut last_state_check = tokio::time::Instant::now();
        let mut stopped = false;
        loop {
            let n = file.read(&mut chunk).await.map_err(read_err(&self.path))?;
            if n > 0 {
                offset += n as u64;
                buffer.extend_from_slice(&chunk[..n]);
                let new: Vec<Line> = drain_lines(&mut buffer, &mut joiner)
                    .into_iter()
                    .filter(|l| self.wanted(l))
                    .collect();
                self.send_lines(&new).await?;
                continue;
            }
            if stopped {
                return Ok(());
            }
            if self.tx.is_closed() {
                return Err(StreamEnd::ClientGone);
            }
            // Rotated away (a new file at the path, or the file shrank): start over.
            if let Ok(meta) = tokio::fs::metadata(&self.path).await
                && meta.len() < offset
            {
                file = tokio::fs::File::open(&self.path)
                    .await
                    .map_err(read_err(&self.path))?;
                offset = 0;
                buffer.clear();
                continue;
            }
            if last_state_check.elapsed() >= STATE_POLL {
                last_state_check = tokio::time::Instant::now();
                // Read once more after the container stopped, then end.
                stopped = !self.still_running().await;
                if stopped {
                    continue;
                }
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    }

    fn wanted(&self, line: &Line) -> bool {
        self.options.since.is_none_or(|since| line.time >= since)
    }

    async fn still_running(&self) -> bool {
        match lookup::status(&self.runtime, &self.container_id).await {
            Ok(s) => s.state == v1::ContainerState::ContainerRunning as i32,
            Err(_) => false,
        }
    }

    async fn wait_for_file(&self) -> Result<tokio::fs::File, StreamEnd> {
        loop {
            match tokio::fs::File::open(&self.path).await {
                Ok(f) => return Ok(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if !self.still_running().await {
                        return Err(StreamEnd::Read {
                            path: self.path.display().to_string(),
                            source: e,
                        });
                    }
                    if self.tx.is_closed() {
                        return Err(StreamEnd::ClientGone);
                    }
                    tokio::time::sleep(FOLLOW_POLL).await;
                }
                Err(source) => {
                    return Err(StreamEnd::Read {
                        path: self.path.display().to_string(),
                        source,
                    });
                }
            }
        }
    }

    async fn send_lines(&mut self, lines: &[Line]) -> Result<(), StreamEnd> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut out = Vec::new();
        for line in lines {
            render(line, self.options.timestamps, &mut out);
        }
        let mut limited = false;
        if let Some(limit) = self.options.limit_bytes.as_mut() {
            if out.len() >= *limit {
                out.truncate(*limit);
                limited = true;
            }
            *limit -= out.len();
        }
        self.tx
            .send(Bytes::from(out))
            .await
            .map_err(|_| StreamEnd::ClientGone)?;
        if limited {
            Err(StreamEnd::Limit)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn a_full_record_parses_into_its_fields() {
        let r =
            parse_record(b"2024-05-01T10:00:00.123456789Z stderr F hello world").expect("parses");
        assert_eq!(r.time, ts("2024-05-01T10:00:00.123456789Z"));
        assert_eq!(r.stream, Stream::Stderr);
        assert!(!r.partial);
        assert_eq!(r.message, b"hello world");
    }

    #[test]
    fn an_empty_message_and_an_offset_time_parse() {
        let r = parse_record(b"2024-05-01T12:00:00.5+02:00 stdout F ").expect("parses");
        assert_eq!(r.time, ts("2024-05-01T10:00:00.5Z"));
        assert_eq!(r.message, b"");
        assert!(parse_record(b"garbage").is_none());
        assert!(parse_record(b"2024-05-01T10:00:00Z stdin F x").is_none());
    }

    #[test]
    fn partial_records_are_joined_per_stream() {
        let mut buffer = b"2024-05-01T10:00:00Z stdout P abc\n\
2024-05-01T10:00:01Z stderr F err\n\
2024-05-01T10:00:02Z stdout P def\n\
2024-05-01T10:00:03Z stdout F ghi\n\
2024-05-01T10:00:04Z stdout F unfinished"
            .to_vec();
        let mut joiner = Joiner::default();
        let lines = drain_lines(&mut buffer, &mut joiner);
        let messages: Vec<_> = lines
            .iter()
            .map(|l| String::from_utf8_lossy(&l.message).into_owned())
            .collect();
        assert_eq!(messages, ["err", "abcdefghi"]);
        assert_eq!(lines[1].time, ts("2024-05-01T10:00:00Z"));
        assert_eq!(buffer, b"2024-05-01T10:00:04Z stdout F unfinished");
    }

    #[test]
    fn timestamps_are_rendered_in_rfc3339_nano_before_the_line() {
        let mut out = Vec::new();
        let line = Line {
            time: ts("2024-05-01T10:00:00.120Z"),
            message: b"x".to_vec(),
        };
        render(&line, true, &mut out);
        render(&line, false, &mut out);
        assert_eq!(out, b"2024-05-01T10:00:00.12Z x\nx\n");
    }

    #[test]
    fn options_come_from_the_query() {
        let q: HashMap<String, Vec<String>> = [
            ("follow", "true"),
            ("tailLines", "3"),
            ("timestamps", "1"),
            ("limitBytes", "10"),
            ("sinceTime", "2024-05-01T10:00:00Z"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), vec![v.to_owned()]))
        .collect();
        let o = LogOptions::parse(&q).expect("valid");
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!(o.tail_lines, Some(3));
        assert_eq!(o.limit_bytes, Some(10));
        assert_eq!(o.since, Some(ts("2024-05-01T10:00:00Z")));
        let bad: HashMap<String, Vec<String>> =
            HashMap::from([("tailLines".to_owned(), vec!["x".to_owned()])]);
        assert!(LogOptions::parse(&bad).is_err());
    }
}
