//! Doses administered coming in: HL7 VXU over HTTP (`POST /api/v1/hl7`, answered with the HL7
//! ACK) and the same rules for EHRs that send JSON (`POST /api/v1/locations/{code}/administrations`).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{Body, Id};
use super::AppState;
use crate::accounts::Caller;
use crate::domain::{Cvx, LotNumber, Ndc};
use crate::domain::{Eligibility, FundingSource};
use crate::hl7::dates::{self, Given};
use crate::hl7::intake::{self, Sender};
use crate::inventory::catalog::Vaccine;
use crate::inventory::doses::{self, Action, DoseReport, Outcome, Source};
use crate::store::now_millis;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/hl7", post(hl7))
        .route("/locations/{code}/administrations", post(administrations))
}

const HL7_TYPE: &str = "application/hl7-v2; charset=utf-8";

/// Takes one HL7 v2.5.1 VXU^V04 (ER7 text; segments separated by `\r` or `\n`) and answers
/// with its ACK: AA (every dose recorded: decremented, or queued with an ERR of severity W),
/// AE (a dose was in error and not recorded), AR (refused: not a VXU, unreadable, or a
/// facility outside the token's scope). The same message again gets its first ACK.
#[utoipa::path(post, path = "/api/v1/hl7", tag = "hl7", security(("bearer" = [])),
    request_body(content = String, content_type = "application/hl7-v2", description = "one ER7 message"),
    responses((status = 200, description = "the HL7 ACK", content_type = "application/hl7-v2"),
              (status = 401), (status = 503, description = "not recorded; send again")))]
async fn hl7(State(s): State<AppState>, caller: Caller, body: String) -> Response {
    let sender = Sender {
        scope: caller.scope.clone(),
        actor: caller.actor(),
    };
    match s.intake.submit(body.clone(), sender).await {
        Ok(ack) => (StatusCode::OK, [(header::CONTENT_TYPE, HL7_TYPE)], ack).into_response(),
        Err(e) => {
            tracing::warn!(error = ?e, "HL7 message not recorded");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, HL7_TYPE)],
                intake::temporary_failure(&body),
            )
                .into_response()
        }
    }
}

/// Body of `POST /api/v1/locations/{code}/administrations`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Administrations {
    pub doses: Vec<JsonDose>,
}

/// One dose, with the same meaning as an RXA group.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonDose {
    /// The EHR's id for the dose (as ORC-3): it identifies the dose across updates.
    #[serde(default)]
    pub dose_id: Option<String>,
    #[serde(default)]
    pub dose_id_namespace: Option<String>,
    /// The EHR's patient id (PID-3). No names or addresses.
    pub patient_id: String,
    /// The vaccine: a CVX code …
    #[serde(default)]
    pub cvx: Option<String>,
    /// … or an NDC.
    #[serde(default)]
    pub ndc: Option<String>,
    #[serde(default)]
    pub lot: Option<String>,
    /// When given (RFC 3339) …
    #[serde(default)]
    pub administered_at: Option<String>,
    /// … or the day (YYYY-MM-DD).
    #[serde(default)]
    pub administered_on: Option<String>,
    /// Given elsewhere (RXA-9 01–08): never decrements.
    #[serde(default)]
    pub historical: bool,
    /// CP (default), PA, RE (refused) or NA (not administered).
    #[serde(default)]
    pub completion: Option<String>,
    /// add (default), update or delete.
    #[serde(default)]
    pub action: Option<String>,
    /// HL7 table 0064: V01 … V07.
    #[serde(default)]
    pub eligibility: Option<String>,
    /// VXC50 public, VXC2 state, PHC70 private.
    #[serde(default)]
    pub funding_source: Option<String>,
    /// When the EHR made this report (RFC 3339; default: when it arrives). Of two reports of
    /// one dose, the later one has the last word, whatever order they arrive in.
    #[serde(default)]
    pub reported_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DoseResult {
    pub index: usize,
    /// decremented | duplicate | given_back | exception | not_counted | nothing_to_do | rejected
    pub outcome: String,
    pub administration_id: Option<i64>,
    pub lot_id: Option<i64>,
    pub unit_id: Option<i64>,
    pub exception_id: Option<i64>,
    pub warnings: Vec<String>,
    /// Why a rejected dose was not recorded.
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdministrationResults {
    pub results: Vec<DoseResult>,
}

fn report(d: &JsonDose, tz: chrono_tz::Tz, now: i64) -> Result<DoseReport, String> {
    if d.patient_id.trim().is_empty() {
        return Err("\"patient_id\" is required".into());
    }
    let vaccine = match (&d.cvx, &d.ndc) {
        (Some(c), None) => Vaccine::Cvx(Cvx::parse(c).map_err(|e| e.0)?),
        (None, Some(n)) => Vaccine::Ndc(Ndc::parse(n).map_err(|e| e.0)?),
        _ => return Err("name the vaccine with exactly one of \"cvx\" or \"ndc\"".into()),
    };
    let lot = d
        .lot
        .as_deref()
        .filter(|l| !l.trim().is_empty())
        .map(LotNumber::parse)
        .transpose()
        .map_err(|e| e.0)?;
    let (given, field) = match (&d.administered_at, &d.administered_on) {
        (Some(t), None) => {
            let at = chrono::DateTime::parse_from_rfc3339(t).map_err(|_| {
                format!("\"administered_at\" {t:?} must be RFC 3339, such as 2026-11-25T10:30:00-05:00")
            })?;
            // The day as the EHR wrote it, in the offset it wrote.
            let given = Given {
                day: at.date_naive(),
                at: Some(at.timestamp_millis()),
            };
            (given, "\"administered_at\"")
        }
        (None, Some(day)) => {
            let day = crate::domain::parse_date("administered_on", day).map_err(|e| e.0)?;
            (Given { day, at: None }, "\"administered_on\"")
        }
        _ => return Err("give exactly one of \"administered_at\" or \"administered_on\"".into()),
    };
    let (administered_at, day) = dates::dated(given, tz, now, field)?;
    let completion = d.completion.as_deref().unwrap_or("CP").to_ascii_uppercase();
    if !["CP", "PA", "RE", "NA"].contains(&completion.as_str()) {
        return Err(format!("\"completion\" {completion:?} must be CP, PA, RE or NA"));
    }
    let action = match d.action.as_deref().unwrap_or("add").to_ascii_lowercase().as_str() {
        "add" | "a" => Action::Add,
        "update" | "u" => Action::Update,
        "delete" | "d" => Action::Delete,
        other => return Err(format!("\"action\" {other:?} must be add, update or delete")),
    };
    let eligibility = d
        .eligibility
        .as_deref()
        .map(Eligibility::parse)
        .transpose()
        .map_err(|e| format!("\"eligibility\": {e}"))?;
    let funding_source = d
        .funding_source
        .as_deref()
        .map(FundingSource::parse)
        .transpose()
        .map_err(|e| format!("\"funding_source\": {e}"))?;
    let given_here = !d.historical && ["CP", "PA"].contains(&completion.as_str());
    let reported_at = match d.reported_at.as_deref() {
        Some(raw) => crate::domain::parse_instant("reported_at", raw)
            .map_err(|e| e.0)?
            .min(now),
        None => now,
    };
    Ok(DoseReport {
        orc_key: d
            .dose_id
            .as_deref()
            .filter(|i| !i.trim().is_empty())
            .map(|i| format!("{}^{}", i.trim(), d.dose_id_namespace.as_deref().unwrap_or("").trim())),
        patient_id: d.patient_id.trim().to_string(),
        vaccine,
        lot,
        administered_at,
        day,
        given_here,
        not_given: (!given_here).then(|| {
            if d.historical {
                "historical dose: inventory unchanged".into()
            } else {
                format!("{completion}: not administered")
            }
        }),
        action,
        eligibility,
        funding_source,
        message_id: None,
        source: Source::Json,
        reported_at,
    })
}

/// Doses administered, as JSON: the same rules as the HL7 path, dose by dose.
#[utoipa::path(post, path = "/api/v1/locations/{code}/administrations", tag = "hl7", security(("bearer" = [])),
    params(("code" = String, Path)), request_body = Administrations,
    responses((status = 200, body = AdministrationResults), (status = 400), (status = 404)))]
async fn administrations(
    State(s): State<AppState>,
    caller: Caller,
    Id(code): Id<String>,
    Body(body): Body<Administrations>,
) -> Result<Json<AdministrationResults>, ApiError> {
    if body.doses.is_empty() || body.doses.len() > 1000 {
        return Err(ApiError::bad_request("send 1 to 1000 entries in \"doses\""));
    }
    let mut batch = doses::Batch::open(&s.db, &caller.scope, &code).await?;
    let now = now_millis();
    let actor = caller.actor();
    let mut results = Vec::with_capacity(body.doses.len());
    for (index, d) in body.doses.iter().enumerate() {
        let mut r = DoseResult {
            index,
            outcome: "rejected".into(),
            administration_id: None,
            lot_id: None,
            unit_id: None,
            exception_id: None,
            warnings: vec![],
            error: None,
        };
        match report(d, batch.tz(), now) {
            Err(e) => r.error = Some(e),
            Ok(rep) => {
                let o = batch.apply(&rep, &actor).await?;
                r.outcome = o.name().into();
                r.warnings = o.warnings();
                match o {
                    Outcome::Decremented {
                        administration_id,
                        lot_id,
                        unit_id,
                        ..
                    } => {
                        r.administration_id = Some(administration_id);
                        r.lot_id = Some(lot_id);
                        r.unit_id = Some(unit_id);
                    }
                    Outcome::Exception {
                        administration_id,
                        exception_id,
                        ..
                    } => {
                        r.administration_id = Some(administration_id);
                        r.exception_id = Some(exception_id);
                    }
                    Outcome::Duplicate { administration_id } | Outcome::GivenBack { administration_id } => {
                        r.administration_id = Some(administration_id)
                    }
                    Outcome::NotCounted { why } | Outcome::NothingToDo { why } => r.warnings.push(why),
                }
            }
        }
        results.push(r);
    }
    let ids: Vec<i64> = results.iter().filter_map(|r| r.administration_id).collect();
    batch.commit(&crate::accounts::audit::Who::of(&caller), ids).await?;
    Ok(Json(AdministrationResults { results }))
}
