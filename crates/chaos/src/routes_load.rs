//! The routes profile's requests (one `RoutesWorker` per load worker): page views, order
//! upserts with increasing versions and order deletes (`routes.rs` has the events, `orders.rs`
//! the rules that keep the final state computable), duplicates of accepted page views, and bad
//! requests the gateway must refuse with its routes: an unrouted type, a declared type not met
//! (taking a version of an order down with it), a required path missing.

use std::{collections::HashSet, sync::Mutex};

use rand::{rngs::StdRng, seq::IndexedRandom, Rng};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    load::{bad_request, Ledger, Request},
    orders::DeleteState,
    routes,
};

/// An order event of a request, booked with the request's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderOp {
    Upsert { order_id: i64, version: i64 },
    Delete { order_id: i64 },
}

impl OrderOp {
    pub fn order_id(self) -> i64 {
        match self {
            Self::Upsert { order_id, .. } | Self::Delete { order_id } => order_id,
        }
    }
}

/// Orders a worker keeps open (updating them) before it opens more.
const OPEN_ORDERS: usize = 20;

/// One load worker's orders: ids `worker * 10^9 + n`, updated and deleted by this worker only,
/// so each order's versions are sent in increasing order.
pub struct RoutesWorker {
    worker: i64,
    opened: i64,
    /// Orders not deleted yet.
    open: Vec<i64>,
}

impl RoutesWorker {
    pub fn new(worker: usize) -> Self {
        Self { worker: worker as i64, opened: 0, open: Vec::new() }
    }

    pub(crate) fn next_request(&mut self, rng: &mut StdRng, ledger: &Mutex<Ledger>) -> Request {
        let Ok(mut l) = ledger.lock() else {
            return bad_request(rng);
        };
        let roll: f64 = rng.random();
        if roll < 0.05 {
            // Duplicates: resend page views already accepted (never order events: a resent
            // upsert after its order's delete would bring the row back).
            let old: Vec<Uuid> = l.accepted.iter().filter(|id| l.views.contains(id)).take(200).copied().collect();
            let ids: Vec<Uuid> = old.choose_multiple(rng, 5).copied().collect();
            if !ids.is_empty() {
                l.duplicate_resends += ids.len() as u64;
                let events = ids.iter().map(|id| routes::page_view(*id, rng.random_range(0..1000))).collect();
                return json_request(events, ids, false, Vec::new());
            }
        }
        if roll > 0.93 {
            return self.bad_request(rng, &mut l);
        }
        let n = rng.random_range(1..=10);
        let (mut events, mut ids, mut ops) = (Vec::new(), Vec::new(), Vec::new());
        let mut deleted_here: HashSet<i64> = HashSet::new();
        for _ in 0..n {
            let id = Uuid::now_v7();
            let kind: f64 = rng.random();
            let deletable: Vec<i64> = if kind >= 0.96 {
                let in_request: HashSet<i64> = ops.iter().map(|op: &OrderOp| op.order_id()).collect();
                self.open
                    .iter()
                    .copied()
                    .filter(|o| !in_request.contains(o) && l.orders.get(o).is_some_and(|b| b.can_delete()))
                    .collect()
            } else {
                Vec::new()
            };
            if kind < 0.5 {
                l.views.insert(id);
                events.push(routes::page_view(id, rng.random_range(0..1000)));
            } else if let Some(&order_id) = deletable.choose(rng) {
                l.orders.entry(order_id).or_default().delete = DeleteState::Pending;
                self.open.retain(|o| *o != order_id);
                deleted_here.insert(order_id);
                ops.push(OrderOp::Delete { order_id });
                events.push(routes::order_deleted(id, order_id));
            } else {
                let order_id = self.pick_order(rng);
                let version = l.orders.entry(order_id).or_default().next_version();
                ops.push(OrderOp::Upsert { order_id, version });
                events.push(routes::order_updated(id, order_id, version));
            }
            ids.push(id);
        }
        debug_assert!(deleted_here.iter().all(|o| !self.open.contains(o)));
        if rng.random_bool(0.2) {
            let body: String = events.iter().map(|e| format!("{e}\n")).collect();
            return Request {
                content_type: "application/x-ndjson",
                body: body.into_bytes(),
                ids,
                bad: false,
                orders: ops,
            };
        }
        json_request(events, ids, false, ops)
    }

    /// An open order, or a new one while fewer than `OPEN_ORDERS` are open (and now and then
    /// anyway, so orders keep being created).
    fn pick_order(&mut self, rng: &mut StdRng) -> i64 {
        if self.open.len() < OPEN_ORDERS || rng.random_bool(0.05) {
            self.opened += 1;
            let order_id = self.worker * 1_000_000_000 + self.opened;
            self.open.push(order_id);
            return order_id;
        }
        self.open.choose(rng).copied().unwrap_or(self.worker * 1_000_000_000)
    }

    /// A request the gateway with routes must refuse (4xx), all or nothing.
    fn bad_request(&mut self, rng: &mut StdRng, l: &mut Ledger) -> Request {
        let (view, other) = (Uuid::now_v7(), Uuid::now_v7());
        let good_view = routes::page_view(view, rng.random_range(0..1000));
        match rng.random_range(0..4) {
            // A type no route takes: 400 no_route.
            0 => {
                l.views.insert(view);
                json_request(
                    vec![good_view, json!({"id": other, "type": "cart.cleared", "data": {"cart": 1}})],
                    vec![view, other],
                    true,
                    Vec::new(),
                )
            }
            // A declared type not met, next to a good upsert: its version is refused with it.
            1 => {
                let order_id = self.pick_order(rng);
                let version = l.orders.entry(order_id).or_default().next_version();
                l.views.insert(other);
                json_request(
                    vec![
                        routes::order_updated(view, order_id, version),
                        json!({"id": other, "type": "page.viewed", "data": {"user_id": "abc", "path": "/"}}),
                    ],
                    vec![view, other],
                    true,
                    vec![OrderOp::Upsert { order_id, version }],
                )
            }
            // A required path missing (the version).
            2 => {
                l.views.insert(view);
                json_request(
                    vec![
                        good_view,
                        json!({"id": other, "type": "order.updated", "data": {"order_id": 1, "total": "1.00", "status": "v"}}),
                    ],
                    vec![view, other],
                    true,
                    Vec::new(),
                )
            }
            // The generic catalogue (invalid events).
            _ => bad_request(rng),
        }
    }
}

fn json_request(events: Vec<Value>, ids: Vec<Uuid>, bad: bool, orders: Vec<OrderOp>) -> Request {
    Request { content_type: "application/json", body: Value::Array(events).to_string().into_bytes(), ids, bad, orders }
}
