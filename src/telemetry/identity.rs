//! Who may speak for a logger (README, "MQTT contract"). The broker binds a topic to an
//! account: a gateway publishes only under `vfc/gateways/{its id}/…`, a logger only under
//! `vfc/loggers/{its serial}/…` (`deploy/mosquitto.acl`). The registry binds a gateway to a
//! location. A reading enters a unit's record only when both agree; otherwise it is *held* in
//! full (see [`super::held`]) and never judged, so one clinic's gateway can neither raise nor
//! hide another clinic's excursion.

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::AnyConnection;

use crate::registry::assignments::{self, ServedAt};
use crate::registry::gateways::{self, Place};
use crate::registry::loggers;

/// Most loggers no unit has that one gateway may bring; readings of more new serials are held
/// (`unassigned_logger_cap`) until someone assigns the loggers it already brought.
pub const MAX_UNASSIGNED_PER_GATEWAY: i64 = 200;

/// Why a reading is held rather than filed in a unit's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The topic's gateway is registered at no location.
    UnknownGateway,
    /// At the reading's time the logger served a unit of another PIN than the gateway's.
    LoggerNotServedByGateway,
    /// The payload's `gateway` is not the topic's (or a logger's own topic names a gateway).
    GatewayMismatch,
    /// The gateway already brought [`MAX_UNASSIGNED_PER_GATEWAY`] loggers no unit has.
    UnassignedLoggerCap,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UnknownGateway => "unknown_gateway",
            Reason::LoggerNotServedByGateway => "logger_not_served_by_gateway",
            Reason::GatewayMismatch => "gateway_mismatch",
            Reason::UnassignedLoggerCap => "unassigned_logger_cap",
        }
    }

    pub fn parse(raw: &str) -> Option<Reason> {
        [
            Reason::UnknownGateway,
            Reason::LoggerNotServedByGateway,
            Reason::GatewayMismatch,
            Reason::UnassignedLoggerCap,
        ]
        .into_iter()
        .find(|r| r.as_str() == raw)
    }

    /// Whether a change in the registry can make such a reading acceptable. A payload that
    /// claims another gateway than the one that sent it never becomes so: it stays for the state.
    pub fn refilable(self) -> bool {
        self != Reason::GatewayMismatch
    }
}

/// Who sent a message, as its topic and payload say.
#[derive(Debug, Clone, Copy)]
pub struct Sender<'a> {
    /// The topic's gateway (`None`: a logger's own topic).
    pub gateway: Option<&'a str>,
    /// The payload's `gateway` field, if any.
    pub claimed: Option<&'a str>,
}

/// Whether `sender` may speak for a logger at `ts`, given where the sender's gateway is
/// registered (`place`) and where the logger served (`served`). The cap on unassigned loggers
/// is the caller's (it counts across a batch).
pub fn judge(sender: Sender<'_>, place: Option<&Place>, served: &[ServedAt], ts: i64) -> Result<(), Reason> {
    if sender.claimed.is_some() && sender.claimed != sender.gateway {
        return Err(Reason::GatewayMismatch);
    }
    let Some(_) = sender.gateway else {
        // A logger publishing for itself: the broker let only that serial's account in.
        return Ok(());
    };
    let place = place.ok_or(Reason::UnknownGateway)?;
    match served.iter().find(|s| s.from <= ts && s.to.is_none_or(|to| ts < to)) {
        Some(s) if s.pin != place.pin => Err(Reason::LoggerNotServedByGateway),
        _ => Ok(()),
    }
}

/// What the registry says about the senders and loggers of a batch, read once per batch.
#[derive(Debug, Default)]
pub struct Context {
    places: HashMap<String, Place>,
    served: HashMap<String, Vec<ServedAt>>,
    known: HashSet<String>,
    /// Per gateway: how many more new serials it may bring.
    room: HashMap<String, i64>,
}

impl Context {
    /// Reads what judging readings of `serials` through `gateways` needs.
    pub async fn load(conn: &mut AnyConnection, gateways: &[&str], serials: &[&str]) -> Result<Context, sqlx::Error> {
        let places = gateways::places(conn, gateways).await?;
        let served = assignments::pins_of(conn, serials).await?;
        let known = loggers::known(conn, serials).await?;
        // How many strangers each gateway may still bring matters only when the batch brings
        // one: the usual batch, of loggers the registry knows, costs no count.
        let strangers = serials.iter().any(|s| !known.contains(*s) && !served.contains_key(*s));
        let mut room = HashMap::new();
        for g in gateways.iter().filter(|_| strangers) {
            if places.contains_key(*g) {
                let n = loggers::unassigned_seen_via(conn, g).await?;
                room.insert(g.to_string(), (MAX_UNASSIGNED_PER_GATEWAY - n).max(0));
            }
        }
        Ok(Context {
            places,
            served,
            known,
            room,
        })
    }

    /// Judges one reading (or status, at the time it arrived).
    pub fn judge(&self, sender: Sender<'_>, serial: &str, ts: i64) -> Result<(), Reason> {
        let place = sender.gateway.and_then(|g| self.places.get(g));
        judge(
            sender,
            place,
            self.served.get(serial).map_or(&[][..], Vec::as_slice),
            ts,
        )
    }

    /// Judges readings in order, and holds those of new serials past a gateway's cap of
    /// loggers no unit has. `items` are (sender gateway, claimed gateway, serial, ts); returns
    /// one verdict per item.
    pub fn judge_all<'a>(
        &mut self,
        items: impl IntoIterator<Item = (Sender<'a>, &'a str, i64)>,
    ) -> Vec<Result<(), Reason>> {
        let mut admitted: BTreeMap<(String, String), bool> = BTreeMap::new();
        items
            .into_iter()
            .map(|(sender, serial, ts)| {
                self.judge(sender, serial, ts)?;
                let Some(gw) = sender.gateway else { return Ok(()) };
                if self.known.contains(serial) || self.served.contains_key(serial) {
                    return Ok(());
                }
                let key = (gw.to_string(), serial.to_string());
                if let Some(ok) = admitted.get(&key) {
                    return if *ok { Ok(()) } else { Err(Reason::UnassignedLoggerCap) };
                }
                let room = self.room.entry(gw.to_string()).or_insert(0);
                let ok = *room > 0;
                if ok {
                    *room -= 1;
                }
                admitted.insert(key, ok);
                if ok {
                    Ok(())
                } else {
                    Err(Reason::UnassignedLoggerCap)
                }
            })
            .collect()
    }
}

/// The distinct items, sorted (a batch's gateways and serials, to read once each).
pub fn distinct<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut v: Vec<&str> = items.collect();
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(pin: &str) -> Place {
        Place {
            location_code: format!("{pin}A"),
            pin: pin.into(),
        }
    }

    fn served(pin: &str, from: i64, to: Option<i64>) -> ServedAt {
        ServedAt {
            from,
            to,
            pin: pin.into(),
        }
    }

    fn via(gw: &str) -> Sender<'_> {
        Sender {
            gateway: Some(gw),
            claimed: Some(gw),
        }
    }

    #[test]
    fn a_gateway_speaks_for_loggers_of_its_own_pin_and_for_loggers_no_unit_has() {
        let history = [served("012345", 0, Some(100)), served("054321", 100, None)];
        assert_eq!(judge(via("gw-a"), Some(&at("012345")), &history, 50), Ok(()));
        assert_eq!(judge(via("gw-a"), Some(&at("012345")), &[], 50), Ok(()));
        assert_eq!(
            judge(via("gw-a"), Some(&at("012345")), &history, 100),
            Err(Reason::LoggerNotServedByGateway),
            "from the moment the logger moved, it is the other PIN's"
        );
    }

    #[test]
    fn an_unregistered_gateway_speaks_for_no_one() {
        assert_eq!(judge(via("gw-a"), None, &[], 0), Err(Reason::UnknownGateway));
    }

    #[test]
    fn a_payload_naming_another_gateway_than_its_topic_is_held_whoever_sent_it() {
        let claims_b = Sender {
            gateway: Some("gw-a"),
            claimed: Some("gw-b"),
        };
        assert_eq!(
            judge(claims_b, Some(&at("012345")), &[], 0),
            Err(Reason::GatewayMismatch)
        );
        let logger_claims = Sender {
            gateway: None,
            claimed: Some("gw-b"),
        };
        assert_eq!(judge(logger_claims, None, &[], 0), Err(Reason::GatewayMismatch));
        let plain = Sender {
            gateway: Some("gw-a"),
            claimed: None,
        };
        assert_eq!(judge(plain, Some(&at("012345")), &[], 0), Ok(()));
    }

    #[test]
    fn a_logger_on_its_own_topic_speaks_for_itself() {
        let own = Sender {
            gateway: None,
            claimed: None,
        };
        assert_eq!(judge(own, None, &[served("012345", 0, None)], 5), Ok(()));
    }

    #[test]
    fn a_gateway_brings_at_most_its_cap_of_new_serials_and_each_serial_counts_once() {
        let mut ctx = Context::default();
        ctx.places.insert("gw-a".into(), at("012345"));
        ctx.room.insert("gw-a".into(), 2);
        let verdicts = ctx.judge_all([
            (via("gw-a"), "NEW-1", 0),
            (via("gw-a"), "NEW-1", 1),
            (via("gw-a"), "NEW-2", 0),
            (via("gw-a"), "NEW-3", 0),
        ]);
        assert_eq!(verdicts, [Ok(()), Ok(()), Ok(()), Err(Reason::UnassignedLoggerCap)]);
    }

    #[test]
    fn every_reason_reads_back_from_its_name() {
        for r in [
            Reason::UnknownGateway,
            Reason::LoggerNotServedByGateway,
            Reason::GatewayMismatch,
            Reason::UnassignedLoggerCap,
        ] {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
    }
}
