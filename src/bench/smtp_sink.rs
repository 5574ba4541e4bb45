//! A small SMTP server that accepts every message: the bench's (and tests') real SMTP peer.
//! It speaks enough of RFC 5321 for lettre — greeting, EHLO, MAIL, RCPT, DATA with
//! dot-termination, RSET, NOOP, QUIT — and hands each message over with when it arrived.

use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// Listens on `127.0.0.1:port` (0 = any free port); returns the port and the messages.
pub async fn start(port: u16) -> std::io::Result<(u16, mpsc::UnboundedReceiver<(Instant, String)>)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let port = listener.local_addr()?.port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let _ = sock.set_nodelay(true);
            let tx = tx.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut lines = BufReader::new(r).lines();
                if w.write_all(b"220 sink ESMTP\r\n").await.is_err() {
                    return;
                }
                let mut data: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(msg) = data.as_mut() {
                        if line == "." {
                            let _ = tx.send((Instant::now(), data.take().unwrap_or_default()));
                            if w.write_all(b"250 2.0.0 queued\r\n").await.is_err() {
                                return;
                            }
                        } else {
                            msg.push_str(line.strip_prefix('.').unwrap_or(&line));
                            msg.push('\n');
                        }
                        continue;
                    }
                    let verb = line.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-sink\r\n250 8BITMIME\r\n",
                        "DATA" => {
                            data = Some(String::new());
                            b"354 go ahead\r\n"
                        }
                        "QUIT" => {
                            let _ = w.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        _ => b"250 OK\r\n",
                    };
                    if w.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok((port, rx))
}
