//! The hyperparameter searcher (Determined's `SearcherContext`, docs/protocol.md#searcher).
//!
//! In 0.38 the searcher hands out exactly one operation whose length is the experiment's
//! `searcher.max_length` (off-cluster: the `searcher_max_length` option, `DET_MAX_LENGTH`, or 1).
//! Progress goes to the master (`POST /api/v1/trials/<id>/progress`) or to `metrics.jsonl`;
//! completion is local bookkeeping, as in Python.

use crate::distributed::DistributedContext;
use crate::error::Result;
use crate::json::{Map, Value};
use crate::train::{Event, TrainContext};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Determined's `searcher.Unit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Epochs,
    Records,
    Batches,
}

impl Unit {
    /// Parse Determined's config spelling (`records`, `epochs`, `batches`).
    pub fn from_config(s: &str) -> Option<Unit> {
        match s {
            "records" => Some(Unit::Records),
            "epochs" => Some(Unit::Epochs),
            "batches" => Some(Unit::Batches),
            _ => None,
        }
    }
}

/// `_parse_searcher_max_length(config)`: `searcher.max_length` as an integer, or the first
/// value of a dict like `{"batches": 100}`; `None` when absent, null, an empty dict or 0 (then the
/// searcher is missing). Anything else is an error naming the value (Python asserts).
pub fn parse_max_length(config: &Map) -> Result<Option<u64>> {
    let Some(searcher) = config.get("searcher") else {
        return Ok(None);
    };
    let v = match searcher.get("max_length") {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let n = match v {
        Value::Number(n) if n.is_integer() => n.as_i64(),
        Value::Bool(b) => Some(*b as i64),
        Value::Object(m) => match m.iter().next() {
            None => return Ok(None),
            Some((_, Value::Number(n))) if n.is_integer() => n.as_i64(),
            Some(_) => None,
        },
        _ => None,
    };
    match n {
        Some(0) => Ok(None),
        Some(n) if n > 0 => Ok(Some(n as u64)),
        _ => bail!(
            InvalidArgument,
            "experiment config: searcher.max_length must be a positive integer or a dict like {{\"batches\": 100}}, got {}",
            crate::json::to_wire(v)
        ),
    }
}

/// `_parse_searcher_units(config)`: `searcher.unit`, else the single key of a one-key
/// `max_length` dict; unknown spellings give `None`.
pub fn parse_units(config: &Map) -> Option<Unit> {
    let searcher = config.get("searcher")?;
    if let Some(u) = searcher.as_object().and_then(|m| m.get("unit")) {
        return u.as_str().and_then(Unit::from_config);
    }
    match searcher.get("max_length") {
        Some(Value::Object(m)) if m.len() == 1 => {
            m.keys().next().and_then(|k| Unit::from_config(k))
        }
        _ => None,
    }
}

/// Python's `SearcherMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearcherMode {
    WorkersAskChief,
    ChiefOnly,
}

/// The message of Python's `SearcherContextMissing`.
pub const MISSING_MESSAGE: &str = "SearcherContext was not created because your experiment config does not have the \
searcher.max_length set. This is expected when using the Core API with searchers that do not set max_length; set \
searcher.max_length in the experiment config to use the searcher context";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    NotStarted,
    OpOut,
    Done,
}

struct Shared {
    max_length: Option<u64>,
    units: Option<Unit>,
    state: Mutex<State>,
    op_completed: Arc<AtomicBool>,
    train: Arc<TrainContext>,
    is_chief: bool,
    dist: Option<Arc<DistributedContext>>,
}

/// The searcher of a context.
#[derive(Clone)]
pub struct SearcherContext {
    shared: Arc<Shared>,
}

/// One searcher operation: train to `length` units, report progress, report completion.
pub struct SearcherOp {
    shared: Arc<Shared>,
    length: u64,
    completed: Arc<AtomicBool>,
    is_chief: bool,
}

impl SearcherContext {
    /// A searcher handing out one operation of `max_length` (`None`: the searcher is missing,
    /// every call fails with Python's message), coordinating ranks through `dist` in
    /// `WorkersAskChief` mode.
    pub fn with_dist(
        max_length: Option<u64>,
        units: Option<Unit>,
        train: Arc<TrainContext>,
        is_chief: bool,
        dist: Option<Arc<DistributedContext>>,
    ) -> SearcherContext {
        SearcherContext {
            shared: Arc::new(Shared {
                max_length,
                units,
                state: Mutex::new(State::NotStarted),
                op_completed: Arc::new(AtomicBool::new(false)),
                train,
                is_chief,
                dist: dist.filter(|d| d.config().size > 1),
            }),
        }
    }

    fn max_length(&self) -> Result<u64> {
        self.shared
            .max_length
            .ok_or_else(|| err!(Unsupported, "{MISSING_MESSAGE}"))
    }

    /// The next operation, or `None` when the searcher has no more. The previous operation must
    /// have been completed (`RuntimeError` in Python). In `WorkersAskChief` mode with several
    /// ranks this is a collective: the chief broadcasts each operation (and a refusal, so that a
    /// chief's error fails the workers too instead of hanging them, unlike Python).
    pub fn next_op(&self, mode: SearcherMode) -> Result<Option<SearcherOp>> {
        let length = self.max_length()?;
        let sh = &self.shared;
        if mode == SearcherMode::ChiefOnly && !sh.is_chief {
            bail!(State, "you cannot call searcher.operations(searcher_mode=ChiefOnly) from a non-chief worker.");
        }
        let dist = if mode == SearcherMode::WorkersAskChief {
            sh.dist.as_ref()
        } else {
            None
        };
        let mut st = sh.state.lock();
        let op = || SearcherOp {
            shared: sh.clone(),
            length,
            completed: sh.op_completed.clone(),
            is_chief: sh.is_chief,
        };
        if !sh.is_chief {
            let Some(d) = dist else {
                bail!(State, "you cannot call searcher.operations() from a non-chief worker without a distributed context");
            };
            if *st == State::Done {
                return Ok(None);
            }
            let msg = d.broadcast(Vec::new())?;
            return match msg.first() {
                Some(1) if msg.len() == 9 => {
                    *st = State::OpOut;
                    let mut o = op();
                    o.length = u64::from_le_bytes(msg[1..9].try_into().expect("8 bytes"));
                    Ok(Some(o))
                }
                Some(0) => {
                    *st = State::Done;
                    Ok(None)
                }
                _ => bail!(State, "the chief failed in searcher.operations(): you must call op.report_completed() on each operation"),
            };
        }
        match *st {
            State::NotStarted => {
                if let Some(d) = dist {
                    let mut m = vec![1u8];
                    m.extend_from_slice(&length.to_le_bytes());
                    d.broadcast(m)?;
                }
                *st = State::OpOut;
                Ok(Some(op()))
            }
            State::OpOut => {
                if !sh.op_completed.load(Ordering::SeqCst) {
                    if let Some(d) = dist {
                        d.broadcast(vec![2u8])?;
                    }
                    bail!(
                        State,
                        "you must call op.report_completed() on each operation"
                    );
                }
                if let Some(d) = dist {
                    d.broadcast(vec![0u8])?;
                }
                *st = State::Done;
                Ok(None)
            }
            State::Done => Ok(None),
        }
    }

    /// `get_configured_units()`: `None` when the config names none.
    pub fn get_configured_units(&self) -> Result<Option<Unit>> {
        self.max_length()?;
        Ok(self.shared.units)
    }

    /// `acknowledge_out_of_ops()`: nothing to do in 0.38.
    pub fn acknowledge_out_of_ops(&self) -> Result<()> {
        self.max_length().map(|_| ())
    }
}

impl SearcherOp {
    /// The number of units to train for.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// True once `report_completed` was called.
    pub fn is_completed(&self) -> bool {
        self.completed.load(Ordering::SeqCst)
    }

    /// Report that `length` units are done: progress `min(1, max(0, length / max_length))`.
    pub fn report_progress(&self, length: f64) -> Result<()> {
        if !self.is_chief {
            bail!(
                State,
                "you must only call op.report_progress() from the chief worker"
            );
        }
        if !length.is_finite() {
            bail!(InvalidArgument, "length: {length} is not a finite number");
        }
        if self.is_completed() && length != self.length as f64 {
            bail!(State, "you must not call op.report_progress() with a different length after op.report_completed()");
        }
        let max = self.shared.max_length.unwrap_or(self.length).max(1) as f64;
        let progress = (length / max).clamp(0.0, 1.0);
        self.shared.train.report_event(Event::Progress { progress })
    }

    /// Report the operation complete with its searcher metric (any JSON value).
    pub fn report_completed(&self, searcher_metric: Value) -> Result<()> {
        if !self.is_chief {
            bail!(
                State,
                "you must only call op.report_completed() from the chief worker"
            );
        }
        if self.completed.swap(true, Ordering::SeqCst) {
            bail!(State, "you may only call op.report_completed() once");
        }
        self.shared.train.report_event(Event::SearcherCompleted {
            length: self.length,
            searcher_metric,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(s: &str) -> Map {
        crate::json::parse(s).unwrap().as_object().unwrap().clone()
    }

    #[test]
    fn max_length_and_units_like_python() {
        for (c, len, unit) in [
            (r#"{}"#, None, None),
            (r#"{"searcher": {}}"#, None, None),
            (r#"{"searcher": {"max_length": null}}"#, None, None),
            (r#"{"searcher": {"max_length": 50}}"#, Some(50), None),
            (r#"{"searcher": {"max_length": 0}}"#, None, None),
            (r#"{"searcher": {"max_length": {}}}"#, None, None),
            (
                r#"{"searcher": {"max_length": {"batches": 100}}}"#,
                Some(100),
                Some(Unit::Batches),
            ),
            (
                r#"{"searcher": {"max_length": {"epochs": 3}, "unit": "records"}}"#,
                Some(3),
                Some(Unit::Records),
            ),
            (
                r#"{"searcher": {"max_length": {"lightyears": 3}}}"#,
                Some(3),
                None,
            ),
            (
                r#"{"searcher": {"max_length": 5, "unit": null}}"#,
                Some(5),
                None,
            ),
        ] {
            let m = cfg(c);
            assert_eq!(parse_max_length(&m).unwrap(), len, "{c}");
            assert_eq!(parse_units(&m), unit, "{c}");
        }
        for bad in [
            r#"{"searcher": {"max_length": "10"}}"#,
            r#"{"searcher": {"max_length": -1}}"#,
            r#"{"searcher": {"max_length": {"batches": 1.5}}}"#,
        ] {
            let e = parse_max_length(&cfg(bad)).unwrap_err();
            assert!(e.message().contains("searcher.max_length"), "{bad}: {e}");
        }
    }
}
