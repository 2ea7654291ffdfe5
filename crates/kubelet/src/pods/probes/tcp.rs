//! TCP socket probes: passing means a connection was made within the timeout; the
//! socket is closed at once.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpSocket;

use super::Outcome;

/// Connects to `ip:port` within `timeout`.
pub(super) async fn probe(ip: IpAddr, port: u16, timeout: Duration) -> Outcome {
    let addr = SocketAddr::new(ip, port);
    match tokio::time::timeout(timeout, connect(addr)).await {
        Ok(Ok(())) => Outcome::Success,
        Ok(Err(e)) => Outcome::Failure(format!("dial tcp {addr}: connect: {}", go_error(&e))),
        Err(_) => Outcome::Failure(format!("dial tcp {addr}: i/o timeout")),
    }
}

/// A TCP connection to `addr`, closed again.
pub(super) async fn connect(addr: SocketAddr) -> std::io::Result<()> {
    let stream = connect_stream(addr).await?;
    drop(stream);
    Ok(())
}

/// A TCP connection to `addr`.
pub(super) async fn connect_stream(addr: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.connect(addr).await
}

/// An OS error as Go prints it (`connection refused`).
pub(super) fn go_error(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => {
            let desc = nix::errno::Errno::from_raw(code).desc();
            let mut chars = desc.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => e.to_string(),
            }
        }
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_listening_port_passes_and_a_closed_one_fails_as_go_says() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let ip = IpAddr::from([127, 0, 0, 1]);
        assert_eq!(
            probe(ip, port, Duration::from_secs(1)).await,
            Outcome::Success
        );
        drop(listener);
        assert_eq!(
            probe(ip, port, Duration::from_secs(1)).await,
            Outcome::Failure(format!(
                "dial tcp 127.0.0.1:{port}: connect: connection refused"
            ))
        );
    }
}
