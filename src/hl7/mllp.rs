//! MLLP over TCP (frame: 0x0B, message, 0x1C 0x0D). There is no token on this path, so only
//! senders on `VFC_HL7_MLLP_ALLOW` are heard, each with the scope it is listed with. A
//! connection silent for [`Limits::idle`] is closed, and at most [`Limits::connections`] are
//! open at once: a sender that opens and forgets connections cannot take the listener down.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::intake::{self, Intake, Sender};
use crate::accounts::Scope;

const START: u8 = 0x0B;
const END: [u8; 2] = [0x1C, 0x0D];
/// A VXU is a few kilobytes; a frame past this is not one.
const MAX_FRAME: usize = 1024 * 1024;

pub fn frame(message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 3);
    out.push(START);
    out.extend_from_slice(message.as_bytes());
    out.extend_from_slice(&END);
    out
}

/// Takes whole frames off the front of `buf`.
pub fn unframe(buf: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let Some(start) = buf.iter().position(|b| *b == START) else {
            buf.clear();
            return out;
        };
        let Some(end) = buf[start..].windows(2).position(|w| w == END).map(|i| start + i) else {
            buf.drain(..start);
            return out;
        };
        out.push(buf[start + 1..end].to_vec());
        buf.drain(..end + 2);
    }
}

/// Who may send over MLLP, read from `VFC_HL7_MLLP_ALLOW` (`IP=SCOPE,…`, SCOPE a location code,
/// a PIN, or `*` for every PIN): each sender address and the part of the program it may
/// report for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allow(pub Vec<(IpAddr, Scope)>);

impl Allow {
    pub fn parse(raw: &str) -> anyhow::Result<Allow> {
        let entries = raw
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|entry| {
                let (ip, scope) = entry
                    .split_once('=')
                    .ok_or_else(|| format!("{entry:?} is not IP=SCOPE"))?;
                let ip = ip.trim().parse().map_err(|_| format!("{ip:?} is not an IP address"))?;
                let scope = match scope.trim() {
                    "*" | "all" => Scope::Program,
                    s if crate::domain::VfcPin::parse(s).is_ok() => Scope::Pin(s.to_string()),
                    s => Scope::Location(crate::domain::LocationCode::parse(s).map_err(|e| e.0)?.to_string()),
                };
                Ok((ip, scope))
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(|e| {
                anyhow::anyhow!(
                    "VFC_HL7_MLLP_ALLOW={raw:?} is not valid: IP=SCOPE pairs such as 10.0.0.5=012345A,10.0.0.6=012345 ({e})"
                )
            })?;
        Ok(Allow(entries))
    }
}

pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening for HL7 MLLP on {addr}"))
}

/// How long a connection may stay silent, and how many may be open at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub idle: std::time::Duration,
    pub connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // An EHR's interface engine keeps one or two connections open and sends every few
        // seconds to minutes; it reconnects when closed.
        Limits {
            idle: std::time::Duration::from_secs(300),
            connections: 64,
        }
    }
}

pub async fn serve(
    listener: std::sync::Arc<TcpListener>,
    allow: Allow,
    intake: Intake,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    serve_with(listener, allow, intake, cancel, Limits::default()).await
}

pub async fn serve_with(
    listener: std::sync::Arc<TcpListener>,
    allow: Allow,
    intake: Intake,
    cancel: CancellationToken,
    limits: Limits,
) -> anyhow::Result<()> {
    let open = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.connections));
    let allow = allow.0;
    if allow.is_empty() {
        tracing::warn!("HL7 MLLP is on but VFC_HL7_MLLP_ALLOW lists nobody: every connection will be closed");
    }
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "MLLP accept failed");
                    continue;
                }
            },
        };
        let Some((_, scope)) = allow.iter().find(|(ip, _)| *ip == peer.ip()) else {
            tracing::warn!(%peer, "MLLP connection from an address not on VFC_HL7_MLLP_ALLOW; closed");
            metrics::counter!("vfc_hl7_mllp_refused_total").increment(1);
            continue;
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = limits.connections, "MLLP connections at their limit; this one closed");
            metrics::counter!("vfc_hl7_mllp_refused_total").increment(1);
            continue;
        };
        let sender = Sender {
            scope: scope.clone(),
            actor: format!("mllp:{}", peer.ip()),
        };
        let (intake, cancel) = (intake.clone(), cancel.clone());
        tokio::spawn(async move {
            connection(stream, sender, intake, cancel, limits.idle).await;
            drop(permit);
        });
    }
}

async fn connection(
    mut stream: TcpStream,
    sender: Sender,
    intake: Intake,
    cancel: CancellationToken,
    idle: std::time::Duration,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(idle) => {
                tracing::info!(sender = %sender.actor, "MLLP connection idle; closed");
                return;
            }
            r = stream.read(&mut chunk) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
        };
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_FRAME {
            tracing::warn!(sender = %sender.actor, "MLLP frame over 1 MiB; connection closed");
            return;
        }
        for msg in unframe(&mut buf) {
            let text = String::from_utf8_lossy(&msg).into_owned();
            let ack = match intake.submit(text.clone(), sender.clone()).await {
                Ok(ack) => ack,
                Err(_) => intake::temporary_failure(&text),
            };
            // A peer that stops reading holds its place no longer than one idle period.
            match tokio::time::timeout(idle, stream.write_all(&frame(&ack))).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    tracing::info!(sender = %sender.actor, "MLLP peer is not reading its ACKs; closed");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A listener for 127.0.0.1 with `limits`, its intake worker running on a scratch database.
    async fn listening(limits: Limits) -> (SocketAddr, CancellationToken, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::config::DatabaseUrl::Sqlite(dir.path().join("t.db"));
        let db = crate::store::Db::connect(&url).await.unwrap();
        let (intake, worker) = Intake::new(db);
        let cancel = CancellationToken::new();
        tokio::spawn(worker.run(cancel.clone()));
        let listener = std::sync::Arc::new(bind("127.0.0.1:0".parse().unwrap()).await.unwrap());
        let addr = listener.local_addr().unwrap();
        let allow = Allow::parse("127.0.0.1=*").unwrap();
        tokio::spawn(serve_with(listener, allow, intake, cancel.clone(), limits));
        (addr, cancel, dir)
    }

    /// Reads until the server closes the connection (Ok) or sends something (Err, with it).
    async fn closed(c: &mut TcpStream) -> Result<(), Vec<u8>> {
        let mut b = vec![0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(10), c.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => Ok(()),
            Ok(Ok(n)) => Err(b[..n].to_vec()),
            Err(_) => panic!("neither closed nor answered within 10 s"),
        }
    }

    #[tokio::test]
    async fn a_connection_that_stays_silent_is_closed_after_the_idle_time() {
        let limits = Limits {
            idle: Duration::from_millis(200),
            connections: 4,
        };
        let (addr, cancel, _dir) = listening(limits).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        assert_eq!(closed(&mut c).await, Ok(()));
        cancel.cancel();
    }

    #[tokio::test]
    async fn a_connection_over_the_limit_is_closed_and_served_once_one_is_free() {
        let limits = Limits {
            idle: Duration::from_secs(60),
            connections: 1,
        };
        let (addr, cancel, _dir) = listening(limits).await;
        let first = TcpStream::connect(addr).await.unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        assert_eq!(closed(&mut second).await, Ok(()), "over the limit");
        drop(first);
        // Once the first is gone its place is free: a frame is answered (AR: not a VXU).
        let mut answered = None;
        for _ in 0..50 {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(&frame("hello")).await.unwrap();
            if let Err(ack) = closed(&mut c).await {
                answered = Some(String::from_utf8_lossy(&ack).into_owned());
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let ack = answered.expect("a connection is served again");
        assert!(ack.contains("MSA|AR"), "{ack}");
        cancel.cancel();
    }

    #[test]
    fn the_allow_list_reads_locations_pins_and_everyone() {
        let a = Allow::parse("10.0.0.5=012345a, 10.0.0.6=012345,127.0.0.1=*").unwrap();
        assert_eq!(a.0[0].1, Scope::Location("012345A".into()));
        assert_eq!(a.0[1].1, Scope::Pin("012345".into()));
        assert_eq!(a.0[2].1, Scope::Program);
        let e = Allow::parse("10.0.0.5:012345A").unwrap_err().to_string();
        assert!(e.contains("VFC_HL7_MLLP_ALLOW") && e.contains("IP=SCOPE"), "{e}");
    }

    #[test]
    fn frames_come_apart_even_when_split_across_reads() {
        let mut buf = frame("MSH|one");
        buf.extend(frame("MSH|two"));
        let partial = frame("MSH|three");
        buf.extend_from_slice(&partial[..5]);
        let got = unframe(&mut buf);
        assert_eq!(got, vec![b"MSH|one".to_vec(), b"MSH|two".to_vec()]);
        buf.extend_from_slice(&partial[5..]);
        assert_eq!(unframe(&mut buf), vec![b"MSH|three".to_vec()]);
        assert!(buf.is_empty());
    }
}
